//! Published ports (`-p [IP:]HOST:CTR[/tcp|udp]`): a small per-container
//! `pier port-proxy` process listens on the host's ports and relays each
//! connection (TCP) or datagram flow (UDP) to the container's address on
//! its bridge.
//!
//! Why a userland proxy: `curl http://127.0.0.1:8000/` must work, and
//! DNAT of loopback traffic needs `route_localnet` and iptables rules on the
//! host (Docker needs its userland proxy for the same reason); a relay in
//! the host namespace needs no rule, no sysctl and no forwarding, so there
//! is nothing to leak or clean up but one process. It is its own process
//! (not a thread of `pier run`, which exits after `-d`): it binds every port
//! before `pier run` goes on (a port in use fails the run), then detaches,
//! and it exits when the container's shim exits (it watches it with a
//! pidfd) or when `pier stop`/`rm` ends it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// One published port.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PortMap {
    /// Host address to listen on (`0.0.0.0` by default).
    pub host_ip: IpAddr,
    /// Host port (0: any free port, filled in by the proxy).
    pub host_port: u16,
    /// Container port.
    pub ctr_port: u16,
    /// `tcp` or `udp`.
    pub proto: String,
}

impl std::fmt::Display for PortMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}->{}/{}",
            self.host_ip, self.host_port, self.ctr_port, self.proto
        )
    }
}

/// Parses `-p`: `[IP:]HOST:CTR[/proto]` or `CTR[/proto]` (any host port).
pub fn parse_publish(s: &str) -> Result<PortMap> {
    let (addr, proto) = match s.rsplit_once('/') {
        Some((a, p)) => (a, p.to_lowercase()),
        None => (s, "tcp".to_string()),
    };
    if proto != "tcp" && proto != "udp" {
        bail!("-p {s}: protocol must be tcp or udp");
    }
    let port = |p: &str| -> Result<u16> {
        p.parse::<u16>()
            .with_context(|| format!("-p {s}: {p:?} is not a port"))
    };
    let parts: Vec<&str> = addr.rsplitn(3, ':').collect();
    let (ip, host, ctr) = match parts[..] {
        [c] => ("0.0.0.0", "0", c),
        [c, h] => ("0.0.0.0", h, c),
        [c, h, ip] => (if ip.is_empty() { "0.0.0.0" } else { ip }, h, c),
        _ => bail!("-p {s}: expected [IP:]HOST:CONTAINER[/PROTO]"),
    };
    let host_ip: IpAddr = ip
        .trim_matches(['[', ']'])
        .parse()
        .with_context(|| format!("-p {s}: {ip:?} is not an IP address"))?;
    let ctr_port = port(ctr)?;
    if ctr_port == 0 {
        bail!("-p {s}: the container port cannot be 0");
    }
    Ok(PortMap {
        host_ip,
        host_port: if host.is_empty() { 0 } else { port(host)? },
        ctr_port,
        proto,
    })
}

/// What the proxy process is told.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProxySpec {
    /// The container's address.
    pub target: Ipv4Addr,
    /// Ports.
    pub ports: Vec<PortMap>,
    /// Exit when this process (the shim) exits.
    pub watch_pid: i32,
}

/// Starts `pier port-proxy` for container `id`; returns its pid and the
/// ports as bound (host port 0 replaced by the one chosen). Fails if a
/// port cannot be bound.
pub fn spawn(pier: &Path, id: &str, spec: &ProxySpec, log: &Path) -> Result<(u32, Vec<PortMap>)> {
    let logf = std::fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
    let mut cmd = Command::new(pier);
    cmd.args(["port-proxy", id])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(logf);
    // SAFETY: setsid is async-signal-safe; it detaches the proxy from the
    // caller's session so it outlives `pier run -d`.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("start the port proxy")?;
    {
        let mut stdin = child.stdin.take().expect("piped");
        stdin.write_all(&serde_json::to_vec(spec)?)?;
    }
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped"))
        .read_line(&mut line)
        .context("read from the port proxy")?;
    let pid = child.id();
    match serde_json::from_str::<Vec<PortMap>>(line.trim()) {
        Ok(ports) => {
            // Reaped by init once it exits (it is in its own session; the
            // caller exits soon or waits for nothing).
            std::mem::forget(child);
            Ok((pid, ports))
        }
        Err(_) => {
            let _ = child.wait();
            let msg = std::fs::read_to_string(log).unwrap_or_default();
            bail!("port proxy: {}", msg.trim().trim_start_matches("pier: "))
        }
    }
}

