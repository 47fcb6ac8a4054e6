//! Kernel object names and numbers, all derived from resource IDs (see
//! `docs/dataplane.md`, "Names"), so nothing has to be allocated or stored.

/// The priority of every `ip rule` vpcd installs (the selectors are disjoint).
pub const RULE_PREF: u32 = 1000;
/// The table for packets arriving over a peering: own interfaces only.
pub const TABLE_PEERING: u32 = 250;
/// The table for packets arriving from the internet gateway (after DNAT).
pub const TABLE_IGW: u32 = 251;
/// Tables of a cluster router's middlebox links (`placement::middlebox_link`)
/// start here, clear of the route tables' (`TABLE_BASE` + 30 bits).
pub const TABLE_MIDDLEBOX_BASE: u32 = 0x8000_0000;
/// The kernel's main table.
pub const TABLE_MAIN: u32 = 254;
/// Route-table IDs start here, well clear of the kernel's and our fixed ones.
pub const TABLE_BASE: u32 = 0x10000;
/// The MTU of instance, router and same-region peering links.
pub const MTU: u32 = 9001;
/// AWS's MTU across an inter-region peering.
pub const MTU_INTER_REGION: u32 = 1500;

/// The link-local address of the router end of a link (and the requester end of a peering).
pub const LL_ONE: std::net::Ipv6Addr = std::net::Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
/// The far end of a router-to-router link (the accepter end, or the internet side).
pub const LL_TWO: std::net::Ipv6Addr = std::net::Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2);

/// The test host on the simulated internet.
pub const INET_HOST_V4: std::net::Ipv4Addr = std::net::Ipv4Addr::new(198, 51, 100, 10);
/// The test host's IPv6 address.
pub const INET_HOST_V6: std::net::Ipv6Addr =
    std::net::Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 0x10);

/// The prefix every router, NAT gateway and internet namespace of one data directory carries.
pub fn ns_prefix(tag: &str) -> String {
    format!("vpcd{tag}-")
}

/// The alias of `lo` in every namespace a data directory creates: how an
/// instance namespace (named only by its instance ID) is known to be ours.
pub fn owner_marker(tag: &str) -> String {
    format!("vpcd{tag}")
}

/// The router namespace of a VPC.
pub fn router_ns(tag: &str, vpc_id: &str) -> String {
    format!("vpcd{tag}-{vpc_id}")
}

/// A NAT gateway's namespace.
pub fn nat_ns(tag: &str, nat_id: &str) -> String {
    format!("vpcd{tag}-{nat_id}")
}

/// The simulated internet's namespace.
pub fn inet_ns(tag: &str) -> String {
    format!("vpcd{tag}-inet")
}

/// The last 12 characters of an ID's hex part (IDs are `prefix-hex`).
pub fn short(id: &str) -> &str {
    let hex = id.rsplit('-').next().unwrap_or(id);
    &hex[hex.len().saturating_sub(12)..]
}

/// The router end of an interface's veth.
pub fn eni_link(eni_id: &str) -> String {
    format!("e-{}", short(eni_id))
}

/// The router end of a NAT gateway's veth.
pub fn nat_link(nat_id: &str) -> String {
    format!("n-{}", short(nat_id))
}

/// A peering's link, the same name in both routers.
pub fn peering_link(pcx_id: &str) -> String {
    format!("p-{}", short(pcx_id))
}

/// The router end of an internet gateway's veth.
pub fn igw_link(igw_id: &str) -> String {
    format!("g-{}", short(igw_id))
}

/// The internet end of a VPC's internet-gateway veth.
pub fn inet_link(vpc_id: &str) -> String {
    format!("g-{}", short(vpc_id))
}

/// The device inside an instance for the interface at a device index.
pub fn instance_dev(device_index: u32) -> String {
    format!("eth{device_index}")
}

/// 32-bit FNV-1a.
pub fn fnv1a32(s: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The preferred kernel table ID of a route table (before collision probing).
pub fn table_id(rtb_id: &str) -> u32 {
    TABLE_BASE + (fnv1a32(rtb_id) & 0x3fff_ffff)
}

/// True for a string that is safe as a namespace, link, chain or set name
/// fragment: ASCII letters, digits and `-`, and not empty.
pub fn is_safe(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !s.starts_with('-')
}

/// True for a valid data-directory tag (1 to 8 lowercase letters or digits).
pub fn is_valid_tag(tag: &str) -> bool {
    (1..=8).contains(&tag.len())
        && tag
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
}

/// True for a namespace name that looks like an instance's (`i-` and hex).
pub fn is_instance_ns(name: &str) -> bool {
    name.strip_prefix("i-")
        .is_some_and(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_in_ifnamsiz() {
        let id = "eni-0123456789abcdef0";
        assert_eq!(eni_link(id), "e-56789abcdef0");
        assert!(eni_link(id).len() <= 15);
        assert_eq!(peering_link("pcx-00000000000000001"), "p-000000000001");
        assert_eq!(router_ns("1a2b", "vpc-1"), "vpcd1a2b-vpc-1");
        assert_eq!(short("abc"), "abc");
    }

    #[test]
    fn table_ids_are_stable_and_in_range() {
        let t = table_id("rtb-0123456789abcdef0");
        assert_eq!(t, table_id("rtb-0123456789abcdef0"));
        assert!((TABLE_BASE..TABLE_BASE + 0x4000_0000).contains(&t));
        assert_ne!(table_id("rtb-1"), table_id("rtb-2"));
        // The FNV-1a reference value for "a".
        assert_eq!(fnv1a32("a"), 0xe40c_292c);
    }

    #[test]
    fn safety_checks() {
        assert!(is_safe("vpc-0123"));
        assert!(!is_safe("vpc 1"));
        assert!(!is_safe("x;rm"));
        assert!(!is_safe(""));
        assert!(is_valid_tag("1a2b"));
        assert!(!is_valid_tag("1A2B"));
        assert!(!is_valid_tag(""));
        assert!(is_instance_ns("i-0123abc"));
        assert!(!is_instance_ns("i-"));
        assert!(!is_instance_ns("ip-1"));
    }
}
