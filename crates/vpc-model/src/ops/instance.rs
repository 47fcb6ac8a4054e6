//! Instances: RunInstances (networking), start, stop, reboot, terminate,
//! attributes, and the timers of instances and NAT gateways.
//!
//! An instance is launched `pending` and becomes `running` after
//! `Limits::instance_transition_ms`; `stopping` → `stopped` and
//! `shutting-down` → `terminated` take as long. When an instance is
//! terminated, its interfaces with DeleteOnTermination are deleted and the
//! others detached (losing an auto-assigned public IP); the terminated
//! instance stays visible for an hour. [`tick`] applies every due
//! transition of instances and NAT gateways; [`next_deadline`] says when the
//! next one is due.

use super::{eni, hostname, image, nat, new_meta, sg, subnet, volume, IdKind};
use crate::ctx::Timestamp;
use crate::fault::{Fault, Result};
use crate::instance_types::{self, InstanceType};
use crate::types::*;
use crate::world::World;
use crate::Ctx;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

pub const INSTANCE: IdKind = IdKind {
    prefix: "i",
    malformed: "InvalidInstanceID.Malformed",
    not_found: "InvalidInstanceID.NotFound",
    noun: "instance",
};

/// How long a terminated instance stays visible.
pub const TERMINATED_VISIBLE_MS: i64 = Timestamp::HOUR;

/// The caller's instance by ID.
pub fn get<'w>(w: &'w World, ctx: &Ctx<'_>, id: &str) -> Result<&'w Instance> {
    w.owned::<Instance>(id, &ctx.account, &ctx.region, INSTANCE.nf(id)?)
}

/// The caller's instances by ID, in the order given (duplicates once).
///
/// Every unknown ID is named in one `InvalidInstanceID.NotFound`, as EC2 does.
pub fn get_many<'w>(w: &'w World, ctx: &Ctx<'_>, ids: &[String]) -> Result<Vec<&'w Instance>> {
    if ids.is_empty() {
        return Err(Fault::missing("InstanceId"));
    }
    let mut out: Vec<&Instance> = Vec::new();
    let mut missing: Vec<&str> = Vec::new();
    for id in ids {
        INSTANCE.check(id)?;
        match w.get::<Instance>(id) {
            Some(i) if i.meta.owner == ctx.account && i.meta.region == ctx.region => {
                if !out.iter().any(|x| x.meta.id == i.meta.id) {
                    out.push(i);
                }
            }
            _ => {
                if !missing.contains(&id.as_str()) {
                    missing.push(id);
                }
            }
        }
    }
    match missing.len() {
        0 => Ok(out),
        1 => Err(INSTANCE.not_found(missing[0])),
        _ => Err(Fault::new(
            "InvalidInstanceID.NotFound",
            format!("The instance IDs '{}' do not exist", missing.join(", ")),
        )),
    }
}

/// One `NetworkInterface.N` of RunInstances.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IfaceSpec {
    pub device_index: Option<i64>,
    /// Attach this existing, available interface instead of creating one.
    pub network_interface_id: Option<String>,
    pub associate_public_ip: Option<bool>,
    pub delete_on_termination: Option<bool>,
    /// The new interface (subnet, addresses, groups, description).
    pub eni: eni::EniSpec,
}

/// RunInstances' parameters (the networking ones, and what Describe shows).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunInstances {
    pub image_id: Option<String>,
    pub instance_type: Option<String>,
    pub min_count: Option<i64>,
    pub max_count: Option<i64>,
    pub subnet_id: Option<String>,
    pub private_ip: Option<String>,
    pub group_ids: Vec<String>,
    pub group_names: Vec<String>,
    pub ipv6_count: Option<i64>,
    pub ipv6: Vec<String>,
    pub interfaces: Vec<IfaceSpec>,
    /// `Placement.AvailabilityZone`.
    pub availability_zone: Option<String>,
    /// `Placement.HostId`: vpcd has no Dedicated Hosts, so any is unknown.
    pub host_id: Option<String>,
    /// `Placement.Tenancy`: `default` or `dedicated` (`host` is refused).
    pub tenancy: Option<String>,
    pub key_name: Option<String>,
    pub client_token: Option<String>,
    pub instance_tags: Tags,
    pub eni_tags: Tags,
    pub volume_tags: Tags,
    /// `BlockDeviceMapping.N`.
    pub block_devices: Vec<volume::BlockDevice>,
    /// `MetadataOptions.*`.
    pub metadata: MetadataChange,
    /// `CreditSpecification.CpuCredits`.
    pub cpu_credits: Option<String>,
    pub disable_api_termination: Option<bool>,
    pub disable_api_stop: Option<bool>,
    /// `InstanceInitiatedShutdownBehavior`: `stop` or `terminate`.
    pub shutdown_behavior: Option<String>,
    /// Base64.
    pub user_data: Option<String>,
    pub ebs_optimized: Option<bool>,
    /// `Monitoring.Enabled`.
    pub monitoring: Option<bool>,
    /// `PrivateDnsNameOptions.*` (over the subnet's options on launch).
    pub private_dns: hostname::PrivateDnsChange,
}

/// `MetadataOptions` of RunInstances, or ModifyInstanceMetadataOptions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataChange {
    pub http_tokens: Option<String>,
    pub http_put_response_hop_limit: Option<i64>,
    pub http_endpoint: Option<String>,
    pub http_protocol_ipv6: Option<String>,
    pub instance_metadata_tags: Option<String>,
}

impl MetadataChange {
    pub fn is_empty(&self) -> bool {
        *self == MetadataChange::default()
    }

