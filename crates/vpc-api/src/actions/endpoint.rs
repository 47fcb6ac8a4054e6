//! VPC endpoints: Create/Describe/Modify/DeleteVpcEndpoints and
//! DescribeVpcEndpointServices.

use super::{Handler, Req};
use crate::query::{self, tag_field};
use crate::xml::{escape_into, timestamp, Xml};
use vpc_model::ops::endpoint::{self, CreateSpec, ModifySpec, Service};
use vpc_model::{Ctx, Fault, SecurityGroup, VpcEndpoint, World};

/// Every action this family serves, with its handler.
pub const ACTIONS: &[(&str, Handler)] = &[
    ("CreateVpcEndpoint", Handler::Write(create)),
    ("ModifyVpcEndpoint", Handler::Write(modify)),
    ("DeleteVpcEndpoints", Handler::Write(delete)),
    ("DescribeVpcEndpoints", Handler::Read(describe)),
    (
        "DescribeVpcEndpointServices",
        Handler::Read(describe_services),
    ),
];

fn strings<'a>(x: &mut Xml, tag: &str, items: impl IntoIterator<Item = &'a String>) {
    x.set(tag, items, |x, s| escape_into(&mut x.out, s));
}

/// The service name's last part (`s3`, `ecr.api`) and region.
fn service_parts(name: &str) -> (&str, &str) {
    let rest = name.strip_prefix("com.amazonaws.").unwrap_or(name);
    rest.split_once('.').unwrap_or((rest, ""))
}

fn render(x: &mut Xml, w: &World, e: &VpcEndpoint) {
    x.leaf("vpcEndpointId", &e.meta.id)
        .leaf("vpcEndpointType", &e.endpoint_type)
        .leaf("vpcId", &e.vpc_id)
        .leaf("serviceName", &e.service_name)
        .leaf("state", &e.state)
        .leaf("policyDocument", &e.policy_document);
    strings(x, "routeTableIdSet", &e.route_table_ids);
    strings(x, "subnetIdSet", &e.subnet_ids);
    x.set("groupSet", &e.group_ids, |x, g| {
        let name = w.get::<SecurityGroup>(g).map(|s| s.name.as_str());
        x.leaf("groupId", g).opt("groupName", name);
    });
    x.leaf("ipAddressType", "ipv4");
    x.open("dnsOptions")
        .leaf("dnsRecordIpType", "ipv4")
        .close("dnsOptions");
    x.bool("privateDnsEnabled", e.private_dns_enabled)
        .bool("requesterManaged", false);
    strings(x, "networkInterfaceIdSet", &e.network_interface_ids);
    let (region, service) = service_parts(&e.service_name);
    let dns: Vec<String> = if e.endpoint_type == "Interface" {
        vec![format!(
            "{}.{service}.{region}.vpce.amazonaws.com",
            e.meta.id
        )]
    } else {
        Vec::new()
    };
    x.set("dnsEntrySet", &dns, |x, d| {
        x.leaf("dnsName", d).leaf("hostedZoneId", "Z7HUB22UULQXV");
    });
    x.leaf("creationTimestamp", &timestamp(e.meta.created.0));
    x.tags(&e.meta.tags);
    x.leaf("ownerId", &e.meta.owner);
}

fn create(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let spec = CreateSpec {
        vpc_id: r.p.string("VpcId"),
        service_name: r.p.string("ServiceName"),
        endpoint_type: r.p.string("VpcEndpointType"),
        route_table_ids: r.p.list("RouteTableId")?,
        subnet_ids: r.p.list("SubnetId")?,
        group_ids: r.p.list("SecurityGroupId")?,
        policy_document: r.p.string("PolicyDocument"),
        private_dns_enabled: r.p.bool("PrivateDnsEnabled")?,
    };
    let tags = r.p.tag_specs("vpc-endpoint")?;
    let e = endpoint::create(w, ctx, &spec, tags)?;
    let mut x = r.xml();
    x.open("vpcEndpoint");
    render(&mut x, w, &e);
    x.close("vpcEndpoint");
    x.opt("clientToken", r.p.get("ClientToken"));
    r.done(x)
}

fn modify(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let spec = ModifySpec {
        add_route_tables: r.p.list("AddRouteTableId")?,
        remove_route_tables: r.p.list("RemoveRouteTableId")?,
        add_subnets: r.p.list("AddSubnetId")?,
        remove_subnets: r.p.list("RemoveSubnetId")?,
        add_groups: r.p.list("AddSecurityGroupId")?,
        remove_groups: r.p.list("RemoveSecurityGroupId")?,
        policy_document: r.p.string("PolicyDocument"),
        reset_policy: r.p.bool("ResetPolicy")?.unwrap_or(false),
        private_dns_enabled: r.p.bool("PrivateDnsEnabled")?,
    };
    endpoint::modify(w, ctx, r.p.req("VpcEndpointId")?, &spec)?;
    r.ok()
}

