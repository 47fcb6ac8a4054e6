//! DHCP options sets: create, describe, delete, associate, and what an
//! instance's resolver configuration becomes under its VPC's set.
//!
//! * Each account has a default set per region (`domain-name` the region's
//!   private domain, `domain-name-servers` `AmazonProvidedDNS`), made with
//!   the region's default VPC; new VPCs are associated with it while it
//!   exists, else with `default` (no options).
//! * A set is immutable but for its tags; a VPC uses one set (or
//!   `default`); a set in use cannot be deleted (`DependencyViolation`).
//! * [`resolver_config`]: the instance's `resolv.conf` follows the set:
//!   `domain-name` is its search list, `domain-name-servers` its
//!   nameservers (`AmazonProvidedDNS` is the VPC's base + 2); a VPC on
//!   `default`, or a set without `domain-name-servers`, gives no nameserver.

use super::{dns, new_meta, vpc, IdKind};
use crate::dns_types::{DhcpOption, DhcpOptions};
use crate::fault::{Fault, Result};
use crate::types::{RegionInit, Tags, Vpc};
use crate::world::World;
use crate::Ctx;
use std::net::IpAddr;

pub const DHCP: IdKind = IdKind {
    prefix: "dopt",
    malformed: "InvalidDhcpOptionsId.Malformed",
    not_found: "InvalidDhcpOptionID.NotFound",
    noun: "dhcpOption",
};

/// What `AssociateDhcpOptions` takes to mean "no options".
pub const NO_OPTIONS: &str = "default";

/// The name servers value meaning the VPC's own resolver.
pub const AMAZON_PROVIDED_DNS: &str = "AmazonProvidedDNS";

/// The keys a set may hold, in the order AWS lists them.
pub const KEYS: &[&str] = &[
    "domain-name",
    "domain-name-servers",
    "ntp-servers",
    "netbios-name-servers",
    "netbios-node-type",
    "ipv6-address-preferred-lease-time",
];

/// Most addresses of one family in an address-valued option.
const ADDRESSES_PER_FAMILY: usize = 4;

pub fn get<'w>(w: &'w World, ctx: &Ctx<'_>, id: &str) -> Result<&'w DhcpOptions> {
    w.owned::<DhcpOptions>(id, &ctx.account, &ctx.region, DHCP.nf(id)?)
}

fn bad_value(key: &str, value: &str) -> Fault {
    Fault::invalid_param(format!("Value ({value}) for parameter {key} is invalid."))
}

/// A domain name as DHCP hands it out: dot-separated labels of letters,
/// digits and hyphens (no leading or trailing hyphen), at most 255
/// characters, an optional trailing dot.
fn is_domain(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 255
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Checks address-valued option values: IP addresses, at most four of
/// each family; `AmazonProvidedDNS` allowed where `amazon` is.
fn check_addresses(key: &str, values: &[String], amazon: bool) -> Result<()> {
    let (mut v4, mut v6) = (0, 0);
    for v in values {
        if amazon && v == AMAZON_PROVIDED_DNS {
            v4 += 1;
            continue;
        }
        match v.parse::<IpAddr>() {
            Ok(IpAddr::V4(_)) => v4 += 1,
            Ok(IpAddr::V6(_)) => v6 += 1,
            Err(_) => return Err(bad_value(key, v)),
        }
    }
    if v4 > ADDRESSES_PER_FAMILY || v6 > ADDRESSES_PER_FAMILY {
        return Err(bad_value(key, &values.join(",")));
    }
    Ok(())
}

fn check_option(o: &DhcpOption) -> Result<()> {
    let key = o.key.as_str();
    let single = || -> Result<&str> {
        match o.values.as_slice() {
            [v] => Ok(v.as_str()),
            _ => Err(bad_value(key, &o.values.join(","))),
        }
    };
    match key {
        "domain-name" => {
            let v = single()?;
            // Several space-separated names are accepted (some clients use them).
            if !v.split(' ').all(is_domain) {
                return Err(bad_value(key, v));
            }
        }
        "domain-name-servers" => check_addresses(key, &o.values, true)?,
        "ntp-servers" => check_addresses(key, &o.values, false)?,
        "netbios-name-servers" => {
            check_addresses(key, &o.values, false)?;
            if let Some(v) = o.values.iter().find(|v| v.contains(':')) {
                return Err(bad_value(key, v));
            }
        }
        "netbios-node-type" => {
            let v = single()?;
            if !matches!(v, "1" | "2" | "4" | "8") {
                return Err(bad_value(key, v));
            }
        }
        "ipv6-address-preferred-lease-time" => {
            let v = single()?;
            if !v
                .parse::<u64>()
                .is_ok_and(|n| (140..=2_147_483_647).contains(&n))
            {
                return Err(bad_value(key, v));
            }
        }
        other => {
            return Err(Fault::invalid_param(format!(
                "Value ({other}) for parameter key is invalid. Unknown DHCP option."
            )))
        }
    }
    Ok(())
}

/// Normalises and checks a requested configuration: options without a
/// non-empty value are dropped (clients such as Terraform send every key),
/// a key may appear once, and the result is in AWS's key order.
pub fn normalize(requested: Vec<DhcpOption>) -> Result<Vec<DhcpOption>> {
    let mut out: Vec<DhcpOption> = Vec::new();
    for o in requested {
        if !KEYS.contains(&o.key.as_str()) {
            check_option(&o)?;
        }
        let values: Vec<String> = o.values.into_iter().filter(|v| !v.is_empty()).collect();
        if values.is_empty() {
            continue;
        }
        if out.iter().any(|x| x.key == o.key) {
            return Err(Fault::invalid_param(format!(
                "Value ({}) for parameter key is invalid. Duplicate DHCP option.",
                o.key
            )));
        }
        let o = DhcpOption { key: o.key, values };
        check_option(&o)?;
        out.push(o);
    }
    if out.is_empty() {
        return Err(Fault::missing("DhcpConfiguration"));
    }
    out.sort_by_key(|o| KEYS.iter().position(|k| *k == o.key));
    Ok(out)
}

pub fn create(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    options: Vec<DhcpOption>,
    tags: Tags,
) -> Result<DhcpOptions> {
    super::tags::validate(&tags, ctx.limits.tags_per_resource)?;
    let options = normalize(options)?;
    let d = DhcpOptions {
        meta: new_meta(ctx, "dopt", tags),
        options,
    };
    w.put(d.clone());
    Ok(d)
}

/// The VPCs (of any account) using the set.
pub fn vpcs_using<'w>(w: &'w World, id: &'w str) -> impl Iterator<Item = &'w Vpc> + 'w {
    w.iter::<Vpc>().filter(move |v| v.dhcp_options_id == id)
}