    /// Applies the change to `m`, checking every value.
    pub fn apply(&self, m: &MetadataOptions) -> Result<MetadataOptions> {
        fn one_of(name: &str, v: &Option<String>, ok: &[&str], cur: &str) -> Result<String> {
            match v.as_deref().filter(|s| !s.is_empty()) {
                None => Ok(cur.to_string()),
                Some(x) if ok.contains(&x) => Ok(x.to_string()),
                Some(x) => Err(Fault::invalid_param(format!(
                    "Value ({x}) for parameter {name} is invalid. Valid values: {}",
                    ok.join(", ")
                ))),
            }
        }
        let hop = match self.http_put_response_hop_limit {
            None => m.http_put_response_hop_limit,
            Some(h) if (1..=64).contains(&h) => h as u32,
            Some(h) => {
                return Err(Fault::invalid_param(format!(
                    "Value ({h}) for parameter HttpPutResponseHopLimit is invalid. Expected a value between 1 and 64."
                )))
            }
        };
        let onoff = ["enabled", "disabled"];
        Ok(MetadataOptions {
            http_tokens: one_of(
                "HttpTokens",
                &self.http_tokens,
                &["optional", "required"],
                &m.http_tokens,
            )?,
            http_put_response_hop_limit: hop,
            http_endpoint: one_of(
                "HttpEndpoint",
                &self.http_endpoint,
                &onoff,
                &m.http_endpoint,
            )?,
            http_protocol_ipv6: one_of(
                "HttpProtocolIpv6",
                &self.http_protocol_ipv6,
                &onoff,
                &m.http_protocol_ipv6,
            )?,
            instance_metadata_tags: one_of(
                "InstanceMetadataTags",
                &self.instance_metadata_tags,
                &onoff,
                &m.instance_metadata_tags,
            )?,
        })
    }
}

/// One interface of the instances being launched, checked.
#[derive(Debug, Clone)]
enum Plan {
    Existing {
        device: u32,
        eni: NetworkInterface,
        delete_on_termination: bool,
    },
    New {
        device: u32,
        subnet: Subnet,
        groups: Vec<String>,
        addrs: eni::AddrPlan,
        description: String,
        delete_on_termination: bool,
        public_ip: bool,
    },
}

impl Plan {
    fn device(&self) -> u32 {
        match self {
            Plan::Existing { device, .. } | Plan::New { device, .. } => *device,
        }
    }

    fn subnet_id(&self) -> &str {
        match self {
            Plan::Existing { eni, .. } => &eni.subnet_id,
            Plan::New { subnet, .. } => &subnet.meta.id,
        }
    }
}

fn combination(msg: &str) -> Fault {
    Fault::new("InvalidParameterCombination", msg.to_string())
}

/// An instance type from the catalogue (`crate::instance_types`);
/// `InvalidParameterValue` for any other name, as RunInstances answers.
pub fn instance_type(t: &str) -> Result<&'static InstanceType> {
    instance_types::get(t)
        .ok_or_else(|| Fault::invalid_param(format!("Invalid value '{t}' for InstanceType.")))
}

/// Refuses a type that cannot have an interface in the IPv6-only subnet
/// `subnet_id` (Xen-based types: AWS runs IPv6-only on Nitro only).
pub fn check_type_for_ipv6_only(t: &InstanceType, subnet_id: &str) -> Result<()> {
    if t.supports_ipv6_only() {
        return Ok(());
    }
    Err(Fault::new(
        "UnsupportedOperation",
        format!(
            "IPv6-only subnets are not supported on {}: subnet '{subnet_id}' needs a Nitro-based instance type.",
            t.name
        ),
    ))
}

/// Checks a `CpuCredits` value against the type: burstable types only.
fn check_credits(t: &InstanceType, c: &str) -> Result<()> {
    if !matches!(c, "standard" | "unlimited") {
        return Err(Fault::invalid_param(format!(
            "Value ({c}) for parameter cpuCredits is invalid. Valid values: standard, unlimited"
        )));
    }
    if !t.burstable() {
        return Err(Fault::new(
            "InvalidParameterCombination",
            format!(
                "The parameter CreditSpecification is not supported for {} instances.",
                t.name
            ),
        ));
    }
    Ok(())
}

fn check_shutdown_behavior(b: &str) -> Result<()> {
    if matches!(b, "stop" | "terminate") {
        Ok(())
    } else {
        Err(Fault::invalid_param(format!(
            "Value ({b}) for parameter instanceInitiatedShutdownBehavior is invalid. Valid values: stop, terminate"
        )))
    }
}

/// The default subnet for a launch without one: the default VPC's default
/// subnet in `az`, else in the region's first zone (else any of them).
fn default_subnet(w: &World, ctx: &Ctx<'_>, az: Option<&str>) -> Result<Subnet> {
    let vpc = sg::default_vpc(w, ctx)
        .ok_or_else(|| Fault::new("VPCIdNotSpecified", "No default VPC for this user"))?;
    let mut subnets: Vec<&Subnet> = w
        .scoped::<Subnet>(&ctx.account, &ctx.region)
        .filter(|s| s.vpc_id == vpc && s.default_for_az)
        .collect();
    subnets.sort_by(|a, b| a.az.cmp(&b.az));
    let pick = match az {
        Some(z) => subnets.iter().find(|s| s.az == z || s.az_id == z),
        None => {
            let first = ctx.zones.first().map(|z| z.0.as_str());
            subnets
                .iter()
                .find(|s| Some(s.az.as_str()) == first)
                .or(subnets.first())
        }
    };
    pick.map(|s| (*s).clone()).ok_or_else(|| {
        Fault::new(
            "MissingInput",
            format!("No subnets found for the default VPC '{vpc}'. Please specify a subnet."),
        )
    })
}

