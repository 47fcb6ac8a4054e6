//! Network namespaces as files under [`NETNS_DIR`], the layout `ip netns`
//! uses (so `ip netns exec`, `ip netns list` and the tests see them), made
//! and removed in-process, and work done inside one from a thread that
//! entered it.
//!
//! A namespace is a bind mount of a thread's `/proc/thread-self/ns/net` on
//! `/run/netns/NAME`, exactly what `ip netns add` makes; the directory itself
//! is a shared mount point, as `ip netns add` leaves it, so that namespaces
//! made later show in other mount namespaces too.

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Where the network namespaces live (as with `ip netns add`).
pub const NETNS_DIR: &str = "/run/netns";

/// The file of namespace `name`.
pub fn path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

fn nix_io(e: nix::Error) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// Makes [`NETNS_DIR`] exist and be a shared mount point (what `ip netns add`
/// does before its first namespace): once per process.
fn prepare_dir() -> io::Result<()> {
    static READY: Mutex<bool> = Mutex::new(false);
    let mut ready = READY.lock().unwrap_or_else(|p| p.into_inner());
    if *ready {
        return Ok(());
    }
    std::fs::create_dir_all(NETNS_DIR)?;
    let shared = || {
        mount(
            None::<&str>,
            NETNS_DIR,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match shared() {
        Ok(()) => {}
        // Not a mount point yet: bind it onto itself first.
        Err(nix::Error::EINVAL) => {
            mount(
                Some(NETNS_DIR),
                NETNS_DIR,
                Some("none"),
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(nix_io)?;
            shared().map_err(nix_io)?;
        }
        Err(e) => return Err(nix_io(e)),
    }
    *ready = true;
    Ok(())
}

/// Creates the namespace `name`; an existing one is an `AlreadyExists` error.
///
/// The file appears only once the namespace is ready to be mounted on it
/// (the costly `unshare` comes first), so a reader that sees the name sees
/// the namespace within microseconds, never a plain file for long.
pub fn add(name: &str) -> io::Result<()> {
    prepare_dir()?;
    let file = path(name);
    if file.exists() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists", file.display()),
        ));
    }
    std::thread::scope(|s| {
        s.spawn(|| -> io::Result<()> {
            // Only this thread moves to the new namespace; it ends right after.
            unshare(CloneFlags::CLONE_NEWNET).map_err(nix_io)?;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&file)?;
            let mounted = mount(
                Some("/proc/thread-self/ns/net"),
                &file,
                Some("none"),
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(nix_io);
            if mounted.is_err() {
                let _ = std::fs::remove_file(&file);
            }
            mounted
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("namespace thread panicked")))
    })
}

/// Removes the namespace `name` (it goes once nothing uses it any more).
pub fn del(name: &str) -> io::Result<()> {
    let file = path(name);
    match umount2(&file, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
        Err(e) => return Err(nix_io(e)),
    }
    std::fs::remove_file(&file)
}

/// Runs `f` on a thread that entered namespace `name`; the thread ends
/// with `f`, so nothing else ever runs in the namespace. A socket made by `f`
/// belongs to the namespace for good, and `/proc/sys/net` opened by `f` is
/// the namespace's.
pub fn within<R: Send>(name: &str, f: impl FnOnce() -> io::Result<R> + Send) -> io::Result<R> {
    let ns = std::fs::File::open(path(name))?;
    std::thread::scope(|s| {
        s.spawn(|| {
            setns(ns.as_fd(), CloneFlags::CLONE_NEWNET).map_err(nix_io)?;
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("namespace thread panicked")))
    })
}

/// The file under `/proc/sys` of a sysctl key (`net.ipv4.ip_forward`).
fn sysctl_path(key: &str) -> PathBuf {
    Path::new("/proc/sys").join(key.replace('.', "/"))
}

