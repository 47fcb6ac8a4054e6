//! The bulk-TCP fast path: large IPv4 GSO/GRO sizes ("BIG TCP") on every
//! veth the data plane makes.
//!
//! A TCP sender hands the stack one super-packet of up to `gso_ipv4_max_size`
//! bytes, and a veth passes it on whole: it is segmented nowhere on the way,
//! because every hop is a veth. Every per-packet cost of the path across a
//! peering (three veth hops, two forwarding decisions, the routers' nft
//! `forward` chains and conntrack, softirq hand-offs and cross-CPU wake-ups)
//! is paid once per super-packet. Measured on the 2-core VM (docs/perf.md):
//! the path's CPU cost per byte is dominated by those per-packet costs, and
//! 192 KiB super-packets instead of 64 KiB ones about halve it.
//!
//! Nothing about filtering changes: nft and conntrack see each super-packet
//! once, with the headers every one of its segments carries, so an ACL or
//! security-group verdict is the verdict each segment would get; every packet
//! still walks the whole `forward` chain (no flowtable: this kernel has no
//! `CONFIG_NF_FLOW_TABLE`). A hop to a smaller MTU (an inter-region link)
//! checks the segment size, not the super-packet's, exactly as before.
//! IPv6 keeps the kernel's 64 KiB default.
//!
//! A cluster's VXLAN links (`underlay.rs`) send at most 64 KiB (their
//! `tso_max_size`), so only their receive side gets the fast path's size
//! ([`vxlan_gro_target`]).
//!
//! iproute2 6.1 could not set `gso_ipv4_max_size` (it came in 6.3); like
//! every other link setting it goes over rtnetlink (`netlink.rs`): the
//! links are dumped and only the sizes that differ are set (`RTM_NEWLINK` by
//! name).

use crate::error::CommandError;
use crate::netlink::{request, Netlink};
use std::collections::BTreeMap;

/// The IPv4 GSO/GRO size with the fast path on (BIG TCP).
pub const BIG_TCP_SIZE: u32 = 196_608;
/// The kernel's default, and the size with the fast path off.
pub const LEGACY_SIZE: u32 = 65_536;

/// One link's IPv4 offload sizes as the kernel reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sizes {
    pub gso_ipv4_max: u32,
    pub gro_ipv4_max: u32,
    /// The most the device accepts (0 when the kernel did not say).
    pub tso_max: u32,
}

/// What a link should be set to for `want`, clamped to what it accepts;
/// None when it already is, or when the kernel does not report the size at
/// all (before Linux 6.3 there is no IPv4 BIG TCP to set).
fn target(have: &Sizes, want: u32) -> Option<u32> {
    if have.gso_ipv4_max == 0 {
        return None;
    }
    let size = if have.tso_max > 0 {
        want.min(have.tso_max)
    } else {
        want
    };
    (have.gso_ipv4_max != size || have.gro_ipv4_max != size).then_some(size)
}

/// The IPv4 GRO size a VXLAN link should have for `want`, or None when it
/// already has it (or the kernel reports no IPv4 sizes). Only the receive
/// side can grow: the device sends GSO packets of at most its
/// `tso_max_size` (64 KiB for VXLAN on Linux 6.18, which cannot be raised),
/// but the packets it decapsulates are coalesced by its own GRO up to its
/// `gro_ipv4_max_size`, and nothing caps that but the kernel's GRO limit.
/// So a sender's super-packet that was segmented to go through the tunnel
/// is forwarded by the receiving router as one 192 KiB packet again
/// instead of three 64 KiB ones (`docs/cluster.md`, "Throughput").
pub fn vxlan_gro_target(have: &Sizes, want: u32) -> Option<u32> {
    if have.gso_ipv4_max == 0 {
        return None;
    }
    (have.gro_ipv4_max != want).then_some(want)
}