/// RunInstances. Returns the launched instances (or, for a repeated
/// `ClientToken`, the ones that token launched before).
pub fn run(w: &mut World, ctx: &mut Ctx<'_>, req: RunInstances) -> Result<Vec<Instance>> {
    run_placed(w, ctx, req, &crate::placement::HostDirectory::default())
}

/// RunInstances on a cluster: the instances go to a live host serving their
/// zone ([`crate::placement::place`]), recorded in [`Instance::host`].
pub fn run_placed(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    req: RunInstances,
    hosts: &crate::placement::HostDirectory,
) -> Result<Vec<Instance>> {
    let image = req
        .image_id
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Fault::missing("ImageId"))?;
    let img = image::describe(image)?;
    let itype = req
        .instance_type
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| instance_types::DEFAULT_TYPE.into());
    let ti = instance_type(&itype)?;
    let volumes = volume::plan(&img, &req.block_devices)?;
    let metadata = req.metadata.apply(&MetadataOptions::default())?;
    let cpu_credits = match req.cpu_credits.as_deref().filter(|c| !c.is_empty()) {
        Some(c) => {
            check_credits(ti, c)?;
            Some(c.to_string())
        }
        None => ti.family.default_credits.map(str::to_string),
    };
    if let Some(b) = req.shutdown_behavior.as_deref().filter(|b| !b.is_empty()) {
        check_shutdown_behavior(b)?;
    }
    let opts = InstanceOptions {
        disable_api_termination: req.disable_api_termination.unwrap_or(false),
        disable_api_stop: req.disable_api_stop.unwrap_or(false),
        shutdown_behavior: req
            .shutdown_behavior
            .clone()
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| "stop".into()),
        user_data: req.user_data.clone().filter(|u| !u.is_empty()),
        ebs_optimized: req
            .ebs_optimized
            .unwrap_or(ti.family.ebs_optimized == "default"),
        monitoring: req.monitoring.unwrap_or(false),
        metadata,
        cpu_credits,
        root_device_name: img.root_device_name.to_string(),
        tenancy: "default".into(),
        private_dns: Default::default(),
    };
    let min = req.min_count.ok_or_else(|| Fault::missing("MinCount"))?;
    let max = req.max_count.ok_or_else(|| Fault::missing("MaxCount"))?;
    if min < 1 {
        return Err(Fault::invalid_param(format!(
            "Value ({min}) for parameter minCount is invalid. Expected a positive number."
        )));
    }
    if max < min {
        return Err(Fault::invalid_param(format!(
            "Value ({max}) for parameter maxCount is invalid. Expected a value greater than or equal to minCount ({min})."
        )));
    }
    let token = req.client_token.clone().filter(|t| !t.is_empty());
    if let Some(t) = &token {
        if t.len() > 64 {
            return Err(Fault::invalid_param(
                "Value for parameter clientToken is invalid. Length exceeds maximum of 64 characters.",
            ));
        }
        let mut prior: Vec<Instance> = w
            .scoped::<Instance>(&ctx.account, &ctx.region)
            .filter(|i| i.client_token.as_deref() == Some(t.as_str()))
            .cloned()
            .collect();
        if !prior.is_empty() {
            prior.sort_by_key(|i| i.launch_index);
            return Ok(prior);
        }
    }

    // Normalise to a list of interface specifications.
    let specs: Vec<IfaceSpec> = if req.interfaces.is_empty() {
        vec![IfaceSpec {
            device_index: Some(0),
            delete_on_termination: Some(true),
            eni: eni::EniSpec {
                subnet_id: req.subnet_id.clone(),
                private_ip: req.private_ip.clone(),
                group_ids: req.group_ids.clone(),
                group_names: req.group_names.clone(),
                ipv6_count: req.ipv6_count,
                ipv6: req.ipv6.clone(),
                ..eni::EniSpec::default()
            },
            ..IfaceSpec::default()
        }]
    } else {
        if req.subnet_id.as_deref().is_some_and(|s| !s.is_empty()) {
            return Err(combination(
                "Network interfaces and an instance-level subnet ID may not be specified on the same request",
            ));
        }
        if !req.group_ids.is_empty() || !req.group_names.is_empty() {
            return Err(combination(
                "Network interfaces and an instance-level security groups may not be specified on the same request",
            ));
        }
        if req.private_ip.as_deref().is_some_and(|s| !s.is_empty()) {
            return Err(combination(
                "Network interfaces and an instance-level private IP address should not be specified on the same request",
            ));
        }
        if req.ipv6_count.is_some() || !req.ipv6.is_empty() {
            return Err(combination(
                "Network interfaces and an instance-level IPv6 address count or addresses may not be specified on the same request",
            ));
        }
        req.interfaces.clone()
    };
    let mut devices: Vec<u32> = Vec::new();
    for s in &specs {
        let d = s.device_index.ok_or_else(|| {
            Fault::invalid_param("Each network interface requires a device index.")
        })?;
        let d = u32::try_from(d).map_err(|_| {
            Fault::invalid_param(format!(
                "Value ({d}) for parameter deviceIndex is invalid. Expected a non-negative number."
            ))
        })?;
        if devices.contains(&d) {
            return Err(Fault::invalid_param(format!(
                "Each network interface requires a unique device index. Device index {d} is used twice."
            )));
        }
        devices.push(d);
    }
    if !devices.contains(&0) {
        return Err(Fault::invalid_param(
            "A network interface with device index 0 is required.",
        ));
    }
    if specs.len() > ti.max_interfaces.min(ctx.limits.interfaces_per_instance) {
        return Err(eni::attachment_limit(specs.len(), &itype));
    }
    let addr_limits = eni::AddrLimits::of_type(ctx, ti);
    for (s, d) in specs.iter().zip(&devices) {
        if s.associate_public_ip.is_some() && *d != 0 {
            return Err(combination(
                "The associatePublicIPAddress parameter can only be specified for the network interface with DeviceIndex 0.",
            ));
        }
        if s.associate_public_ip == Some(true) && specs.len() > 1 {
            return Err(combination(
                "The associatePublicIPAddress parameter cannot be specified when launching with multiple network interfaces.",
            ));
        }
    }

    // The primary interface decides the subnet, zone and VPC.
    let placement = req.availability_zone.as_deref().filter(|s| !s.is_empty());
    if let Some(z) = placement {
        if !ctx.zones.iter().any(|(n, id)| n == z || id == z) {
            return Err(Fault::invalid_param(format!(
                "Invalid availability zone: [{z}]"
            )));
        }
    }
    if let Some(h) = req.host_id.as_deref().filter(|s| !s.is_empty()) {
        crate::ids::check("h", "InvalidHostID.Malformed", h)?;
        return Err(Fault::new(
            "InvalidHostID.NotFound",
            format!("The host ID '{h}' does not exist"),
        ));
    }
    let asked_tenancy = req.tenancy.as_deref().filter(|s| !s.is_empty());
    match asked_tenancy {
        None | Some("default") | Some("dedicated") => {}
        Some("host") => {
            return Err(Fault::invalid_param(
                "Value (host) for parameter tenancy is invalid. vpcd has no Dedicated Hosts.",
            ))
        }
        Some(t) => {
            return Err(Fault::invalid_param(format!(
                "Value ({t}) for parameter tenancy is invalid."
            )))
        }
    }
    let mut order: Vec<usize> = (0..specs.len()).collect();
    order.sort_by_key(|i| devices[*i]);
    let mut plans: Vec<Plan> = Vec::new();
    let mut az = String::new();
    let mut vpc_id = String::new();
    for &i in &order {
        let s = &specs[i];
        let device = devices[i];
        let plan = if let Some(id) = s.network_interface_id.as_deref().filter(|x| !x.is_empty()) {
            let e = eni::get(w, ctx, id)?.clone();
            if e.private_ips.len() > addr_limits.v4 {
                return Err(eni::v4_limit_exceeded(addr_limits.v4));
            }
            if e.ipv6.len() > addr_limits.v6 {
                return Err(eni::v6_limit_exceeded(addr_limits.v6));
            }
            if e.attachment.is_some() || e.requester_managed {
                return Err(Fault::new(
                    "InvalidNetworkInterface.InUse",
                    format!("Interface: [{id}] in use."),
                ));
            }
            if plans
                .iter()
                .any(|p| matches!(p, Plan::Existing { eni, .. } if eni.meta.id == id))
            {
                return Err(Fault::invalid_param(format!(
                    "Network interface {id} is specified more than once."
                )));
            }
            if s.eni.names_addresses_or_groups()
                || s.eni
                    .subnet_id
                    .as_deref()
                    .is_some_and(|x| !x.is_empty() && x != e.subnet_id)
            {
                return Err(combination(
                    "A network interface ID may not be specified together with a subnet, addresses or security groups for the same interface.",
                ));
            }
            if s.associate_public_ip == Some(true) {
                return Err(combination(
                    "The associatePublicIPAddress parameter cannot be specified for an existing network interface.",
                ));
            }
            if let Some(sub) = w.get::<Subnet>(&e.subnet_id).filter(|x| x.ipv6_native) {
                check_type_for_ipv6_only(ti, &sub.meta.id)?;
            }
            Plan::Existing {
                device,
                eni: e,
                delete_on_termination: s.delete_on_termination.unwrap_or(false),
            }
        } else {
            let subnet = match s.eni.subnet_id.as_deref().filter(|x| !x.is_empty()) {
                Some(id) => subnet::get(w, ctx, id)?.clone(),
                None if device == 0 => default_subnet(w, ctx, placement)?,
                None => return Err(Fault::invalid_param(
                    "Each network interface requires either a subnet or a network interface ID.",
                )),
            };
            let groups = eni::resolve_groups(
                w,
                ctx,
                &subnet,
                &s.eni.group_ids,
                &s.eni.group_names,
                "SecurityGroupsPerInstanceLimitExceeded",
            )?;
            if subnet.ipv6_native {
                check_type_for_ipv6_only(ti, &subnet.meta.id)?;
                if s.associate_public_ip == Some(true) {
                    return Err(eni::public_ip_in_ipv6_only(&subnet.meta.id));
                }
            }
            let addrs = eni::plan_addresses_within(w, &subnet, &s.eni, addr_limits)?;
            let description = s.eni.description.clone().unwrap_or_default();
            if description.chars().count() > 255 {
                return Err(Fault::invalid_param(
                    "Value for parameter description is invalid. Length exceeds maximum of 255 characters.",
                ));
            }
            let public_ip = device == 0
                && s.associate_public_ip
                    .unwrap_or(specs.len() == 1 && subnet.map_public_ip);
            Plan::New {
                device,
                subnet,
                groups,
                addrs,
                description,
                delete_on_termination: s.delete_on_termination.unwrap_or(true),
                public_ip,
            }
        };
        let (p_az, p_vpc) = match &plan {
            Plan::Existing { eni, .. } => (eni.az.clone(), eni.vpc_id.clone()),
            Plan::New { subnet, .. } => (subnet.az.clone(), subnet.vpc_id.clone()),
        };
        if device == 0 {
            if let Some(z) = placement {
                let zone_id = w
                    .get::<Subnet>(plan.subnet_id())
                    .map(|s| s.az_id.clone())
                    .unwrap_or_default();
                if z != p_az && z != zone_id {
                    return Err(Fault::invalid_param(format!(
                        "Value ({z}) for parameter availabilityZone is invalid. Subnet '{}' is in availability zone {p_az}.",
                        plan.subnet_id()
                    )));
                }
            }
            az = p_az;
            vpc_id = p_vpc;
        } else if p_az != az {
            return Err(combination(
                "All network interfaces of an instance must be in the same availability zone.",
            ));
        } else if p_vpc != vpc_id {
            return Err(combination(
                "All network interfaces of an instance must be in the same VPC.",
            ));
        }
        plans.push(plan);
    }

    // Addresses asked for by value, or existing interfaces: one instance only.
    let single = plans.iter().any(|p| match p {
        Plan::Existing { .. } => true,
        Plan::New { addrs, .. } => addrs.has_specific(),
    });
    if single && max > 1 {
        return Err(combination(
            "Specific private IP addresses or network interface IDs can only be used when launching a single instance (MaxCount=1).",
        ));
    }
    {
        // The same address asked for twice across interfaces.
        let mut seen = std::collections::BTreeSet::new();
        for p in &plans {
            if let Plan::New { addrs, .. } = p {
                for ip in addrs.specific_v4() {
                    if !seen.insert(ip) {
                        return Err(eni_in_use(ip));
                    }
                }
            }
        }
    }
    super::tags::validate(&req.instance_tags, ctx.limits.tags_per_resource)?;
    super::tags::validate(&req.eni_tags, ctx.limits.tags_per_resource)?;
    super::tags::validate(&req.volume_tags, ctx.limits.tags_per_resource)?;

    // How many to launch: quota, per-call cap, then free addresses.
    let active = w
        .scoped::<Instance>(&ctx.account, &ctx.region)
        .filter(|i| i.state != InstanceState::Terminated)
        .count();
    let room = ctx.limits.instances_per_region.saturating_sub(active);
    let want = usize::try_from(max).unwrap_or(usize::MAX);
    let min_u = usize::try_from(min).unwrap_or(usize::MAX);
    let mut n = want.min(ctx.limits.instances_per_launch).min(room);
    if n < min_u {
        return Err(Fault::new(
            "InstanceLimitExceeded",
            format!(
                "You have requested more instances ({min}) than your current instance limit of {} allows for the specified instance type. Please visit http://aws.amazon.com/contact-us/ec2-request to request an adjustment to this limit.",
                ctx.limits.instances_per_launch.min(ctx.limits.instances_per_region)
            ),
        ));
    }
    let mut need: BTreeMap<String, (usize, usize, Subnet)> = BTreeMap::new();
    for p in &plans {
        if let Plan::New { subnet, addrs, .. } = p {
            let e = need
                .entry(subnet.meta.id.clone())
                .or_insert((0, 0, subnet.clone()));
            e.0 += addrs.auto_v4();
            e.1 += addrs.specific_v4().count();
        }
    }
    for (id, (auto, specific, s)) in &need {
        if *auto == 0 {
            continue;
        }
        let free = usize::try_from(eni::free_v4(s, &eni::taken_v4(w, id)))
            .unwrap_or(usize::MAX)
            .saturating_sub(*specific);
        n = n.min(free / auto);
        if n < min_u {
            return Err(Fault::new(
                "InsufficientFreeAddressesInSubnet",
                format!(
                    "There are not enough free addresses in subnet '{id}' to satisfy the requested number of instances."
                ),
            ));
        }
    }

    let region_zones: Vec<String> = ctx.zones.iter().map(|z| z.0.clone()).collect();
    let host = crate::placement::place(hosts, &az, &itype, &region_zones)?;

    let primary_subnet = plans[0].subnet_id().to_string();
    let private_dns = match w.get::<Subnet>(&primary_subnet) {
        Some(s) => hostname::on_launch(s, &req.private_dns)?,
        None => req
            .private_dns
            .apply(Default::default(), "PrivateDnsNameOptions.HostnameType")?,
    };

    // Launch.
    let reservation = ctx.new_id("r");
    let mut out = Vec::new();
    for k in 0..n {
        let meta = new_meta(ctx, "i", req.instance_tags.clone());
        let iid = meta.id.clone();
        let mut primary = String::new();
        for p in &plans {
            let attachment = |ctx: &mut Ctx<'_>, device: u32, dot: bool| EniAttachment {
                id: ctx.new_id("eni-attach"),
                instance_id: iid.clone(),
                device_index: device,
                delete_on_termination: dot,
                attached_at: ctx.now,
            };
            let id = match p {
                Plan::Existing {
                    device,
                    eni: e,
                    delete_on_termination,
                } => {
                    let a = attachment(ctx, *device, *delete_on_termination);
                    w.update::<NetworkInterface>(&e.meta.id, |e| e.attachment = Some(a));
                    e.meta.id.clone()
                }
                Plan::New {
                    device,
                    subnet,
                    groups,
                    addrs,
                    description,
                    delete_on_termination,
                    public_ip,
                } => {
                    let a = attachment(ctx, *device, *delete_on_termination);
                    eni::insert(
                        w,
                        ctx,
                        eni::NewEni {
                            subnet: subnet.clone(),
                            description: description.clone(),
                            groups: groups.clone(),
                            addrs: addrs.clone(),
                            tags: req.eni_tags.clone(),
                            attachment: Some(a),
                            public_ip: *public_ip,
                            interface_type: "interface",
                        },
                    )?
                    .meta
                    .id
                }
            };
            if p.device() == 0 {
                primary = id;
            }
        }
        // A dedicated VPC's instances are dedicated whatever the request says.
        let tenancy = match w.get::<Vpc>(&vpc_id).map(|v| v.tenancy.as_str()) {
            Some("dedicated") => "dedicated",
            _ => asked_tenancy.unwrap_or("default"),
        };
        let inst = Instance {
            meta,
            reservation_id: reservation.clone(),
            image_id: image.to_string(),
            instance_type: itype.clone(),
            state: InstanceState::Pending,
            state_since: ctx.now,
            transition_due: Some(ctx.now.plus_ms(ctx.limits.instance_transition_ms)),
            vpc_id: vpc_id.clone(),
            subnet_id: primary_subnet.clone(),
            az: az.clone(),
            primary_eni: primary,
            launch_index: u32::try_from(k).unwrap_or(u32::MAX),
            key_name: req.key_name.clone().filter(|k| !k.is_empty()),
            client_token: token.clone(),
            opts: InstanceOptions {
                tenancy: tenancy.to_string(),
                private_dns,
                ..opts.clone()
            },
            host: host.clone(),
        };
        volume::create_for_instance(w, ctx, &volumes, &iid, &az, &req.volume_tags);
        w.put(inst.clone());
        out.push(inst);
    }
    Ok(out)
}

