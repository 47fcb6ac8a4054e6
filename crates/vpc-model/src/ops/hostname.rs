//! Instance hostname types and resource-based names (AWS "EC2 instance
//! hostname types").
//!
//! * Every instance has an **IP name** for each private IPv4
//!   (`ip-10-0-1-10.ec2.internal`, `eni::private_dns_name`); it always
//!   answers A and never AAAA, whatever the options say.
//! * Every instance also has a **resource name**, `i-0123456789abcdef0.ec2.internal`
//!   (us-east-1) or `i-….<region>.compute.internal` ([`resource_name`]). It
//!   answers A with the primary private IPv4 when
//!   `EnableResourceNameDnsARecord` is on, and AAAA with the primary
//!   interface's first IPv6 address when `EnableResourceNameDnsAAAARecord`
//!   is on ([`resource_name_records`]); with neither it does not exist.
//! * `HostnameType` (`ip-name`, `resource-name`) says which of the two is
//!   the instance's hostname: the `privateDnsName` DescribeInstances shows
//!   ([`private_dns_name_of`]).
//! * A subnet's `PrivateDnsNameOptionsOnLaunch` ([`modify_subnet`],
//!   ModifySubnetAttribute) is what instances launched into it get unless
//!   RunInstances' `PrivateDnsNameOptions` says otherwise ([`on_launch`]);
//!   changing it touches no running instance. `ModifyPrivateDnsNameOptions`
//!   ([`modify_instance`]) changes one instance: the hostname type only while
//!   it is stopped, the record flags at any time.
//! * In an IPv6-only subnet hostnames are resource names and there is no
//!   IPv4 address for an A record: `ip-name` and the A-record flag are
//!   refused there, at every one of the three places above
//!   ([`check_in_subnet`]).

use super::{eni, instance, subnet};
use crate::fault::{Fault, Result};
use crate::types::{
    HostnameType, Instance, InstanceState, NetworkInterface, PrivateDnsNameOptions, Subnet,
};
use crate::world::World;
use crate::Ctx;
use std::net::{Ipv4Addr, Ipv6Addr};

/// A change to hostname options: what a request named (None: unchanged).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrivateDnsChange {
    /// `ip-name` or `resource-name`, as given.
    pub hostname_type: Option<String>,
    pub resource_name_a: Option<bool>,
    pub resource_name_aaaa: Option<bool>,
}

impl PrivateDnsChange {
    pub fn is_empty(&self) -> bool {
        self.hostname_type.is_none()
            && self.resource_name_a.is_none()
            && self.resource_name_aaaa.is_none()
    }

    /// `base` with this change applied; `param` names the hostname-type
    /// parameter in the error for a value that is neither type.
    pub fn apply(&self, base: PrivateDnsNameOptions, param: &str) -> Result<PrivateDnsNameOptions> {
        let mut out = base;
        if let Some(t) = &self.hostname_type {
            out.hostname_type = parse_hostname_type(t, param)?;
        }
        if let Some(a) = self.resource_name_a {
            out.resource_name_a = a;
        }
        if let Some(a) = self.resource_name_aaaa {
            out.resource_name_aaaa = a;
        }
        Ok(out)
    }
}

/// `ip-name` or `resource-name`.
pub fn parse_hostname_type(s: &str, param: &str) -> Result<HostnameType> {
    match s {
        "ip-name" => Ok(HostnameType::IpName),
        "resource-name" => Ok(HostnameType::ResourceName),
        _ => Err(Fault::invalid_param(format!(
            "Value ({s}) for parameter {param} is invalid. Valid values are: ip-name, resource-name"
        ))),
    }
}

/// How AWS spells a hostname type.
pub fn hostname_type_name(t: HostnameType) -> &'static str {
    match t {
        HostnameType::IpName => "ip-name",
        HostnameType::ResourceName => "resource-name",
    }
}