/// Brings the IPv4 GRO size of VXLAN link `link` in namespace `ns` to `size`
/// ([`vxlan_gro_target`]); returns whether it changed. A missing link is an
/// error.
pub fn converge_vxlan_gro(ns: &str, link: &str, size: u32) -> Result<bool, CommandError> {
    let nl = Netlink::open(ns)?;
    let have = nl.links()?;
    let state = have.get(link).ok_or_else(|| CommandError::Failed {
        cmd: format!("gro_ipv4_max_size of {link} (in {ns})"),
        code: None,
        stderr: "no such link".into(),
    })?;
    match vxlan_gro_target(&state.sizes, size) {
        Some(size) => Ok(nl.apply(vec![request::set_ipv4_gro_size(link, size)])? > 0),
        None => Ok(false),
    }
}

/// The IPv4 offload sizes of every link in namespace `ns`.
pub fn ipv4_sizes(ns: &str) -> Result<BTreeMap<String, Sizes>, CommandError> {
    Ok(Netlink::open(ns)?
        .links()?
        .into_iter()
        .map(|(n, l)| (n, l.sizes))
        .collect())
}

/// Brings the IPv4 GSO/GRO sizes of `links` in namespace `ns` to `size`
/// (clamped to what each device accepts); returns how many links changed.
/// Links that are missing are left to the caller's own checks.
pub fn converge(ns: &str, links: &[&str], size: u32) -> Result<usize, CommandError> {
    let nl = Netlink::open(ns)?;
    let have = nl.links()?;
    converge_with(&nl, &have, links, size)
}

/// [`converge`] over an open socket, given the links as last dumped.
pub(crate) fn converge_with(
    nl: &Netlink,
    have: &BTreeMap<String, crate::kernel::KLink>,
    links: &[&str],
    size: u32,
) -> Result<usize, CommandError> {
    let requests: Vec<_> = links
        .iter()
        .filter_map(|name| {
            let s = have.get(*name)?;
            target(&s.sizes, size).map(|size| request::set_ipv4_sizes(name, size))
        })
        .collect();
    nl.apply(requests)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_clamp_to_the_device_and_skip_what_is_already_set() {
        let veth = Sizes {
            gso_ipv4_max: LEGACY_SIZE,
            gro_ipv4_max: LEGACY_SIZE,
            tso_max: 524_280,
        };
        assert_eq!(target(&veth, BIG_TCP_SIZE), Some(BIG_TCP_SIZE));
        assert_eq!(target(&veth, LEGACY_SIZE), None);
        let big = Sizes {
            gso_ipv4_max: BIG_TCP_SIZE,
            gro_ipv4_max: BIG_TCP_SIZE,
            ..veth
        };
        assert_eq!(target(&big, BIG_TCP_SIZE), None);
        assert_eq!(target(&big, LEGACY_SIZE), Some(LEGACY_SIZE));
        // A device that takes no more than 64 KiB (a TUN) is left alone.
        let small = Sizes {
            tso_max: 65_536,
            ..veth
        };
        assert_eq!(target(&small, BIG_TCP_SIZE), None);
        // A kernel without IPv4 BIG TCP reports no size: nothing to set.
        assert_eq!(target(&Sizes::default(), BIG_TCP_SIZE), None);
    }

    #[test]
    fn a_vxlan_link_gets_the_big_gro_size_and_keeps_its_gso_size() {
        // What Linux 6.18 reports for a new VXLAN device.
        let vxlan = Sizes {
            gso_ipv4_max: LEGACY_SIZE,
            gro_ipv4_max: LEGACY_SIZE,
            tso_max: 65_536,
        };
        // The veth rule would leave it alone (its tso_max_size caps it) ...
        assert_eq!(target(&vxlan, BIG_TCP_SIZE), None);
        // ... but its receive side takes the fast path's size.
        assert_eq!(vxlan_gro_target(&vxlan, BIG_TCP_SIZE), Some(BIG_TCP_SIZE));
        let done = Sizes {
            gro_ipv4_max: BIG_TCP_SIZE,
            ..vxlan
        };
        assert_eq!(vxlan_gro_target(&done, BIG_TCP_SIZE), None);
        // With the fast path off it goes back to the default.
        assert_eq!(vxlan_gro_target(&done, LEGACY_SIZE), Some(LEGACY_SIZE));
        assert_eq!(vxlan_gro_target(&Sizes::default(), BIG_TCP_SIZE), None);
    }
}