fn eni_in_use(ip: Ipv4Addr) -> Fault {
    Fault::new("InvalidIPAddress.InUse", format!("Address {ip} is in use."))
}

/// One row of a Start/Stop/TerminateInstances answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChange {
    pub instance_id: String,
    pub previous: InstanceState,
    pub current: InstanceState,
}

fn incorrect(id: &str, verb: &str) -> Fault {
    Fault::new(
        "IncorrectInstanceState",
        format!("The instance '{id}' is not in a state from which it can be {verb}."),
    )
}

/// Checks every instance, then moves each that `next` says should move.
fn change_states(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    ids: &[String],
    next: impl Fn(&Instance) -> Result<Option<InstanceState>>,
) -> Result<Vec<StateChange>> {
    let insts: Vec<Instance> = get_many(w, ctx, ids)?.into_iter().cloned().collect();
    let mut moves = Vec::new();
    for i in &insts {
        moves.push(next(i)?);
    }
    let due = ctx.now.plus_ms(ctx.limits.instance_transition_ms);
    let mut out = Vec::new();
    for (i, m) in insts.iter().zip(moves) {
        let current = match m {
            Some(s) => {
                let now = ctx.now;
                w.update::<Instance>(&i.meta.id, |x| {
                    x.state = s;
                    x.state_since = now;
                    x.transition_due = Some(due);
                });
                s
            }
            None => i.state,
        };
        out.push(StateChange {
            instance_id: i.meta.id.clone(),
            previous: i.state,
            current,
        });
    }
    Ok(out)
}