/// What an instance launched into `subnet` gets: the subnet's
/// `PrivateDnsNameOptionsOnLaunch` with RunInstances' `PrivateDnsNameOptions`
/// over it.
pub fn on_launch(subnet: &Subnet, req: &PrivateDnsChange) -> Result<PrivateDnsNameOptions> {
    let out = req.apply(
        subnet.private_dns_on_launch,
        "PrivateDnsNameOptions.HostnameType",
    )?;
    check_in_subnet(
        subnet,
        &out,
        "PrivateDnsNameOptions.HostnameType",
        "PrivateDnsNameOptions.EnableResourceNameDnsARecord",
    )?;
    Ok(out)
}

/// The options `o` in subnet `s`: an IPv6-only subnet allows neither
/// `ip-name` hostnames nor resource-name A records (there is no IPv4
/// address). `type_param` and `a_param` name the parameters in the error.
pub fn check_in_subnet(
    s: &Subnet,
    o: &PrivateDnsNameOptions,
    type_param: &str,
    a_param: &str,
) -> Result<()> {
    if !s.ipv6_native {
        return Ok(());
    }
    let id = &s.meta.id;
    if o.hostname_type == HostnameType::IpName {
        return Err(Fault::invalid_param(format!(
            "Invalid value 'ip-name' for {type_param}. Instances in the IPv6-only subnet ({id}) must use resource-name hostnames."
        )));
    }
    if o.resource_name_a {
        return Err(Fault::invalid_param(format!(
            "Invalid value 'true' for {a_param}. The IPv6-only subnet ({id}) has no IPv4 addresses for DNS A records."
        )));
    }
    Ok(())
}

/// ModifySubnetAttribute with `PrivateDnsHostnameTypeOnLaunch`,
/// `EnableResourceNameDnsARecordOnLaunch` or
/// `EnableResourceNameDnsAAAARecordOnLaunch`: later launches only.
pub fn modify_subnet(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    id: &str,
    change: &PrivateDnsChange,
) -> Result<()> {
    let s = subnet::get(w, ctx, id)?;
    let new = change.apply(s.private_dns_on_launch, "PrivateDnsHostnameTypeOnLaunch")?;
    check_in_subnet(
        s,
        &new,
        "PrivateDnsHostnameTypeOnLaunch",
        "EnableResourceNameDnsARecordOnLaunch",
    )?;
    if new != s.private_dns_on_launch {
        w.update::<Subnet>(id, |s| s.private_dns_on_launch = new);
    }
    Ok(())
}

/// ModifyPrivateDnsNameOptions: the hostname type only while the instance
/// is stopped (`IncorrectInstanceState` otherwise), the record flags in any
/// state but terminated.
pub fn modify_instance(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    id: &str,
    change: &PrivateDnsChange,
) -> Result<()> {
    let i = instance::get(w, ctx, id)?;
    if i.state == InstanceState::Terminated {
        return Err(Fault::new(
            "IncorrectInstanceState",
            format!("The instance '{id}' is not in a valid state for this operation."),
        ));
    }
    let new = change.apply(i.opts.private_dns, "PrivateDnsHostnameType")?;
    if let Some(s) = w.get::<Subnet>(&i.subnet_id) {
        check_in_subnet(
            s,
            &new,
            "PrivateDnsHostnameType",
            "EnableResourceNameDnsARecord",
        )?;
    }
    if new.hostname_type != i.opts.private_dns.hostname_type && i.state != InstanceState::Stopped {
        return Err(instance::not_stopped(id));
    }
    if new != i.opts.private_dns {
        w.update::<Instance>(id, |i| i.opts.private_dns = new);
    }
    Ok(())
}

/// `i-0123456789abcdef0.ec2.internal` (us-east-1) or
/// `i-0123456789abcdef0.<region>.compute.internal`.
pub fn resource_name(region: &str, instance_id: &str) -> String {
    format!("{instance_id}.{}", super::dns::private_domain(region))
}

/// Parses a resource name into (region, instance ID). Case-insensitive; a
/// trailing dot is allowed. `regions` are the region names to recognise.
pub fn parse_resource_name<'r>(
    name: &str,
    regions: impl IntoIterator<Item = &'r str>,
) -> Option<(&'r str, String)> {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    let (host, rest) = name.split_once('.')?;
    let hex = host.strip_prefix("i-")?;
    if !(hex.len() == 8 || hex.len() == 17) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let region = regions
        .into_iter()
        .find(|r| super::dns::private_domain(r) == rest)?;
    Some((region, host.to_string()))
}