/// The calling thread's namespace's sysctls, for many keys.
///
/// Every namespace has its own `ipv4`, `ipv6`, … directories under the one
/// `/proc/sys/net` of the host, all with the same name under the same
/// parent, so the kernel's dentry cache holds them on one hash chain, which
/// it walks (checking each entry's namespace under a global lock) on every
/// lookup through them: at 2,200 namespaces a first lookup from a new
/// namespace cost close to a millisecond, and these walks were most of the
/// data plane's CPU time (docs/perf.md). So the keys are opened through a
/// private instance of procfs, mounted nowhere (a detached mount made with
/// `fsopen`/`fsmount`, gone when the last descriptor of it is closed), which
/// serves [`PRIVATE_PROC_VISITS`] visits and is then replaced: its chains
/// stay that short, and its making and unmounting (an RCU grace period) are
/// shared by as many visits. Where that is refused, `/proc/sys` is used, each
/// key relative to an open directory of its first two levels (`net/ipv4`),
/// so a visit walks each chain once, not once per key.
#[derive(Default)]
struct SysctlTree {
    /// The private procfs: None before the first key, Some(None) when refused.
    proc: Option<Option<std::sync::Arc<std::os::fd::OwnedFd>>>,
    dirs: Vec<(String, std::os::fd::OwnedFd)>,
}

/// How many namespace visits one private procfs serves.
const PRIVATE_PROC_VISITS: usize = 64;

/// The private procfs of this visit: the current one, or a new one when it
/// has served [`PRIVATE_PROC_VISITS`] visits (the old one goes when its last
/// visit ends). None when procfs cannot be mounted so.
fn shared_private_proc() -> Option<std::sync::Arc<std::os::fd::OwnedFd>> {
    type Current = Option<(std::sync::Arc<std::os::fd::OwnedFd>, usize)>;
    static CURRENT: Mutex<Current> = Mutex::new(None);
    let mut current = CURRENT.lock().unwrap_or_else(|p| p.into_inner());
    match current.as_mut() {
        Some((proc, visits)) if *visits < PRIVATE_PROC_VISITS => {
            *visits += 1;
            Some(proc.clone())
        }
        _ => {
            let proc = std::sync::Arc::new(private_proc().ok()?);
            *current = Some((proc.clone(), 1));
            Some(proc)
        }
    }
}

/// A new instance of procfs, attached nowhere.
fn private_proc() -> io::Result<std::os::fd::OwnedFd> {
    use rustix::mount::{
        fsconfig_create, fsmount, fsopen, FsMountFlags, FsOpenFlags, MountAttrFlags,
    };
    let fs = fsopen("proc", FsOpenFlags::FSOPEN_CLOEXEC)?;
    fsconfig_create(&fs)?;
    Ok(fsmount(
        &fs,
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::MOUNT_ATTR_NOSUID
            | MountAttrFlags::MOUNT_ATTR_NODEV
            | MountAttrFlags::MOUNT_ATTR_NOEXEC,
    )?)
}