/// StartInstances: `stopped` → `pending` → `running`.
pub fn start(w: &mut World, ctx: &mut Ctx<'_>, ids: &[String]) -> Result<Vec<StateChange>> {
    change_states(w, ctx, ids, |i| match i.state {
        InstanceState::Stopped => Ok(Some(InstanceState::Pending)),
        InstanceState::Pending | InstanceState::Running => Ok(None),
        _ => Err(incorrect(&i.meta.id, "started")),
    })
}

/// StopInstances: `running` → `stopping` → `stopped`; refused while `disableApiStop` is set.
pub fn stop(w: &mut World, ctx: &mut Ctx<'_>, ids: &[String]) -> Result<Vec<StateChange>> {
    change_states(w, ctx, ids, |i| {
        match i.state {
        _ if i.opts.disable_api_stop => Err(Fault::new(
            "OperationNotPermitted",
            format!(
                "The instance '{}' may not be stopped. Modify its 'disableApiStop' instance attribute and try again.",
                i.meta.id
            ),
        )),
        InstanceState::Running => Ok(Some(InstanceState::Stopping)),
        InstanceState::Stopping | InstanceState::Stopped => Ok(None),
        _ => Err(incorrect(&i.meta.id, "stopped")),
    }
    })
}

/// TerminateInstances: → `shutting-down` → `terminated`; refused while
/// `disableApiTermination` is set.
pub fn terminate(w: &mut World, ctx: &mut Ctx<'_>, ids: &[String]) -> Result<Vec<StateChange>> {
    change_states(w, ctx, ids, |i| {
        match i.state {
        InstanceState::ShuttingDown | InstanceState::Terminated => Ok(None),
        _ if i.opts.disable_api_termination => Err(Fault::new(
            "OperationNotPermitted",
            format!(
                "The instance '{}' may not be terminated. Modify its 'disableApiTermination' instance attribute and try again.",
                i.meta.id
            ),
        )),
        _ => Ok(Some(InstanceState::ShuttingDown)),
    }
    })
}

