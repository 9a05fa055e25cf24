//! The build context: a directory, minus what `.dockerignore` excludes.
//! `COPY`/`ADD` sources are resolved in it (globs, `..` clamped to the
//! context, the top-level symlink followed inside it) and hashed for the
//! layer cache (names, types, modes, sizes, contents and link targets;
//! not owners or times, as BuildKit).

use std::ffi::OsString;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{fstatat, FileStat, Mode};

use crate::digest::{Digest, Hasher};
use crate::inroot::Root;

/// `.dockerignore` rules.
#[derive(Debug, Default)]
pub struct Ignore {
    rules: Vec<(glob::Pattern, bool)>,
}

const MATCH: glob::MatchOptions = glob::MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: false,
};

/// Cleans a path pattern: no leading `/` or `./`, no trailing `/`, `.`
/// components dropped.
fn clean(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

impl Ignore {
    /// Parses `.dockerignore` text.
    pub fn parse(text: &str) -> Result<Ignore> {
        let mut rules = Vec::new();
        for line in text.lines() {
            let l = line.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let (neg, pat) = match l.strip_prefix('!') {
                Some(p) => (true, p.trim()),
                None => (false, l),
            };
            let pat = clean(pat);
            if pat.is_empty() {
                continue;
            }
            let g = glob::Pattern::new(&pat)
                .with_context(|| format!(".dockerignore: bad pattern {pat:?}"))?;
            rules.push((g, neg));
        }
        Ok(Ignore { rules })
    }

    /// True if `rel` (context-relative, `/`-separated) is excluded: the
    /// last rule matching it or one of its parent directories decides.
    pub fn excluded(&self, rel: &str) -> bool {
        if rel.is_empty() {
            return false;
        }
        let mut ex = false;
        for (g, neg) in &self.rules {
            let mut m = g.matches_with(rel, MATCH);
            if !m {
                let mut prefix = rel;
                while let Some(i) = prefix.rfind('/') {
                    prefix = &prefix[..i];
                    if g.matches_with(prefix, MATCH) {
                        m = true;
                        break;
                    }
                }
            }
            if m {
                ex = !neg;
            }
        }
        ex
    }
}

/// The build context.
pub struct BuildContext {
    root: Root,
    /// Exclusions.
    pub ignore: Ignore,
}

/// An entry of a directory read through its fd.
pub struct DirEntry {
    /// Its name.
    pub name: OsString,
    /// `lstat` of it.
    pub st: FileStat,
}

/// Lists the directory `fd` (sorted by name), `lstat`ing each entry.
pub fn list_dir(fd: RawFd) -> Result<Vec<DirEntry>> {
    let mut d = nix::dir::Dir::openat(
        Some(fd),
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .context("open directory")?;
    let mut out = Vec::new();
    for e in d.iter() {
        let e = e.context("read directory")?;
        let name = e.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let name = OsString::from(std::ffi::OsStr::from_bytes(name));
        let st = fstatat(Some(fd), name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
            .with_context(|| format!("stat {}", name.to_string_lossy()))?;
        out.push(DirEntry { name, st });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Opens `name` in directory `dir` with `flags` (never following a
/// symlink).
pub fn open_in(dir: RawFd, name: &std::ffi::OsStr, flags: OFlag) -> Result<OwnedFd> {
    let fd = nix::fcntl::openat(
        Some(dir),
        name,
        flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("open {}", name.to_string_lossy()))?;
    // SAFETY: a new fd nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The file type bits.
pub fn kind(st: &FileStat) -> u32 {
    st.st_mode & libc::S_IFMT
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

impl BuildContext {
    /// Opens the context directory and reads its `.dockerignore`.
    pub fn open(dir: &Path) -> Result<BuildContext> {
        let meta =
            std::fs::metadata(dir).with_context(|| format!("build context {}", dir.display()))?;
        if !meta.is_dir() {
            bail!("build context {} is not a directory", dir.display());
        }
        let root = Root::open(dir)?;
        let ignore = match root.read(Path::new(".dockerignore"))? {
            Some(t) => Ignore::parse(&String::from_utf8_lossy(&t))?,
            None => Ignore::default(),
        };
        Ok(BuildContext { root, ignore })
    }

    /// The context root.
    pub fn root(&self) -> &Root {
        &self.root
    }

    /// The context-relative paths a `COPY` source names (glob patterns
    /// expanded, sorted); an error if nothing matches.
    pub fn sources(&self, src: &str) -> Result<Vec<String>> {
        let c = clean(src);
        if !has_glob(&c) {
            if self.ignore.excluded(&c) || !self.root.exists(Path::new(&c)) {
                bail!("{src}: no such file or directory in the build context");
            }
            return Ok(vec![c]);
        }
        let pat = glob::Pattern::new(&c).with_context(|| format!("bad source pattern {src:?}"))?;
        let mut found = Vec::new();
        let depth = c.split('/').count();
        let top = self
            .root
            .open_at(Path::new("."), OFlag::O_RDONLY | OFlag::O_DIRECTORY)
            .context("open the build context")?;
        self.glob_walk(top.as_raw_fd(), "", depth, &pat, &mut found)?;
        if found.is_empty() {
            bail!("{src}: no source files match in the build context");
        }
        Ok(found)
    }

    fn glob_walk(
        &self,
        fd: RawFd,
        rel: &str,
        depth: usize,
        pat: &glob::Pattern,
        out: &mut Vec<String>,
    ) -> Result<()> {
        for e in list_dir(fd)? {
            let name = e.name.to_string_lossy();
            let r = if rel.is_empty() {
                name.to_string()
            } else {
                format!("{rel}/{name}")
            };
            if self.ignore.excluded(&r) {
                continue;
            }
            if pat.matches_with(&r, MATCH) {
                out.push(r.clone());
            }
            let level = r.split('/').count();
            if kind(&e.st) == libc::S_IFDIR && (level < depth || pat.as_str().contains("**")) {
                let sub = open_in(fd, &e.name, OFlag::O_RDONLY | OFlag::O_DIRECTORY)?;
                self.glob_walk(sub.as_raw_fd(), &r, depth, pat, out)?;
            }
        }
        Ok(())
    }

    /// Hashes sources for the cache key.
    pub fn hash(&self, rels: &[String]) -> Result<Digest> {
        let mut h = Hasher::new();
        for r in rels {
            let fd = self
                .root
                .open_at(Path::new(r), OFlag::O_PATH)
                .with_context(|| format!("open {r} in the build context"))?;
            let st = nix::sys::stat::fstat(fd.as_raw_fd()).context("stat")?;
            h.update(format!("src {r}\0").as_bytes());
            self.hash_entry(&mut h, fd.as_raw_fd(), None, r, &st)?;
        }
        Ok(h.finish())
    }

    /// Hashes one entry; `name` is None for a top-level source opened with
    /// O_PATH (`fd` is the entry itself), else `fd` is its directory.
    fn hash_entry(
        &self,
        h: &mut Hasher,
        fd: RawFd,
        name: Option<&std::ffi::OsStr>,
        rel: &str,
        st: &FileStat,
    ) -> Result<()> {
        h.update(
            format!(
                "{rel}\0{:o}\0{}\0",
                st.st_mode,
                if kind(st) == libc::S_IFREG {
                    st.st_size
                } else {
                    0
                }
            )
            .as_bytes(),
        );
        let open = |flags: OFlag| -> Result<OwnedFd> {
            match name {
                Some(n) => open_in(fd, n, flags),
                None => {
                    let p = format!("/proc/self/fd/{fd}");
                    let f = nix::fcntl::open(p.as_str(), flags | OFlag::O_CLOEXEC, Mode::empty())
                        .with_context(|| format!("open {rel}"))?;
                    // SAFETY: a new fd nothing else owns.
                    Ok(unsafe { OwnedFd::from_raw_fd(f) })
                }
            }
        };
        match kind(st) {
            libc::S_IFREG => {
                let mut f = File::from(open(OFlag::O_RDONLY)?);
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    let n = f.read(&mut buf).with_context(|| format!("read {rel}"))?;
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                }
            }
            libc::S_IFLNK => {
                let t = match name {
                    Some(n) => nix::fcntl::readlinkat(Some(fd), n),
                    None => nix::fcntl::readlinkat(Some(fd), ""),
                }
                .with_context(|| format!("readlink {rel}"))?;
                h.update(t.as_bytes());
            }
            libc::S_IFDIR => {
                let d = open(OFlag::O_RDONLY | OFlag::O_DIRECTORY)?;
                for e in list_dir(d.as_raw_fd())? {
                    let r = if rel.is_empty() {
                        e.name.to_string_lossy().into_owned()
                    } else {
                        format!("{rel}/{}", e.name.to_string_lossy())
                    };
                    if self.ignore.excluded(&r) {
                        continue;
                    }
                    self.hash_entry(h, d.as_raw_fd(), Some(&e.name), &r, &e.st)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Joins a destination with the working directory (relative destinations
/// are relative to `WORKDIR`).
pub fn dest_path(workdir: &str, dest: &str) -> PathBuf {
    let base = if dest.starts_with('/') {
        PathBuf::from("/")
    } else {
        PathBuf::from(if workdir.is_empty() { "/" } else { workdir })
    };
    let mut p = base;
    for c in Path::new(dest).components() {
        match c {
            Component::Normal(n) => p.push(n),
            Component::ParentDir => {
                p.pop();
            }
            _ => {}
        }
    }
    p
}

/// ENOENT as a plain boolean.
pub fn not_found(e: &Errno) -> bool {
    matches!(e, Errno::ENOENT | Errno::ENOTDIR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerignore_rules() {
        let i = Ignore::parse("# c\n*.log\n!keep.log\nbuild/\n/secret\ndocs/**/*.md\n").unwrap();
        assert!(i.excluded("a.log"));
        assert!(!i.excluded("keep.log"));
        assert!(!i.excluded("sub/a.log"), "* does not cross /");
        assert!(i.excluded("build"));
        assert!(i.excluded("build/x/y"));
        assert!(i.excluded("secret"));
        assert!(i.excluded("docs/a/b/c.md"));
        assert!(!i.excluded("docs/a/b/c.txt"));
        assert!(!i.excluded("app.py"));
    }

    #[test]
    fn sources_hash_and_globs() {
        let d = std::env::temp_dir().join(format!("pier-ctx-{}", std::process::id()));
        std::fs::create_dir_all(d.join("src/sub")).unwrap();
        std::fs::write(d.join("src/a.txt"), "a").unwrap();
        std::fs::write(d.join("src/b.txt"), "b").unwrap();
        std::fs::write(d.join("src/sub/c.txt"), "c").unwrap();
        std::fs::write(d.join("x.log"), "x").unwrap();
        std::fs::write(d.join(".dockerignore"), "*.log\nsrc/b.txt\n").unwrap();
        let c = BuildContext::open(&d).unwrap();
        assert_eq!(c.sources("src/*.txt").unwrap(), vec!["src/a.txt"]);
        assert_eq!(c.sources("./src/../src/a.txt").unwrap(), vec!["src/a.txt"]);
        assert!(c.sources("x.log").is_err());
        assert!(c.sources("*.none").is_err());
        let h1 = c.hash(&["src".into()]).unwrap();
        std::fs::write(d.join("src/b.txt"), "ignored change").unwrap();
        assert_eq!(c.hash(&["src".into()]).unwrap(), h1);
        std::fs::write(d.join("src/sub/c.txt"), "C").unwrap();
        assert_ne!(c.hash(&["src".into()]).unwrap(), h1);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn destinations() {
        assert_eq!(dest_path("/app", "."), PathBuf::from("/app"));
        assert_eq!(dest_path("/app", "x/"), PathBuf::from("/app/x"));
        assert_eq!(dest_path("/app", "/abs"), PathBuf::from("/abs"));
        assert_eq!(dest_path("", "../.."), PathBuf::from("/"));
    }
}