impl SysctlTree {
    /// The key's file, opened for reading or writing.
    fn open(&mut self, key: &str, write: bool) -> io::Result<std::fs::File> {
        use nix::fcntl::{open, openat, OFlag};
        use nix::sys::stat::Mode;
        let path = key.replace('.', "/");
        let mode = if write {
            OFlag::O_WRONLY
        } else {
            OFlag::O_RDONLY
        } | OFlag::O_CLOEXEC;
        if let Some(proc) = self.proc.get_or_insert_with(shared_private_proc) {
            return openat(&**proc, format!("sys/{path}").as_str(), mode, Mode::empty())
                .map(std::fs::File::from)
                .map_err(nix_io);
        }
        // The first two levels (`net/ipv4`) and the rest (`conf/e-1/proxy_arp`).
        let split = path.match_indices('/').nth(1).map(|(i, _)| i);
        let Some((dir, rest)) = split.map(|i| (&path[..i], &path[i + 1..])) else {
            return open(&sysctl_path(key), mode, Mode::empty())
                .map(std::fs::File::from)
                .map_err(nix_io);
        };
        let at = match self.dirs.iter().position(|(d, _)| d == dir) {
            Some(i) => i,
            None => {
                let fd = open(
                    &Path::new("/proc/sys").join(dir),
                    OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(nix_io)?;
                self.dirs.push((dir.to_string(), fd));
                self.dirs.len() - 1
            }
        };
        openat(&self.dirs[at].1, rest, mode, Mode::empty())
            .map(std::fs::File::from)
            .map_err(nix_io)
    }

    /// The key's value (its first line, trimmed).
    fn read(&mut self, key: &str) -> io::Result<String> {
        use std::io::Read as _;
        let mut s = String::new();
        self.open(key, false)?.read_to_string(&mut s)?;
        Ok(s.trim().to_string())
    }

    /// Writes the key's value.
    fn write(&mut self, key: &str, value: &str) -> io::Result<()> {
        use std::io::Write as _;
        self.open(key, true)
            .and_then(|mut f| f.write_all(value.as_bytes()))
            .map_err(|e| io::Error::new(e.kind(), format!("{key}={value}: {e}")))
    }
}

/// Writes sysctls, in order, in the calling thread's namespace (which must
/// be a project namespace: inside [`within`]).
pub fn write_sysctls_here(kv: &[(String, String)]) -> io::Result<()> {
    let mut tree = SysctlTree::default();
    for (k, v) in kv {
        tree.write(k, v)?;
    }
    Ok(())
}

/// Brings sysctls inside namespace `name` to their values, in order, writing
/// only those that differ; how many it wrote.
pub fn converge_sysctls(name: &str, kv: &[(String, String)]) -> io::Result<usize> {
    within(name, || converge_sysctls_here(kv))
}

/// [`converge_sysctls`] in the calling thread's namespace (inside [`within`]).
pub fn converge_sysctls_here(kv: &[(String, String)]) -> io::Result<usize> {
    let mut tree = SysctlTree::default();
    let mut written = 0;
    for (k, v) in kv {
        if tree.read(k).ok().as_deref() != Some(v.as_str()) {
            tree.write(k, v)?;
            written += 1;
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sysctl_keys_are_paths_under_proc_sys() {
        assert_eq!(
            super::sysctl_path("net.ipv4.conf.e-1234.proxy_arp"),
            std::path::PathBuf::from("/proc/sys/net/ipv4/conf/e-1234/proxy_arp")
        );
    }

    /// (Root.) A key written through the private procfs is the namespace's
    /// own, as `/proc/sys` shows it there, and the way without one (relative
    /// to `/proc/sys/net/ipv6`) reads and writes the same file.
    #[test]
    fn sysctls_through_a_private_procfs_are_the_namespaces_own() {
        use super::*;
        let name = format!("vpcdtest{:x}-sysctl", std::process::id());
        add(&name).expect("a namespace (the test needs root)");
        let key = "net.ipv6.conf.default.accept_dad";
        let host_before = std::fs::read_to_string(sysctl_path(key)).expect("the host's value");
        let seen = within(&name, || {
            let mut private = SysctlTree::default();
            let mut fallback = SysctlTree {
                proc: Some(None),
                dirs: Vec::new(),
            };
            assert!(private
                .proc
                .get_or_insert_with(shared_private_proc)
                .is_some());
            private.write(key, "0")?;
            let after_private = (
                fallback.read(key)?,
                std::fs::read_to_string(sysctl_path(key))?,
            );
            fallback.write(key, "2")?;
            Ok((after_private, private.read(key)?))
        });
        let host_after = std::fs::read_to_string(sysctl_path(key)).expect("the host's value");
        del(&name).expect("remove the namespace");
        let ((fallback_read, proc_sys_read), private_read) = seen.expect("in the namespace");
        assert_eq!(fallback_read, "0");
        assert_eq!(proc_sys_read.trim(), "0");
        assert_eq!(private_read, "2");
        // The host's own value was never touched.
        assert_eq!(host_before, host_after);
    }
}