pub fn delete(w: &mut World, ctx: &mut Ctx<'_>, id: &str) -> Result<()> {
    DHCP.check(id)?;
    w.owned::<DhcpOptions>(id, &ctx.account, &ctx.region, || {
        Fault::new(
            "InvalidDhcpOptionsID.NotFound",
            format!("The dhcpOptions ID '{id}' does not exist"),
        )
    })?;
    if vpcs_using(w, id).next().is_some() {
        return Err(Fault::dependency(format!(
            "The dhcpOptions '{id}' has dependencies and cannot be deleted."
        )));
    }
    w.remove::<DhcpOptions>(id);
    Ok(())
}

/// Associates a set (or `default`, no options) with a VPC.
pub fn associate(w: &mut World, ctx: &mut Ctx<'_>, id: &str, vpc_id: &str) -> Result<()> {
    if id != NO_OPTIONS {
        get(w, ctx, id)?;
    }
    vpc::get(w, ctx, vpc_id)?;
    w.update::<Vpc>(vpc_id, |v| v.dhcp_options_id = id.to_string());
    Ok(())
}

/// The options of an account's default set in a region.
pub fn default_options(region: &str) -> Vec<DhcpOption> {
    vec![
        DhcpOption {
            key: "domain-name".into(),
            values: vec![dns::private_domain(region)],
        },
        DhcpOption {
            key: "domain-name-servers".into(),
            values: vec![AMAZON_PROVIDED_DNS.into()],
        },
    ]
}

/// Makes the caller's default set in this region; returns its ID.
pub fn create_default_set(w: &mut World, ctx: &mut Ctx<'_>) -> String {
    let d = DhcpOptions {
        meta: new_meta(ctx, "dopt", Vec::new()),
        options: default_options(&ctx.region),
    };
    let id = d.meta.id.clone();
    w.put(d);
    id
}

/// The set a new VPC of the caller gets: the region's default set while it
/// exists, else `default`.
pub fn for_new_vpc(w: &World, ctx: &Ctx<'_>) -> String {
    let key = format!("{}:{}", ctx.account, ctx.region);
    w.get::<RegionInit>(&key)
        .and_then(|i| i.default_dhcp_options.clone())
        .filter(|id| w.get::<DhcpOptions>(id).is_some())
        .unwrap_or_else(|| NO_OPTIONS.to_string())
}

/// An instance's resolver configuration under its VPC's DHCP options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolverConfig {
    pub nameservers: Vec<IpAddr>,
    pub search: Vec<String>,
}

