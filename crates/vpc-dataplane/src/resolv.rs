//! The instances' resolver configuration: `/etc/netns/<instance-id>/resolv.conf`.
//!
//! `ip netns exec <instance-id> …` bind-mounts the files of
//! `/etc/netns/<instance-id>/` over `/etc`, so `getent hosts`, `dig` and
//! anything else using the system resolver inside an instance asks its VPC's
//! Amazon-provided DNS server (base + 2) and completes short names with the
//! region's private domain, as DHCP's default options do on AWS. The content
//! is `vpc_model::ops::dns::resolv_conf`; this module only writes and removes
//! the files, for instance namespaces only.

use crate::names;
use crate::plan::{NsPlan, NsRole};
use std::io;
use std::path::PathBuf;
use vpc_model::ops::dns;
use vpc_model::{Instance, Vpc, World};

/// Where `ip netns exec` looks for a namespace's own `/etc` files.
pub const NETNS_ETC: &str = "/etc/netns";

/// The directory holding an instance namespace's `/etc` files.
pub fn etc_dir(instance_id: &str) -> PathBuf {
    PathBuf::from(NETNS_ETC).join(instance_id)
}

/// What each planned instance namespace's `resolv.conf` must contain.
pub fn planned<'p>(
    world: &World,
    namespaces: impl IntoIterator<Item = &'p NsPlan>,
) -> Vec<(String, String)> {
    namespaces
        .into_iter()
        .filter_map(|ns| match &ns.role {
            NsRole::Instance { instance_id } => {
                let i = world.get::<Instance>(instance_id)?;
                let v = world.get::<Vpc>(&i.vpc_id)?;
                Some((instance_id.clone(), dns::resolv_conf(v)))
            }
            _ => None,
        })
        .collect()
}

/// Writes every planned instance's `resolv.conf` that is missing or differs.
/// Returns the instances whose file could not be written, with the error.
pub fn write_all<'p>(
    world: &World,
    namespaces: impl IntoIterator<Item = &'p NsPlan>,
) -> Vec<(String, io::Error)> {
    let mut failed = Vec::new();
    for (id, content) in planned(world, namespaces) {
        if !names::is_instance_ns(&id) {
            continue;
        }
        let dir = etc_dir(&id);
        let file = dir.join("resolv.conf");
        if std::fs::read_to_string(&file).is_ok_and(|c| c == content) {
            continue;
        }
        if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&file, content))
        {
            failed.push((id, e));
        }
    }
    failed
}

/// Removes an instance namespace's `resolv.conf` and then its directory
/// (unless someone put other files there). Nothing to remove is fine.
pub fn remove(instance_id: &str) -> io::Result<()> {
    if !names::is_instance_ns(instance_id) {
        return Ok(());
    }
    let dir = etc_dir(instance_id);
    for r in [
        std::fs::remove_file(dir.join("resolv.conf")),
        std::fs::remove_dir(&dir),
    ] {
        match r {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::Env;

    #[test]
    fn each_planned_instance_gets_its_vpcs_resolver_and_search_domain() {
        let mut e = Env::new();
        let v = e.vpc("10.7.0.0/16");
        let s = e.subnet(&v, "10.7.3.0/24");
        let a = e.instance(&s, "10.7.3.10");
        let p = crate::plan::plan(&e.w, "t1");
        let confs = planned(&e.w, p.namespaces.values());
        assert_eq!(confs.len(), 1, "routers get none: {confs:?}");
        let (id, conf) = &confs[0];
        assert_eq!(id, &a.id);
        assert!(conf.contains("\nnameserver 10.7.0.2\n"), "{conf}");
        assert!(conf.contains("\nsearch ec2.internal\n"), "{conf}");
        assert_eq!(
            etc_dir(&a.id),
            PathBuf::from(format!("/etc/netns/{}", a.id))
        );
    }

    #[test]
    fn only_instance_namespace_names_are_ever_removed() {
        // Not an instance ID: nothing is touched, whatever exists there.
        assert!(remove("../etc").is_ok());
        assert!(remove("vpcd1234-vpc-1").is_ok());
        assert!(!names::is_instance_ns("../etc"));
    }
}
