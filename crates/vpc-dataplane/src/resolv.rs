//! The instances' resolver configuration: `/etc/netns/<instance-id>/resolv.conf`.
//!
//! `ip netns exec <instance-id> …` bind-mounts the files of
//! `/etc/netns/<instance-id>/` over `/etc`, so `getent hosts`, `dig` and
//! anything else using the system resolver inside an instance asks its VPC's
//! resolvers its VPC's DHCP options set names (`AmazonProvidedDNS`: the
//! Amazon-provided DNS server at base + 2) and completes short names with
//! the set's `domain-name`, as DHCP does on AWS. The content is
//! `vpc_model::ops::dhcp::resolv_conf`; this module only writes and removes
//! the files, for instance namespaces only.

use crate::names;
use crate::plan::{NsPlan, NsRole};
use std::io;
use std::path::PathBuf;
use vpc_model::ops::dhcp;
use vpc_model::{Instance, Subnet, Vpc, World};

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
                let ipv6_only = world
                    .get::<Subnet>(&i.subnet_id)
                    .is_some_and(|s| s.ipv6_native);
                Some((instance_id.clone(), dhcp::resolv_conf(world, v, ipv6_only)))
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
    planned(world, namespaces)
        .into_iter()
        .filter_map(|(id, content)| write(&id, &content).err().map(|e| (id, e)))
        .collect()
}

/// Writes one instance's `resolv.conf` when it is missing or differs.
pub fn write(instance_id: &str, content: &str) -> io::Result<()> {
    if !names::is_instance_ns(instance_id) {
        return Ok(());
    }
    let dir = etc_dir(instance_id);
    let file = dir.join("resolv.conf");
    match std::fs::read_to_string(&file) {
        Ok(c) if c == content => return Ok(()),
        Ok(_) => {}
        // A new instance: its directory is missing too.
        Err(e) if e.kind() == io::ErrorKind::NotFound => match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(_) => std::fs::create_dir_all(&dir)?,
        },
        Err(_) => {}
    }
    std::fs::write(&file, content)
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
    fn each_planned_instance_gets_what_its_vpcs_dhcp_options_say() {
        let mut e = Env::new();
        let v = e.vpc("10.7.0.0/16");
        let s = e.subnet(&v, "10.7.3.0/24");
        let a = e.instance(&s, "10.7.3.10");
        let conf_of = |e: &Env| {
            let p = crate::plan::plan(&e.w, "t1");
            let confs = planned(&e.w, p.namespaces.values());
            assert_eq!(confs.len(), 1, "routers get none: {confs:?}");
            assert_eq!(confs[0].0, a.id);
            confs[0].1.clone()
        };
        // A VPC on `default` (no options): no nameserver, no search list.
        let conf = conf_of(&e);
        assert!(!conf.contains("nameserver"), "{conf}");
        assert!(!conf.contains("search"), "{conf}");
        // The region's default set: the VPC's resolver and private domain.
        let vpc_id = v.meta.id.clone();
        e.run(&v.meta.owner.clone(), &v.meta.region.clone(), |w, c| {
            let id = dhcp::create(w, c, dhcp::default_options(&c.region), vec![])?;
            dhcp::associate(w, c, &id.meta.id, &vpc_id)
        });
        let conf = conf_of(&e);
        assert!(conf.contains("\nnameserver 10.7.0.2\n"), "{conf}");
        assert!(conf.contains("\nsearch ec2.internal\n"), "{conf}");
        // A custom set: its servers in order and its domain names.
        e.run(&v.meta.owner.clone(), &v.meta.region.clone(), |w, c| {
            let opts = vec![
                vpc_model::DhcpOption {
                    key: "domain-name-servers".into(),
                    values: vec!["10.9.9.9".into(), "AmazonProvidedDNS".into()],
                },
                vpc_model::DhcpOption {
                    key: "domain-name".into(),
                    values: vec!["corp.example lab.example".into()],
                },
            ];
            let id = dhcp::create(w, c, opts, vec![])?;
            dhcp::associate(w, c, &id.meta.id, &vpc_id)
        });
        let conf = conf_of(&e);
        assert!(
            conf.contains(
                "\nnameserver 10.9.9.9\nnameserver 10.7.0.2\nsearch corp.example lab.example\n"
            ),
            "{conf}"
        );
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