/// What DHCP gives an instance of `vpc`: its set's `domain-name-servers`
/// (`AmazonProvidedDNS` = base + 2) and `domain-name` (the search list).
/// A VPC on `default` (or whose set is gone) gets neither. An instance of
/// an IPv6-only subnet (`ipv6_only`) gets them by DHCPv6: `AmazonProvidedDNS`
/// is fd00:ec2::253 and IPv4 servers, which it cannot reach, are left out.
pub fn resolver_config(w: &World, vpc: &Vpc, ipv6_only: bool) -> ResolverConfig {
    let Some(set) = w.get::<DhcpOptions>(&vpc.dhcp_options_id) else {
        return ResolverConfig {
            nameservers: Vec::new(),
            search: Vec::new(),
        };
    };
    let nameservers = set
        .values("domain-name-servers")
        .iter()
        .filter_map(|v| {
            if v == AMAZON_PROVIDED_DNS && ipv6_only {
                Some(IpAddr::V6(dns::IPV6_RESOLVER))
            } else if v == AMAZON_PROVIDED_DNS {
                Some(IpAddr::V4(dns::resolver_ip(vpc)))
            } else {
                v.parse().ok()
            }
        })
        .filter(|ip: &IpAddr| !ipv6_only || ip.is_ipv6())
        .collect();
    let search = set
        .values("domain-name")
        .iter()
        .flat_map(|v| v.split(' '))
        .filter(|d| !d.is_empty())
        .map(|d| d.strip_suffix('.').unwrap_or(d).to_string())
        .collect();
    ResolverConfig {
        nameservers,
        search,
    }
}

/// The `/etc/resolv.conf` an instance of `vpc` gets (`ipv6_only`: one in
/// an IPv6-only subnet, see [`resolver_config`]).
pub fn resolv_conf(w: &World, vpc: &Vpc, ipv6_only: bool) -> String {
    let c = resolver_config(w, vpc, ipv6_only);
    let mut out = format!(
        "# written by vpcd: DHCP options {} of {}\n",
        vpc.dhcp_options_id, vpc.meta.id
    );
    for ns in &c.nameservers {
        out.push_str(&format!("nameserver {ns}\n"));
    }
    if !c.search.is_empty() {
        out.push_str(&format!("search {}\n", c.search.join(" ")));
    }
    out.push_str("options timeout:1 attempts:2\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opt(key: &str, values: &[&str]) -> DhcpOption {
        DhcpOption {
            key: key.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    #[test]
    fn empty_options_are_dropped_and_keys_ordered() {
        let got = normalize(vec![
            opt("ntp-servers", &["169.254.169.123"]),
            opt("netbios-node-type", &[""]),
            opt("domain-name-servers", &[]),
            opt("domain-name", &["corp.example"]),
        ])
        .unwrap();
        assert_eq!(
            got,
            vec![
                opt("domain-name", &["corp.example"]),
                opt("ntp-servers", &["169.254.169.123"])
            ]
        );
        assert_eq!(
            normalize(vec![opt("domain-name", &[""])]).unwrap_err().code,
            "MissingParameter"
        );
    }

    #[test]
    fn bad_values_are_refused() {
        for bad in [
            opt("domain-name", &["a..b"]),
            opt("domain-name", &["-a.example"]),
            opt("domain-name", &["a.example", "b.example"]),
            opt("domain-name-servers", &["10.0.0.300"]),
            opt(
                "domain-name-servers",
                &["1.1.1.1", "1.1.1.2", "1.1.1.3", "1.1.1.4", "1.1.1.5"],
            ),
            opt("ntp-servers", &["AmazonProvidedDNS"]),
            opt("netbios-name-servers", &["fd00::1"]),
            opt("netbios-node-type", &["3"]),
            opt("ipv6-address-preferred-lease-time", &["139"]),
            opt("router", &["10.0.0.1"]),
            opt("unknown", &[]),
        ] {
            let e = normalize(vec![bad.clone()]).unwrap_err();
            assert_eq!(e.code, "InvalidParameterValue", "{bad:?}: {e}");
        }
        let dup = normalize(vec![opt("domain-name", &["a"]), opt("domain-name", &["b"])]);
        assert_eq!(dup.unwrap_err().code, "InvalidParameterValue");
        assert!(normalize(vec![
            opt("domain-name", &["corp.example other.example"]),
            opt(
                "domain-name-servers",
                &["AmazonProvidedDNS", "10.0.0.53", "fd00::53"]
            ),
            opt("netbios-node-type", &["2"]),
            opt("ipv6-address-preferred-lease-time", &["140"]),
        ])
        .is_ok());
    }
}
