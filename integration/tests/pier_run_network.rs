//! Networks of `pier run`: the default bridge with published ports
//! (reached on 127.0.0.1 only), user-defined bridges with name resolution,
//! isolation between networks, `host` and `none`, and that every bridge,
//! veth, netns and proxy is gone afterwards.

use std::time::Duration;

use berth_integration::pier_env::{http_get, PierEnv};
use berth_integration::registry::free_port;
use serde_json::Value;

fn base() -> PierEnv {
    let p = PierEnv::new();
    p.busybox_image("base:1");
    p
}

const UDP_ECHO: &str = r#"
#include <netinet/in.h>
#include <sys/socket.h>
int main(void) {
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(9);
    if (bind(s, (struct sockaddr *)&a, sizeof a) < 0) return 1;
    for (;;) {
        char b[2048];
        struct sockaddr_in from;
        socklen_t fl = sizeof from;
        int n = recvfrom(s, b, sizeof b, 0, (struct sockaddr *)&from, &fl);
        if (n > 0) sendto(s, b, n, 0, (struct sockaddr *)&from, fl);
    }
}
"#;

fn ip_of(p: &PierEnv, c: &str) -> String {
    let v: Value = serde_json::from_str(&p.ok(&["inspect", c])).unwrap();
    v["NetworkSettings"]["IPAddress"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn published_port_reaches_the_container_on_loopback() {
    let p = base();
    let ctx = p.context("www", &[("index.html", "hello from the container\n")]);
    // busybox has no UDP server: a tiny static echo server.
    berth_integration::compile_static_c(UDP_ECHO, &ctx.join("udpecho"));
    let port = free_port();
    let udp_port = free_port();
    let id = p.run_detached(&[
        "--name",
        "web",
        "-p",
        &format!("127.0.0.1:{port}:80"),
        "-p",
        &format!("127.0.0.1:{udp_port}:9/udp"),
        "-v",
        &format!("{}:/www:ro", ctx.display()),
        "base:1",
        "sh",
        "-c",
        "/www/udpecho & exec httpd -f -v -p 80 -h /www",
    ]);
    let body = http_get(port, "/index.html", Duration::from_secs(10));
    assert_eq!(body.as_deref(), Some("hello from the container\n"));
    // UDP through the proxy: the echo comes back.
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut got = None;
    for _ in 0..20 {
        s.send_to(b"ping\n", ("127.0.0.1", udp_port)).unwrap();
        let mut b = [0u8; 64];
        if let Ok((n, _)) = s.recv_from(&mut b) {
            got = Some(b[..n].to_vec());
            break;
        }
    }
    assert_eq!(got.as_deref(), Some(&b"ping\n"[..]));
    let ps = p.ok(&["ps"]);
    assert!(ps.contains(&format!("127.0.0.1:{port}->80/tcp")), "{ps}");
    // The port is taken while the container runs: a second one fails
    // cleanly, leaving nothing.
    let (_, err) = p.fails(&[
        "run",
        "-d",
        "-p",
        &format!("127.0.0.1:{port}:80"),
        "base:1",
        "sleep",
        "9",
    ]);
    assert!(err.contains("bind"), "{err}");
    assert_eq!(p.container_ids().len(), 1);
    // The container has an address on the bridge and no route out.
    let ip = ip_of(&p, "web");
    assert!(ip.starts_with("10.213.") || !ip.is_empty(), "{ip}");
    let routes = p.ok(&["exec", "web", "ip", "route"]);
    assert!(!routes.contains("default"), "{routes}");
    p.ok(&["stop", "-t", "1", &id]);
    assert!(
        http_get(port, "/", Duration::from_millis(200)).is_none(),
        "the proxy outlived stop"
    );
    p.ok(&["rm", &id]);
    p.assert_clean();
}

#[test]
fn user_defined_networks_resolve_names_and_are_isolated() {
    let p = base();
    p.ok(&["network", "create", "front"]);
    p.ok(&["network", "create", "back"]);
    let (_, err) = p.fails(&["network", "create", "front"]);
    assert!(err.contains("already exists"), "{err}");
    let a = p.run_detached(&[
        "--name",
        "alpha",
        "--network",
        "front",
        "base:1",
        "sleep",
        "100",
    ]);
    let b = p.run_detached(&[
        "--name",
        "beta",
        "--network",
        "front",
        "base:1",
        "sleep",
        "100",
    ]);
    let c = p.run_detached(&[
        "--name",
        "gamma",
        "--network",
        "back",
        "base:1",
        "sleep",
        "100",
    ]);
    // Names resolve on the same network, both ways (hosts files updated).
    let out = p.ok(&["exec", "alpha", "ping", "-c", "1", "-W", "2", "beta"]);
    assert!(out.contains("1 packets received"), "{out}");
    let out = p.ok(&["exec", "beta", "ping", "-c", "1", "-W", "2", "alpha"]);
    assert!(out.contains("1 packets received"), "{out}");
    // Not across networks: no name, no route.
    let o = p.run(&["exec", "alpha", "ping", "-c", "1", "-W", "1", "gamma"]);
    assert_ne!(o.status.code(), Some(0));
    let gamma_ip = ip_of(&p, "gamma");
    let o = p.run(&["exec", "alpha", "ping", "-c", "1", "-W", "1", &gamma_ip]);
    assert_ne!(o.status.code(), Some(0), "networks are not isolated");
    // A network with containers cannot be removed.
    let (_, err) = p.fails(&["network", "rm", "front"]);
    assert!(err.contains("active containers"), "{err}");
    // When beta leaves, alpha's hosts file forgets it.
    p.ok(&["rm", "-f", &b]);
    let hosts = p.ok(&["exec", "alpha", "cat", "/etc/hosts"]);
    assert!(!hosts.contains("beta"), "{hosts}");
    p.ok(&["rm", "-f", &a, &c]);
    p.ok(&["network", "rm", "front", "back"]);
    p.assert_clean();
}

#[test]
fn host_and_none_networks() {
    let p = base();
    let out = p.ok(&[
        "run",
        "--rm",
        "--network",
        "host",
        "base:1",
        "ls",
        "/sys/class/net",
    ]);
    assert!(
        out.lines().any(|l| l != "lo"),
        "host interfaces visible: {out}"
    );
    let out = p.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "base:1",
        "ls",
        "/sys/class/net",
    ]);
    assert_eq!(out, "lo\n");
    let (_, err) = p.fails(&[
        "run",
        "--network",
        "none",
        "-p",
        "1234:80",
        "base:1",
        "true",
    ]);
    assert!(err.contains("--network none"), "{err}");
    let (_, err) = p.fails(&["run", "--network", "nonet", "base:1", "true"]);
    assert!(err.contains("network nonet not found"), "{err}");
    p.assert_clean();
}