/// RebootInstances: only a running (or pending) instance; nothing changes.
pub fn reboot(w: &mut World, ctx: &mut Ctx<'_>, ids: &[String]) -> Result<()> {
    for i in get_many(w, ctx, ids)? {
        if !i.is_up() {
            return Err(incorrect(&i.meta.id, "rebooted"));
        }
    }
    Ok(())
}

/// One ModifyInstanceAttribute change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceChange {
    pub source_dest_check: Option<bool>,
    pub groups: Option<Vec<String>>,
    pub instance_type: Option<String>,
    pub disable_api_termination: Option<bool>,
    pub disable_api_stop: Option<bool>,
    pub shutdown_behavior: Option<String>,
    /// Base64 (an empty string clears it).
    pub user_data: Option<String>,
    pub ebs_optimized: Option<bool>,
    /// Accepted and ignored (`EnaSupport`, `SriovNetSupport`, …).
    pub ignored: bool,
}

pub(crate) fn not_stopped(id: &str) -> Fault {
    Fault::new(
        "IncorrectInstanceState",
        format!("The instance '{id}' is not in the 'stopped' state."),
    )
}

/// ModifyInstanceAttribute: one attribute per call. Source/dest check and
/// groups apply to the primary interface; the instance type, user data and
/// EBS optimization change only while the instance is stopped.
pub fn modify_attribute(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    id: &str,
    c: InstanceChange,
) -> Result<()> {
    let i = get(w, ctx, id)?.clone();
    let n = [
        c.source_dest_check.is_some(),
        c.groups.is_some(),
        c.instance_type.is_some(),
        c.disable_api_termination.is_some(),
        c.disable_api_stop.is_some(),
        c.shutdown_behavior.is_some(),
        c.user_data.is_some(),
        c.ebs_optimized.is_some(),
        c.ignored,
    ]
    .iter()
    .filter(|x| **x)
    .count();
    match n {
        0 => return Err(combination("No attributes specified.")),
        1 => {}
        _ => return Err(combination("Only one attribute can be modified at a time.")),
    }
    if i.state == InstanceState::Terminated {
        return Err(Fault::new(
            "IncorrectInstanceState",
            format!("The instance '{id}' is not in a valid state for this operation."),
        ));
    }
    if c.ignored {
        return Ok(());
    }
    if let Some(t) = c.instance_type {
        let ti = instance_type(&t)?;
        if i.state != InstanceState::Stopped {
            return Err(not_stopped(id));
        }
        let attached = eni::enis_of_instance(w, id);
        if let Some(e) = attached
            .iter()
            .find(|e| w.get::<Subnet>(&e.subnet_id).is_some_and(|s| s.ipv6_native))
        {
            check_type_for_ipv6_only(ti, &e.subnet_id)?;
        }
        if attached.len() > ti.max_interfaces {
            return Err(eni::attachment_limit(attached.len(), &t));
        }
        let lim = eni::AddrLimits::of_type(ctx, ti);
        if attached.iter().any(|e| e.private_ips.len() > lim.v4) {
            return Err(eni::v4_limit_exceeded(lim.v4));
        }
        let keep = i.opts.cpu_credits.clone().filter(|_| ti.burstable());
        let credits = keep.or(ti.family.default_credits.map(str::to_string));
        w.update::<Instance>(id, |x| {
            x.instance_type = t;
            x.opts.cpu_credits = credits;
        });
        return Ok(());
    }
    if let Some(v) = c.disable_api_termination {
        w.update::<Instance>(id, |x| x.opts.disable_api_termination = v);
        return Ok(());
    }
    if let Some(v) = c.disable_api_stop {
        w.update::<Instance>(id, |x| x.opts.disable_api_stop = v);
        return Ok(());
    }
    if let Some(b) = c.shutdown_behavior {
        check_shutdown_behavior(&b)?;
        w.update::<Instance>(id, |x| x.opts.shutdown_behavior = b);
        return Ok(());
    }
    if let Some(u) = c.user_data {
        if i.state != InstanceState::Stopped {
            return Err(not_stopped(id));
        }
        w.update::<Instance>(id, |x| x.opts.user_data = Some(u).filter(|u| !u.is_empty()));
        return Ok(());
    }
    if let Some(v) = c.ebs_optimized {
        if i.state != InstanceState::Stopped && v != i.opts.ebs_optimized {
            return Err(not_stopped(id));
        }
        w.update::<Instance>(id, |x| x.opts.ebs_optimized = v);
        return Ok(());
    }
    let primary = w
        .get::<NetworkInterface>(&i.primary_eni)
        .filter(|e| e.attachment.as_ref().is_some_and(|a| a.instance_id == id))
        .cloned()
        .ok_or_else(|| INSTANCE.not_found(id))?;
    if let Some(v) = c.source_dest_check {
        w.update::<NetworkInterface>(&primary.meta.id, |e| e.source_dest_check = v);
    }
    if let Some(ids) = c.groups {
        if eni::enis_of_instance(w, id).len() > 1 {
            return Err(Fault::new(
                "InvalidInstanceID",
                format!("There are multiple interfaces attached to instance '{id}'. Please specify an interface ID for the operation instead."),
            ));
        }
        if ids.is_empty() {
            return Err(Fault::missing("GroupId"));
        }
        let s = w
            .get::<Subnet>(&primary.subnet_id)
            .cloned()
            .ok_or_else(|| super::SUBNET.not_found(&primary.subnet_id))?;
        let groups = eni::resolve_groups(
            w,
            ctx,
            &s,
            &ids,
            &[],
            "SecurityGroupsPerInstanceLimitExceeded",
        )?;
        w.update::<NetworkInterface>(&primary.meta.id, |e| e.groups = groups);
    }
    Ok(())
}