/// The proxy process (`pier port-proxy ID`): reads its spec on stdin,
/// binds, answers the bound ports on stdout, then relays until the watched
/// process exits.
pub fn serve() -> Result<()> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .context("read spec")?;
    let spec: ProxySpec = serde_json::from_str(&input).context("parse spec")?;
    // Open the pidfd first: if the shim is already gone, do not start.
    // SAFETY: plain syscall.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, spec.watch_pid, 0) } as i32;
    if pidfd < 0 {
        bail!("the container's shim (pid {}) is gone", spec.watch_pid);
    }
    let mut bound = Vec::new();
    let mut tcp = Vec::new();
    let mut udp = Vec::new();
    for p in &spec.ports {
        let addr = SocketAddr::new(p.host_ip, p.host_port);
        let target = SocketAddr::new(IpAddr::V4(spec.target), p.ctr_port);
        let mut actual = p.clone();
        if p.proto == "udp" {
            let s = UdpSocket::bind(addr).with_context(|| format!("bind {addr}/udp"))?;
            actual.host_port = s.local_addr()?.port();
            udp.push((s, target));
        } else {
            let l = TcpListener::bind(addr).with_context(|| format!("bind {addr}/tcp"))?;
            actual.host_port = l.local_addr()?.port();
            tcp.push((l, target));
        }
        bound.push(actual);
    }
    println!("{}", serde_json::to_string(&bound)?);
    std::io::stdout().flush()?;
    // Detach from the caller's pipes.
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    // SAFETY: dup2 onto the standard descriptors.
    unsafe {
        libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), 0);
        libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), 1);
    }
    for (l, target) in tcp {
        std::thread::spawn(move || tcp_loop(l, target));
    }
    for (s, target) in udp {
        std::thread::spawn(move || udp_loop(s, target));
    }
    let mut fds = [nix::poll::PollFd::new(
        // SAFETY: pidfd stays open for the life of the process.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(pidfd) },
        nix::poll::PollFlags::POLLIN,
    )];
    loop {
        match nix::poll::poll(&mut fds, nix::poll::PollTimeout::NONE) {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e).context("poll pidfd"),
        }
    }
}

fn tcp_loop(l: TcpListener, target: SocketAddr) {
    for c in l.incoming() {
        let Ok(client) = c else { continue };
        std::thread::spawn(move || {
            let Ok(up) = TcpStream::connect_timeout(&target, Duration::from_secs(5)) else {
                let _ = client.shutdown(Shutdown::Both);
                return;
            };
            let (Ok(c2), Ok(u2)) = (client.try_clone(), up.try_clone()) else {
                return;
            };
            let t = std::thread::spawn(move || pipe(c2, u2));
            pipe(up, client);
            let _ = t.join();
        });
    }
}

/// Copies `from` to `to` until end of file, then half-closes `to`.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
}

fn udp_loop(s: UdpSocket, target: SocketAddr) {
    let s = Arc::new(s);
    let flows: Arc<Mutex<std::collections::HashMap<SocketAddr, Arc<UdpSocket>>>> = Arc::default();
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, from)) = s.recv_from(&mut buf) else {
            continue;
        };
        let up = {
            let mut f = flows.lock().expect("lock");
            if let Some(u) = f.get(&from) {
                u.clone()
            } else {
                let Ok(u) = UdpSocket::bind("0.0.0.0:0") else {
                    continue;
                };
                if u.connect(target).is_err() {
                    continue;
                }
                let _ = u.set_read_timeout(Some(Duration::from_secs(60)));
                let u = Arc::new(u);
                f.insert(from, u.clone());
                let (s2, u2, flows2) = (s.clone(), u.clone(), flows.clone());
                std::thread::spawn(move || {
                    let mut b = vec![0u8; 65536];
                    while let Ok(k) = u2.recv(&mut b) {
                        let _ = s2.send_to(&b[..k], from);
                    }
                    flows2.lock().expect("lock").remove(&from);
                });
                u
            }
        };
        let _ = up.send(&buf[..n]);
    }
}

/// Ends the proxy `pid` of container `id` (only if that pid still is
/// that container's proxy).
pub fn stop(pid: u32, id: &str) {
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmd = String::from_utf8_lossy(&cmd);
    if cmd.contains("port-proxy") && cmd.contains(id) {
        // SAFETY: plain kill of a process we started.
        unsafe {
            libc::kill(pid as i32, libc::SIGTERM);
        }
        for _ in 0..100 {
            if !Path::new(&format!("/proc/{pid}")).exists() || is_zombie(pid) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_syntax() {
        let p = parse_publish("8000:80").unwrap();
        assert_eq!(
            (p.host_port, p.ctr_port, p.proto.as_str()),
            (8000, 80, "tcp")
        );
        assert_eq!(p.host_ip, "0.0.0.0".parse::<IpAddr>().unwrap());
        let p = parse_publish("127.0.0.1:5353:53/udp").unwrap();
        assert_eq!(p.host_ip, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!((p.host_port, p.proto.as_str()), (5353, "udp"));
        assert_eq!(parse_publish("80").unwrap().host_port, 0);
        assert!(parse_publish("80/sctp").is_err());
        assert!(parse_publish("x:80").is_err());
        assert!(parse_publish("1.2.3:8:80").is_err());
    }
}
