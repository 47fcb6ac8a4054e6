//! VPC endpoints for AWS services: gateway endpoints (S3, DynamoDB), which
//! route the service's AWS-managed prefix list to themselves in the route
//! tables they are given, and interface endpoints, which hold one
//! requester-managed network interface in each of their subnets.
//!
//! The service catalogue is fixed data ([`services`]). vpcd runs none of
//! these services: a packet routed to a gateway endpoint ends there
//! (`route::next_hop` gives `NextHop::GatewayEndpoint`).

use super::{eni, new_meta, prefix_list, route, subnet, vpc, IdKind};
use crate::fault::{Fault, Result};
use crate::types::*;
use crate::world::World;
use crate::Ctx;

pub const VPCE: IdKind = IdKind {
    prefix: "vpce",
    malformed: "InvalidVpcEndpointId.Malformed",
    not_found: "InvalidVpcEndpointId.NotFound",
    noun: "VpcEndpoint",
};

/// Gateway endpoints per account and region (AWS's default quota).
pub const GATEWAY_ENDPOINTS_PER_REGION: usize = 20;
/// Interface endpoints per VPC (AWS's default quota).
pub const INTERFACE_ENDPOINTS_PER_VPC: usize = 50;

/// The policy an endpoint gets when none is given: everything allowed.
pub const DEFAULT_POLICY: &str = r#"{"Version":"2008-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"*","Resource":"*"}]}"#;

/// One service endpoints can be made for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    /// The endpoint types it offers (`Gateway`, `Interface`).
    pub types: Vec<&'static str>,
}