/// ModifyInstanceMetadataOptions. Returns the new options.
pub fn modify_metadata_options(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    id: &str,
    c: &MetadataChange,
) -> Result<MetadataOptions> {
    let i = get(w, ctx, id)?.clone();
    if i.state == InstanceState::Terminated {
        return Err(Fault::new(
            "IncorrectInstanceState",
            format!("The instance '{id}' is not in a valid state for this operation."),
        ));
    }
    let m = c.apply(&i.opts.metadata)?;
    w.update::<Instance>(id, |x| x.opts.metadata = m.clone());
    Ok(m)
}

/// The CPU credit option of each burstable instance among `ids` (all of the
/// caller's when empty); other instances have none and are left out.
pub fn credit_specifications<'w>(
    w: &'w World,
    ctx: &Ctx<'_>,
    ids: &[String],
) -> Result<Vec<(&'w Instance, String)>> {
    let insts: Vec<&Instance> = if ids.is_empty() {
        w.iter::<Instance>()
            .filter(|i| i.meta.owner == ctx.account && i.meta.region == ctx.region)
            .collect()
    } else {
        get_many(w, ctx, ids)?
    };
    Ok(insts
        .into_iter()
        .filter(|i| i.state != InstanceState::Terminated)
        .filter_map(|i| i.opts.cpu_credits.clone().map(|c| (i, c)))
        .collect())
}