fn delete(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let ids = r.p.list("VpcEndpointId")?;
    if ids.is_empty() {
        return Err(Fault::missing("VpcEndpointId"));
    }
    let mut failed: Vec<(String, Fault)> = Vec::new();
    for id in &ids {
        if let Err(f) = endpoint::delete(w, ctx, id) {
            failed.push((id.clone(), f));
        }
    }
    let mut x = r.xml();
    x.set("unsuccessful", &failed, |x, (id, f)| {
        x.open("error")
            .leaf("code", &f.code)
            .leaf("message", &f.message)
            .close("error")
            .leaf("resourceId", id);
    });
    r.done(x)
}

fn field(e: &&VpcEndpoint, name: &str) -> Option<Vec<String>> {
    let one = |s: &str| Some(vec![s.to_string()]);
    match name {
        "service-name" => one(&e.service_name),
        "vpc-id" => one(&e.vpc_id),
        "vpc-endpoint-id" => one(&e.meta.id),
        "vpc-endpoint-state" => one(&e.state),
        "vpc-endpoint-type" => one(&e.endpoint_type),
        "ip-address-type" => one("ipv4"),
        _ => tag_field(&e.meta.tags, name),
    }
}

fn describe(w: &World, ctx: &Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let ids = r.p.list("VpcEndpointId")?;
    let mut items: Vec<&VpcEndpoint> = if ids.is_empty() {
        w.scoped::<VpcEndpoint>(&ctx.account, &ctx.region).collect()
    } else {
        let mut v = Vec::new();
        for id in &ids {
            v.push(endpoint::get(w, ctx, id)?);
        }
        v
    };
    items.sort_by(|a, b| a.meta.id.cmp(&b.meta.id));
    items.dedup_by(|a, b| a.meta.id == b.meta.id);
    let items = query::apply(
        items,
        &r.p.filters()?,
        &field,
        &[
            "service-name",
            "vpc-id",
            "vpc-endpoint-id",
            "vpc-endpoint-state",
            "vpc-endpoint-type",
            "ip-address-type",
        ],
    )?;
    let (page, next) = query::paginate(items, r.p, |e| e.meta.id.clone(), 5, 1000)?;
    let mut x = r.xml();
    x.set("vpcEndpointSet", page, |x, e| render(x, w, e));
    x.opt("nextToken", next.as_deref());
    r.done(x)
}

fn service_field(s: &Service, name: &str) -> Option<Vec<String>> {
    match name {
        "service-name" => Some(vec![s.name.clone()]),
        "service-type" => Some(s.types.iter().map(|t| t.to_string()).collect()),
        "owner" => Some(vec!["amazon".into()]),
        _ => None,
    }
}

fn describe_services(_w: &World, ctx: &Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let names = r.p.list("ServiceName")?;
    let all = endpoint::services(&ctx.region);
    for n in &names {
        if !all.iter().any(|s| &s.name == n) {
            return Err(Fault::new(
                "InvalidServiceName",
                format!("The Vpc Endpoint Service '{n}' does not exist"),
            ));
        }
    }
    let items: Vec<Service> = all
        .into_iter()
        .filter(|s| names.is_empty() || names.contains(&s.name))
        .collect();
    let items = query::apply(
        items,
        &r.p.filters()?,
        &|s: &Service, n: &str| service_field(s, n),
        &["service-name", "service-type", "owner"],
    )?;
    let (page, next) = query::paginate(items, r.p, |s| s.name.clone(), 5, 1000)?;
    let zones: Vec<String> = ctx.zones.iter().map(|(z, _)| z.clone()).collect();
    let mut x = r.xml();
    strings(&mut x, "serviceNameSet", page.iter().map(|s| &s.name));
    x.set("serviceDetailSet", &page, |x, s| {
        let (region, short) = service_parts(&s.name);
        let interface = s.types.contains(&"Interface");
        x.leaf("serviceName", &s.name)
            .leaf("serviceId", &format!("vpce-svc-{}", service_id(&s.name)));
        x.set("serviceType", &s.types, |x, t| {
            x.leaf("serviceType", t);
        });
        x.leaf("serviceRegion", region);
        strings(x, "availabilityZoneSet", &zones);
        x.leaf("owner", "amazon");
        let base = vec![format!("{short}.{region}.vpce.amazonaws.com")];
        strings(x, "baseEndpointDnsNameSet", &base);
        if interface {
            x.leaf("privateDnsName", &format!("{short}.{region}.amazonaws.com"));
        }
        x.bool("vpcEndpointPolicySupported", true)
            .bool("acceptanceRequired", false)
            .bool("managesVpcEndpoints", false);
        strings(x, "supportedIpAddressTypeSet", &["ipv4".to_string()]);
        x.empty("tagSet");
    });
    x.opt("nextToken", next.as_deref());
    r.done(x)
}

/// 17 hex digits derived from a service name (stable, like AWS's service IDs).
fn service_id(name: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("0{h:016x}")
}