/// The services of a region that offer endpoints, by name.
pub fn services(region: &str) -> Vec<Service> {
    let mut out: Vec<Service> = [
        ("dynamodb", &["Gateway"][..]),
        ("ec2", &["Interface"][..]),
        ("ecr.api", &["Interface"][..]),
        ("ecr.dkr", &["Interface"][..]),
        ("kms", &["Interface"][..]),
        ("logs", &["Interface"][..]),
        ("s3", &["Gateway", "Interface"][..]),
        ("secretsmanager", &["Interface"][..]),
        ("ssm", &["Interface"][..]),
        ("sts", &["Interface"][..]),
    ]
    .iter()
    .map(|(s, types)| Service {
        name: format!("com.amazonaws.{region}.{s}"),
        types: types.to_vec(),
    })
    .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

pub fn get<'w>(w: &'w World, ctx: &Ctx<'_>, id: &str) -> Result<&'w VpcEndpoint> {
    w.owned::<VpcEndpoint>(id, &ctx.account, &ctx.region, VPCE.nf(id)?)
}

/// CreateVpcEndpoint as sent.
#[derive(Debug, Clone, Default)]
pub struct CreateSpec {
    pub vpc_id: Option<String>,
    pub service_name: Option<String>,
    pub endpoint_type: Option<String>,
    pub route_table_ids: Vec<String>,
    pub subnet_ids: Vec<String>,
    pub group_ids: Vec<String>,
    pub policy_document: Option<String>,
    pub private_dns_enabled: Option<bool>,
}

/// The AWS-managed list a gateway endpoint for `service_name` routes.
fn service_list(ctx: &Ctx<'_>, service_name: &str) -> Result<prefix_list::ListView> {
    let short = service_name
        .rsplit_once('.')
        .map(|(_, s)| s)
        .unwrap_or_default();
    prefix_list::service_list(&ctx.region, short).ok_or_else(|| {
        Fault::invalid_param(format!(
            "The service {service_name} has no prefix list in this region."
        ))
    })
}

fn check_policy(p: &str) -> Result<()> {
    if p.trim().is_empty() || p.len() > 20_480 {
        return Err(Fault::new(
            "InvalidPolicyDocument",
            "The policy document must be between 1 and 20480 characters.",
        ));
    }
    Ok(())
}

/// Checks route tables for a gateway endpoint: the caller's, in the VPC,
/// without a route to the list already.
fn check_tables(w: &World, ctx: &Ctx<'_>, vpc_id: &str, list: &str, ids: &[String]) -> Result<()> {
    for id in ids {
        let rt = route::get(w, ctx, id)?;
        if rt.vpc_id != vpc_id {
            return Err(Fault::invalid_param(format!(
                "The route table {id} does not belong to the VPC {vpc_id}."
            )));
        }
        if rt
            .routes
            .iter()
            .any(|r| r.prefix_list.as_deref() == Some(list))
        {
            return Err(Fault::new(
                "RouteAlreadyExists",
                format!(
                    "route table {id} already has a route with destination-prefix-list-id {list}"
                ),
            ));
        }
    }
    Ok(())
}

/// Adds the endpoint's route to the list in each table.
fn add_routes(w: &mut World, endpoint_id: &str, list: &prefix_list::ListView, ids: &[String]) {
    for id in ids {
        w.update::<RouteTable>(id, |rt| {
            rt.routes.extend(list.cidrs.iter().map(|dest| Route {
                dest: *dest,
                target: RouteTarget::VpcEndpoint(endpoint_id.to_string()),
                origin: "CreateRoute".into(),
                prefix_list: Some(list.id.clone()),
            }))
        });
    }
}

/// Removes the endpoint's routes from each table.
fn remove_routes(w: &mut World, endpoint_id: &str, ids: &[String]) {
    for id in ids {
        w.update::<RouteTable>(id, |rt| {
            rt.routes
                .retain(|r| r.target != RouteTarget::VpcEndpoint(endpoint_id.to_string()))
        });
    }
}

fn dedup(ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for id in ids {
        if !out.contains(id) {
            out.push(id.clone());
        }
    }
    out
}

/// The groups of an interface endpoint: those given (the caller's, in the
/// VPC), or the VPC's default group.
fn endpoint_groups(w: &World, ctx: &Ctx<'_>, v: &Vpc, ids: &[String]) -> Result<Vec<String>> {
    if ids.is_empty() {
        return Ok(vec![v.default_sg.clone()]);
    }
    for g in ids {
        let sg = super::sg::get(w, ctx, g)?;
        if sg.vpc_id != v.meta.id {
            return Err(Fault::invalid_param(format!(
                "The security group {g} does not belong to the VPC {}.",
                v.meta.id
            )));
        }
    }
    Ok(dedup(ids))
}

/// One requester-managed interface of an interface endpoint in each subnet.
fn add_interfaces(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    e: &VpcEndpoint,
    subnets: &[String],
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for s in subnets {
        let sub = subnet::get(w, ctx, s)?.clone();
        let spec = eni::EniSpec {
            subnet_id: Some(s.clone()),
            ..eni::EniSpec::default()
        };
        let mut addrs = eni::plan_addresses(w, ctx, &sub, &spec)?;
        addrs.auto_ipv6 = 0;
        let n = eni::insert(
            w,
            ctx,
            eni::NewEni {
                subnet: sub,
                description: format!("VPC Endpoint Interface {}", e.meta.id),
                groups: e.group_ids.clone(),
                addrs,
                tags: Vec::new(),
                attachment: None,
                public_ip: false,
                interface_type: "vpc_endpoint",
            },
        )?;
        out.push(n.meta.id);
    }
    Ok(out)
}

/// Checks subnets for an interface endpoint: the caller's, in the VPC, one per zone.
fn check_subnets(
    w: &World,
    ctx: &Ctx<'_>,
    vpc_id: &str,
    ids: &[String],
    taken: &[String],
) -> Result<()> {
    let mut zones: Vec<String> = taken
        .iter()
        .filter_map(|s| w.get::<Subnet>(s).map(|x| x.az.clone()))
        .collect();
    for id in ids {
        let s = subnet::get(w, ctx, id)?;
        if s.vpc_id != vpc_id {
            return Err(Fault::invalid_param(format!(
                "The subnet {id} does not belong to the VPC {vpc_id}."
            )));
        }
        if zones.contains(&s.az) {
            return Err(Fault::new(
                "DuplicateSubnetsInSameZone",
                format!("Found another VPC endpoint subnet in the availability zone of {id}. VPC endpoint subnets should be in different availability zones supported by the VPC endpoint service."),
            ));
        }
        zones.push(s.az.clone());
    }
    Ok(())
}

pub fn create(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    spec: &CreateSpec,
    tags: Tags,
) -> Result<VpcEndpoint> {
    let vpc_id = spec
        .vpc_id
        .as_deref()
        .ok_or_else(|| Fault::missing("VpcId"))?;
    let service_name = spec
        .service_name
        .as_deref()
        .ok_or_else(|| Fault::missing("ServiceName"))?;
    let v = vpc::get(w, ctx, vpc_id)?.clone();
    let endpoint_type = spec.endpoint_type.as_deref().unwrap_or("Gateway");
    if !matches!(
        endpoint_type,
        "Gateway" | "Interface" | "GatewayLoadBalancer"
    ) {
        return Err(Fault::invalid_param(format!(
            "Value ({endpoint_type}) for parameter VpcEndpointType is invalid. Valid values: Gateway, Interface, GatewayLoadBalancer."
        )));
    }
    let service = services(&ctx.region)
        .into_iter()
        .find(|s| s.name == service_name)
        .ok_or_else(|| {
            Fault::new(
                "InvalidServiceName",
                format!("The Vpc Endpoint Service '{service_name}' does not exist"),
            )
        })?;
    if !service.types.contains(&endpoint_type) {
        return Err(Fault::invalid_param(format!(
            "The Vpc Endpoint Service '{service_name}' does not support endpoint type {endpoint_type}."
        )));
    }
    let policy = spec
        .policy_document
        .clone()
        .unwrap_or_else(|| DEFAULT_POLICY.to_string());
    check_policy(&policy)?;
    super::tags::validate(&tags, ctx.limits.tags_per_resource)?;
    let route_table_ids = dedup(&spec.route_table_ids);
    let subnet_ids = dedup(&spec.subnet_ids);
    let gateway = endpoint_type == "Gateway";
    let mut group_ids = Vec::new();
    let list = if gateway {
        if !subnet_ids.is_empty() || !spec.group_ids.is_empty() {
            return Err(Fault::new(
                "InvalidParameter",
                "Subnets and security groups cannot be specified for a Gateway endpoint.",
            ));
        }
        let list = service_list(ctx, service_name)?;
        check_tables(w, ctx, vpc_id, &list.id, &route_table_ids)?;
        let n = w
            .scoped::<VpcEndpoint>(&ctx.account, &ctx.region)
            .filter(|e| e.endpoint_type == "Gateway")
            .count();
        if n >= GATEWAY_ENDPOINTS_PER_REGION {
            return Err(Fault::new(
                "VpcEndpointLimitExceeded",
                "The maximum number of gateway VPC endpoints has been reached.",
            ));
        }
        Some(list)
    } else {
        if !route_table_ids.is_empty() {
            return Err(Fault::new(
                "InvalidParameter",
                "Route tables cannot be specified for an Interface endpoint.",
            ));
        }
        check_subnets(w, ctx, vpc_id, &subnet_ids, &[])?;
        group_ids = endpoint_groups(w, ctx, &v, &spec.group_ids)?;
        let n = w
            .scoped::<VpcEndpoint>(&ctx.account, &ctx.region)
            .filter(|e| e.endpoint_type == "Interface" && e.vpc_id == vpc_id)
            .count();
        if n >= INTERFACE_ENDPOINTS_PER_VPC {
            return Err(Fault::new(
                "VpcEndpointLimitExceeded",
                "The maximum number of interface VPC endpoints in this VPC has been reached.",
            ));
        }
        None
    };
    let mut e = VpcEndpoint {
        meta: new_meta(ctx, "vpce", tags),
        vpc_id: vpc_id.to_string(),
        service_name: service_name.to_string(),
        endpoint_type: endpoint_type.to_string(),
        state: "available".into(),
        policy_document: policy,
        route_table_ids: if gateway {
            route_table_ids.clone()
        } else {
            Vec::new()
        },
        subnet_ids: Vec::new(),
        group_ids,
        network_interface_ids: Vec::new(),
        private_dns_enabled: !gateway && spec.private_dns_enabled.unwrap_or(true),
    };
    if let Some(list) = &list {
        add_routes(w, &e.meta.id, list, &route_table_ids);
    } else {
        e.network_interface_ids = add_interfaces(w, ctx, &e, &subnet_ids)?;
        e.subnet_ids = subnet_ids;
    }
    w.put(e.clone());
    Ok(e)
}

/// ModifyVpcEndpoint as sent.
#[derive(Debug, Clone, Default)]
pub struct ModifySpec {
    pub add_route_tables: Vec<String>,
    pub remove_route_tables: Vec<String>,
    pub add_subnets: Vec<String>,
    pub remove_subnets: Vec<String>,
    pub add_groups: Vec<String>,
    pub remove_groups: Vec<String>,
    pub policy_document: Option<String>,
    pub reset_policy: bool,
    pub private_dns_enabled: Option<bool>,
}

pub fn modify(w: &mut World, ctx: &mut Ctx<'_>, id: &str, spec: &ModifySpec) -> Result<()> {
    let mut e = get(w, ctx, id)?.clone();
    let gateway = e.endpoint_type == "Gateway";
    if let Some(p) = &spec.policy_document {
        if spec.reset_policy {
            return Err(Fault::new(
                "InvalidParameterCombination",
                "PolicyDocument and ResetPolicy cannot be specified together.",
            ));
        }
        check_policy(p)?;
        e.policy_document = p.clone();
    }
    if spec.reset_policy {
        e.policy_document = DEFAULT_POLICY.to_string();
    }
    let add_rt = dedup(&spec.add_route_tables);
    let remove_rt = dedup(&spec.remove_route_tables);
    let add_sn = dedup(&spec.add_subnets);
    let remove_sn = dedup(&spec.remove_subnets);
    if gateway {
        if !add_sn.is_empty()
            || !remove_sn.is_empty()
            || !spec.add_groups.is_empty()
            || !spec.remove_groups.is_empty()
        {
            return Err(Fault::new(
                "InvalidParameter",
                "Subnets and security groups cannot be specified for a Gateway endpoint.",
            ));
        }
        let list = service_list(ctx, &e.service_name)?;
        for t in &remove_rt {
            route::get(w, ctx, t)?;
            if !e.route_table_ids.contains(t) {
                return Err(Fault::invalid_param(format!(
                    "The route table {t} is not associated with the VPC endpoint {id}."
                )));
            }
        }
        let fresh: Vec<String> = add_rt
            .iter()
            .filter(|t| !e.route_table_ids.contains(t) || remove_rt.contains(t))
            .cloned()
            .collect();
        remove_routes(w, id, &remove_rt);
        check_tables(w, ctx, &e.vpc_id, &list.id, &fresh)?;
        add_routes(w, id, &list, &fresh);
        e.route_table_ids.retain(|t| !remove_rt.contains(t));
        for t in fresh {
            if !e.route_table_ids.contains(&t) {
                e.route_table_ids.push(t);
            }
        }
    } else {
        if !add_rt.is_empty() || !remove_rt.is_empty() {
            return Err(Fault::new(
                "InvalidParameter",
                "Route tables cannot be specified for an Interface endpoint.",
            ));
        }
        let v = vpc::get(w, ctx, &e.vpc_id)?.clone();
        for s in &remove_sn {
            if !e.subnet_ids.contains(s) {
                return Err(Fault::invalid_param(format!(
                    "The subnet {s} is not associated with the VPC endpoint {id}."
                )));
            }
        }
        let kept: Vec<String> = e
            .subnet_ids
            .iter()
            .filter(|s| !remove_sn.contains(s))
            .cloned()
            .collect();
        let fresh: Vec<String> = add_sn
            .iter()
            .filter(|s| !kept.contains(s))
            .cloned()
            .collect();
        check_subnets(w, ctx, &e.vpc_id, &fresh, &kept)?;
        if !spec.add_groups.is_empty() || !spec.remove_groups.is_empty() {
            let added = endpoint_groups(w, ctx, &v, &spec.add_groups)?;
            let mut groups: Vec<String> = e.group_ids.clone();
            if !spec.add_groups.is_empty() {
                for g in added {
                    if !groups.contains(&g) {
                        groups.push(g);
                    }
                }
            }
            groups.retain(|g| !spec.remove_groups.contains(g));
            if groups.is_empty() {
                return Err(Fault::invalid_param(
                    "An interface endpoint must keep at least one security group.",
                ));
            }
            e.group_ids = groups;
        }
        // Interfaces of removed subnets go; new subnets get one each.
        let (gone, stay): (Vec<String>, Vec<String>) =
            e.network_interface_ids.iter().cloned().partition(|n| {
                w.get::<NetworkInterface>(n)
                    .is_some_and(|x| remove_sn.contains(&x.subnet_id))
            });
        for n in &gone {
            eni::remove_eni(w, n);
        }
        for n in &stay {
            let groups = e.group_ids.clone();
            w.update::<NetworkInterface>(n, |x| x.groups = groups);
        }
        let mut enis = stay;
        enis.extend(add_interfaces(w, ctx, &e, &fresh)?);
        e.network_interface_ids = enis;
        let mut subnets = kept;
        subnets.extend(fresh);
        e.subnet_ids = subnets;
        if let Some(p) = spec.private_dns_enabled {
            e.private_dns_enabled = p;
        }
    }
    w.put(e);
    Ok(())
}

/// Deletes one endpoint: its routes and interfaces go with it.
pub fn delete(w: &mut World, ctx: &mut Ctx<'_>, id: &str) -> Result<()> {
    let e = get(w, ctx, id)?.clone();
    remove_routes(w, id, &e.route_table_ids);
    for n in &e.network_interface_ids {
        eni::remove_eni(w, n);
    }
    w.remove::<VpcEndpoint>(id);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_services_have_a_prefix_list() {
        for s in services("eu-west-1") {
            if s.types.contains(&"Gateway") {
                let short = s.name.rsplit_once('.').unwrap().1;
                assert!(
                    prefix_list::service_list("eu-west-1", short).is_some(),
                    "{}",
                    s.name
                );
            }
        }
    }
}