/// ModifyInstanceCreditSpecification: per instance, `Ok` or the error it got
/// (the call itself succeeds, as in EC2).
pub fn modify_credit_specification(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    items: &[(String, String)],
) -> Result<Vec<(String, Result<()>)>> {
    if items.is_empty() {
        return Err(Fault::missing("InstanceCreditSpecification"));
    }
    let mut out = Vec::new();
    for (id, credits) in items {
        let r = (|| {
            let i = get(w, ctx, id)?;
            let ti = instance_type(&i.instance_type)?;
            check_credits(ti, credits)?;
            if i.state == InstanceState::Terminated {
                return Err(Fault::new(
                    "IncorrectInstanceState",
                    format!("The instance '{id}' is not in a valid state for this operation."),
                ));
            }
            Ok(())
        })();
        if r.is_ok() {
            let c = credits.clone();
            w.update::<Instance>(id, |x| x.opts.cpu_credits = Some(c));
        }
        out.push((id.clone(), r));
    }
    Ok(out)
}

/// What DescribeInstanceStatus shows of one instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceStatus {
    /// `ok`, `initializing`, `not-applicable`, …
    pub instance_status: &'static str,
    pub system_status: &'static str,
    pub ebs_status: &'static str,
    /// The `reachability` detail (`passed`, `initializing`), none when not applicable.
    pub reachability: Option<&'static str>,
}

/// An instance's status checks: a running instance passes them all; any
/// other state has none (`not-applicable`). vpcd's instances have no
/// operating system to fail a check, so `impaired` never shows.
pub fn status_of(i: &Instance) -> InstanceStatus {
    if i.state == InstanceState::Running {
        InstanceStatus {
            instance_status: "ok",
            system_status: "ok",
            ebs_status: "ok",
            reachability: Some("passed"),
        }
    } else {
        InstanceStatus {
            instance_status: "not-applicable",
            system_status: "not-applicable",
            ebs_status: "not-applicable",
            reachability: None,
        }
    }
}

// ---- Timers --------------------------------------------------------------

/// Detaches or deletes a terminated instance's interfaces.
fn release_network(w: &mut World, instance_id: &str) {
    let enis: Vec<NetworkInterface> = eni::enis_of_instance(w, instance_id)
        .into_iter()
        .cloned()
        .collect();
    for e in enis {
        let dot = e
            .attachment
            .as_ref()
            .is_some_and(|a| a.delete_on_termination);
        if dot {
            eni::remove_eni(w, &e.meta.id);
        } else {
            w.update::<NetworkInterface>(&e.meta.id, |e| {
                e.attachment = None;
                e.public_ip = None;
            });
        }
    }
}

fn step(w: &mut World, id: &str, now: Timestamp) {
    let Some(i) = w.get::<Instance>(id).cloned() else {
        return;
    };
    let at = i.transition_due.unwrap_or(now);
    let set = |w: &mut World, s: InstanceState, due: Option<Timestamp>| {
        w.update::<Instance>(id, |x| {
            x.state = s;
            x.state_since = at;
            x.transition_due = due;
        });
    };
    match i.state {
        InstanceState::Pending => set(w, InstanceState::Running, None),
        InstanceState::Stopping => set(w, InstanceState::Stopped, None),
        InstanceState::ShuttingDown => {
            release_network(w, id);
            volume::release(w, id);
            set(
                w,
                InstanceState::Terminated,
                Some(at.plus_ms(TERMINATED_VISIBLE_MS)),
            );
        }
        InstanceState::Terminated => {
            release_network(w, id);
            w.remove::<Instance>(id);
        }
        InstanceState::Running | InstanceState::Stopped => {
            w.update::<Instance>(id, |x| x.transition_due = None);
        }
    }
}

/// Applies every due transition of instances and NAT gateways. Returns
/// whether anything changed. Call it before each write and periodically,
/// next to `ops::peering::tick`.
pub fn tick(w: &mut World, now: Timestamp) -> bool {
    let mut changed = false;
    // Each round moves every due record one step along a chain of at most
    // three steps, so the bound is never reached in practice.
    for _ in 0..8 {
        // The tables index their records by deadline: no scan.
        let due_i = w.instances.due_by(now);
        let due_n = w.nat_gateways.due_by(now);
        if eni::expire_detachments(w, now) {
            changed = true;
        }
        if due_i.is_empty() && due_n.is_empty() {
            break;
        }
        changed = true;
        for id in &due_i {
            step(w, id, now);
        }
        for id in &due_n {
            nat::step(w, id, now);
        }
    }
    changed
}

/// The earliest pending transition of any instance or NAT gateway.
pub fn next_deadline(w: &World) -> Option<Timestamp> {
    [
        w.instances.next_due(),
        w.nat_gateways.next_due(),
        w.detachments.next_due(),
    ]
    .into_iter()
    .flatten()
    .min()
}

#[cfg(test)]
mod tests;