/// The instance's interface at device index 0.
fn primary_eni<'w>(w: &'w World, i: &Instance) -> Option<&'w NetworkInterface> {
    w.get::<NetworkInterface>(&i.primary_eni)
}

/// What the instance's resource name answers: (A, AAAA), each only when its
/// flag is on and the primary interface has such an address. (None, None):
/// the name does not exist.
pub fn resource_name_records(w: &World, i: &Instance) -> (Option<Ipv4Addr>, Option<Ipv6Addr>) {
    let Some(e) = primary_eni(w, i) else {
        return (None, None);
    };
    let o = i.opts.private_dns;
    let a = if o.resource_name_a {
        e.primary_ip()
    } else {
        None
    };
    let aaaa = if o.resource_name_aaaa {
        e.ipv6.first().copied()
    } else {
        None
    };
    (a, aaaa)
}

/// The instance's hostname as DescribeInstances shows it (`privateDnsName`):
/// its resource name when its hostname type is `resource-name`, else the IP
/// name of its primary private IPv4; empty without a primary interface.
pub fn private_dns_name_of(w: &World, i: &Instance) -> String {
    let Some(e) = primary_eni(w, i) else {
        return String::new();
    };
    match i.opts.private_dns.hostname_type {
        HostnameType::ResourceName => resource_name(&i.meta.region, &i.meta.id),
        HostnameType::IpName => e
            .primary_ip()
            .map(|ip| eni::private_dns_name(&i.meta.region, ip))
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGIONS: [&str; 2] = ["us-east-1", "eu-west-1"];

    #[test]
    fn resource_names_follow_the_region_and_parse_back() {
        assert_eq!(
            resource_name("us-east-1", "i-0123456789abcdef0"),
            "i-0123456789abcdef0.ec2.internal"
        );
        assert_eq!(
            resource_name("eu-west-1", "i-0123456789abcdef0"),
            "i-0123456789abcdef0.eu-west-1.compute.internal"
        );
        for r in REGIONS {
            let n = resource_name(r, "i-0123456789abcdef0");
            assert_eq!(
                parse_resource_name(&n, REGIONS),
                Some((r, "i-0123456789abcdef0".to_string()))
            );
            assert_eq!(
                parse_resource_name(&format!("{}.", n.to_uppercase()), REGIONS),
                Some((r, "i-0123456789abcdef0".to_string()))
            );
        }
        for bad in [
            "i-0123456789abcdef.ec2.internal",
            "i-0123456789abcdefg.ec2.internal",
            "x-0123456789abcdef0.ec2.internal",
            "i-0123456789abcdef0.us-west-2.compute.internal",
            "i-0123456789abcdef0.ec2.internal.example",
            "ip-10-0-0-1.ec2.internal",
        ] {
            assert_eq!(parse_resource_name(bad, REGIONS), None, "{bad}");
        }
    }

    #[test]
    fn a_change_applies_over_its_base_and_refuses_unknown_types() {
        let base = PrivateDnsNameOptions::default();
        let c = PrivateDnsChange {
            hostname_type: Some("resource-name".into()),
            resource_name_a: Some(true),
            resource_name_aaaa: None,
        };
        let got = c.apply(base, "P").unwrap();
        assert_eq!(got.hostname_type, HostnameType::ResourceName);
        assert!(got.resource_name_a && !got.resource_name_aaaa);
        let bad = PrivateDnsChange {
            hostname_type: Some("name".into()),
            ..PrivateDnsChange::default()
        };
        let e = bad
            .apply(base, "PrivateDnsHostnameTypeOnLaunch")
            .unwrap_err();
        assert_eq!(e.code, "InvalidParameterValue");
        assert!(e.message.contains("PrivateDnsHostnameTypeOnLaunch"), "{e}");
        assert!(PrivateDnsChange::default().is_empty());
    }
}
