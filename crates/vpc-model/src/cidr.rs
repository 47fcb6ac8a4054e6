//! CIDR parsing, canonicalisation and overlap, the way EC2 treats them.

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::net::{Ipv4Addr, Ipv6Addr};

/// Parses `a.b.c.d/n` and zeroes the host bits (`100.68.0.18/18` → `100.68.0.0/18`).
pub fn parse_v4(s: &str) -> Option<Ipv4Net> {
    let (addr, len) = s.trim().split_once('/')?;
    let addr: Ipv4Addr = addr.parse().ok()?;
    if len.is_empty() || len.len() > 2 || !len.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let len: u8 = len.parse().ok()?;
    Ipv4Net::new(addr, len).ok().map(|n| n.trunc())
}

/// Parses an IPv6 CIDR and zeroes the host bits.
pub fn parse_v6(s: &str) -> Option<Ipv6Net> {
    let (addr, len) = s.trim().split_once('/')?;
    let addr: Ipv6Addr = addr.parse().ok()?;
    if len.is_empty() || len.len() > 3 || !len.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let len: u8 = len.parse().ok()?;
    Ipv6Net::new(addr, len).ok().map(|n| n.trunc())
}

/// True when the two networks share at least one address.
pub fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    match (a, b) {
        (IpNet::V4(a), IpNet::V4(b)) => overlaps_v4(a, b),
        (IpNet::V6(a), IpNet::V6(b)) => overlaps_v6(a, b),
        _ => false,
    }
}

pub fn overlaps_v4(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

pub fn overlaps_v6(a: &Ipv6Net, b: &Ipv6Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// True when every address of `inner` is in `outer`.
pub fn contains_v4(outer: &Ipv4Net, inner: &Ipv4Net) -> bool {
    outer.prefix_len() <= inner.prefix_len() && outer.contains(&inner.network())
}

pub fn contains_v6(outer: &Ipv6Net, inner: &Ipv6Net) -> bool {
    outer.prefix_len() <= inner.prefix_len() && outer.contains(&inner.network())
}

/// Number of addresses AWS lets you use in an IPv4 subnet: all but the first four and the last.
pub fn usable_v4(net: &Ipv4Net) -> u64 {
    (1u64 << (32 - u32::from(net.prefix_len()))).saturating_sub(5)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn canonicalises() {
        assert_eq!(
            parse_v4("100.68.0.18/18").unwrap().to_string(),
            "100.68.0.0/18"
        );
        assert_eq!(parse_v4("10.0.0.0/16").unwrap().to_string(), "10.0.0.0/16");
        assert!(parse_v4("10.0.0.0").is_none());
        assert!(parse_v4("10.0.0.0/33").is_none());
        assert!(parse_v4("10.0.0.0/+1").is_none());
        assert!(parse_v4("300.0.0.0/8").is_none());
        assert_eq!(
            parse_v6("2600:1f18:abcd:1200::1/56").unwrap().to_string(),
            "2600:1f18:abcd:1200::/56"
        );
    }

    #[test]
    fn usable() {
        assert_eq!(usable_v4(&parse_v4("10.0.0.0/24").unwrap()), 251);
        assert_eq!(usable_v4(&parse_v4("10.0.0.0/28").unwrap()), 11);
    }

    fn v4() -> impl Strategy<Value = Ipv4Net> {
        (any::<u32>(), 0u8..=32)
            .prop_map(|(a, l)| Ipv4Net::new(Ipv4Addr::from(a), l).unwrap().trunc())
    }

    fn v6() -> impl Strategy<Value = Ipv6Net> {
        (any::<u128>(), 0u8..=128)
            .prop_map(|(a, l)| Ipv6Net::new(Ipv6Addr::from(a), l).unwrap().trunc())
    }

    proptest! {
        /// Overlap is symmetric and agrees with a brute-force range intersection.
        #[test]
        fn overlap_matches_ranges(a in v4(), b in v4()) {
            let (a0, a1) = (u32::from(a.network()), u32::from(a.broadcast()));
            let (b0, b1) = (u32::from(b.network()), u32::from(b.broadcast()));
            let expect = a0 <= b1 && b0 <= a1;
            prop_assert_eq!(overlaps_v4(&a, &b), expect);
            prop_assert_eq!(overlaps_v4(&b, &a), expect);
        }

        #[test]
        fn overlap_v6_matches_ranges(a in v6(), b in v6()) {
            let (a0, a1) = (u128::from(a.network()), u128::from(a.broadcast()));
            let (b0, b1) = (u128::from(b.network()), u128::from(b.broadcast()));
            prop_assert_eq!(overlaps_v6(&a, &b), a0 <= b1 && b0 <= a1);
        }

        /// A network always overlaps itself and any network containing it.
        #[test]
        fn containment_implies_overlap(a in v4(), l in 0u8..=32) {
            let sup = Ipv4Net::new(a.network(), l.min(a.prefix_len())).unwrap().trunc();
            prop_assert!(contains_v4(&sup, &a));
            prop_assert!(overlaps_v4(&sup, &a));
        }

        #[test]
        fn parse_round_trips(a in v4()) {
            prop_assert_eq!(parse_v4(&a.to_string()), Some(a));
        }
    }
}
