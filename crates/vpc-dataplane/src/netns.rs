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

/// Writes sysctls, in order, in the calling thread's namespace (which must
/// be a project namespace: inside [`within`]).
pub fn write_sysctls_here(kv: &[(String, String)]) -> io::Result<()> {
    for (k, v) in kv {
        std::fs::write(sysctl_path(k), v)
            .map_err(|e| io::Error::new(e.kind(), format!("{k}={v}: {e}")))?;
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
    let mut written = 0;
    for (k, v) in kv {
        let path = sysctl_path(k);
        let have = std::fs::read_to_string(&path).ok();
        if have.as_deref().map(str::trim) != Some(v.as_str()) {
            std::fs::write(&path, v)
                .map_err(|e| io::Error::new(e.kind(), format!("{k}={v}: {e}")))?;
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
}
