//! Records the git commit for `berth --version`.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    Command::new("git")
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

fn main() {
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=BERTH_COMMIT={commit}");
    // Ask git where HEAD and the current branch's ref live: in a worktree
    // `.git` is a file (`../.git/HEAD` does not exist, which would make
    // cargo rerun this script and rebuild berth on every build), and the
    // refs directory is shared with every other worktree.
    let mut watch = vec![git(&["rev-parse", "--git-path", "HEAD"])];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        let loose = git(&["rev-parse", "--git-path", &branch]);
        if loose
            .as_deref()
            .is_some_and(|p| std::path::Path::new(p).exists())
        {
            watch.push(loose);
        } else {
            watch.push(git(&["rev-parse", "--git-path", "packed-refs"]));
        }
    }
    for path in watch {
        println!(
            "cargo:rerun-if-changed={}",
            path.as_deref().unwrap_or("../.git/HEAD")
        );
    }
}
