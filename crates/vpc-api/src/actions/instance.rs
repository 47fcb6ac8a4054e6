//! Instances and network interfaces (NAT gateways and Elastic IP addresses:
//! `address.rs`).

use super::{Handler, Req};
use crate::params::{parse_tags, Params};
use crate::query::{self, tag_field};
use crate::xml::{timestamp, Xml};
use std::collections::HashMap;
use std::net::Ipv4Addr;
use vpc_model::instance_types;
use vpc_model::ops::{eni, hostname, instance, volume};
use vpc_model::{
    Address, Ctx, Fault, Instance, InstanceState, NetworkInterface, SecurityGroup, Tags, World,
};

/// Every action this family serves, with its handler.
pub const ACTIONS: &[(&str, Handler)] = &[
    ("RunInstances", Handler::Write(run_instances)),
    ("DescribeInstances", Handler::Read(describe_instances)),
    ("StartInstances", Handler::Write(start_instances)),
    ("StopInstances", Handler::Write(stop_instances)),
    ("TerminateInstances", Handler::Write(terminate_instances)),
    ("RebootInstances", Handler::Write(reboot_instances)),
    (
        "ModifyInstanceAttribute",
        Handler::Write(modify_instance_attribute),
    ),
    (
        "DescribeInstanceAttribute",
        Handler::Read(describe_instance_attribute),
    ),
    (
        "ModifyPrivateDnsNameOptions",
        Handler::Write(modify_private_dns_name_options),
    ),
    ("CreateNetworkInterface", Handler::Write(create_eni)),
    ("DeleteNetworkInterface", Handler::Write(delete_eni)),
    ("DescribeNetworkInterfaces", Handler::Read(describe_enis)),
    ("AttachNetworkInterface", Handler::Write(attach_eni)),
    ("DetachNetworkInterface", Handler::Write(detach_eni)),
    (
        "ModifyNetworkInterfaceAttribute",
        Handler::Write(modify_eni_attribute),
    ),
    (
        "DescribeNetworkInterfaceAttribute",
        Handler::Read(describe_eni_attribute),
    ),
];

// ---- Parameters ----------------------------------------------------------

/// `TagSpecification.N` for several resource types: tags by type.
fn tag_specs_by_type(p: &Params, allowed: &[&str]) -> Result<HashMap<String, Tags>, Fault> {
    let mut out: HashMap<String, Tags> = HashMap::new();
    for spec in p.indexed("TagSpecification")? {
        spec.allow_only(&["ResourceType", "Tag."])?;
        let rt = spec.req_member("ResourceType")?;
        if !allowed.contains(&rt) {
            return Err(Fault::invalid_param(format!(
                "'{rt}' is not a valid taggable resource type for this operation."
            )));
        }
        let tags = out.entry(rt.to_string()).or_default();
        for t in parse_tags(&spec, "Tag")? {
            match tags.iter_mut().find(|x| x.key == t.key) {
                Some(x) => x.value = t.value,
                None => tags.push(t),
            }
        }
    }
    Ok(out)
}

/// `prefix.N.<key>` values (also accepting the flat `prefix.N` form).
fn member_list(p: &Params, prefix: &str, key: &str) -> Result<Vec<String>, Fault> {
    let mut out = Vec::new();
    for entry in p.indexed(prefix)? {
        entry.allow_only(&[key, ""])?;
        let value = entry.string(key).or_else(|| entry.string(""));
        out.extend(value.filter(|s| !s.is_empty()));
    }
    Ok(out)
}

pub(super) fn non_empty(p: &Params, k: &str) -> Option<String> {
    p.string(k).filter(|s| !s.is_empty())
}

/// The address part of a new interface (CreateNetworkInterface, NetworkInterface.N).
fn eni_spec(p: &Params) -> Result<eni::EniSpec, Fault> {
    let mut private_ips = Vec::new();
    for x in p.indexed("PrivateIpAddresses")? {
        x.allow_only(&["PrivateIpAddress", "Primary"])?;
        let a = x
            .string("PrivateIpAddress")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Fault::missing(&x.wire("PrivateIpAddress")))?;
        private_ips.push((a, x.bool("Primary")?.unwrap_or(false)));
    }
    Ok(eni::EniSpec {
        subnet_id: non_empty(p, "SubnetId"),
        description: p.string("Description"),
        private_ip: non_empty(p, "PrivateIpAddress"),
        private_ips,
        secondary_count: p.int("SecondaryPrivateIpAddressCount")?,
        group_ids: p.list("SecurityGroupId")?,
        group_names: Vec::new(),
        ipv6_count: p.int("Ipv6AddressCount")?,
        ipv6: member_list(p, "Ipv6Addresses", "Ipv6Address")?,
        tags: Vec::new(),
    })
}

/// `BlockDeviceMapping.N` of RunInstances.
fn block_devices(p: &Params) -> Result<Vec<volume::BlockDevice>, Fault> {
    let mut out = Vec::new();
    for m in p.indexed("BlockDeviceMapping")? {
        m.allow_only(&["DeviceName", "NoDevice", "VirtualName", "Ebs."])?;
        let e = m.sub("Ebs");
        e.allow_only(&[
            "VolumeSize",
            "VolumeType",
            "Iops",
            "Throughput",
            "Encrypted",
            "KmsKeyId",
            "SnapshotId",
            "DeleteOnTermination",
            "VolumeInitializationRate",
            "OutpostArn",
        ])?;
        out.push(volume::BlockDevice {
            device_name: non_empty(&m, "DeviceName"),
            no_device: m.has("NoDevice"),
            virtual_name: non_empty(&m, "VirtualName"),
            volume_size: e.int("VolumeSize")?,
            volume_type: non_empty(&e, "VolumeType"),
            iops: e.int("Iops")?,
            throughput: e.int("Throughput")?,
            encrypted: e.bool("Encrypted")?,
            kms_key_id: non_empty(&e, "KmsKeyId"),
            snapshot_id: non_empty(&e, "SnapshotId"),
            delete_on_termination: e.bool("DeleteOnTermination")?,
        });
    }
    Ok(out)
}

/// `MetadataOptions.*` of RunInstances, or ModifyInstanceMetadataOptions' parameters.
pub(crate) fn metadata_change(p: &Params) -> Result<instance::MetadataChange, Fault> {
    Ok(instance::MetadataChange {
        http_tokens: non_empty(p, "HttpTokens"),
        http_put_response_hop_limit: p.int("HttpPutResponseHopLimit")?,
        http_endpoint: non_empty(p, "HttpEndpoint"),
        http_protocol_ipv6: non_empty(p, "HttpProtocolIpv6"),
        instance_metadata_tags: non_empty(p, "InstanceMetadataTags"),
    })
}

// ---- Rendering helpers ---------------------------------------------------

fn render_state(x: &mut Xml, tag: &str, s: InstanceState) {
    x.open(tag)
        .num("code", s.code())
        .leaf("name", s.as_str())
        .close(tag);
}

fn group_name(w: &World, id: &str) -> Option<String> {
    w.get::<SecurityGroup>(id).map(|g| g.name.clone())
}

fn render_groups(x: &mut Xml, w: &World, groups: &[String]) {
    x.set("groupSet", groups, |x, g| {
        x.leaf("groupId", g)
            .opt("groupName", group_name(w, g).as_deref());
    });
}

/// The public side of one private address: (public IP, the EIP if it is one).
fn public_of<'w>(
    w: &'w World,
    e: &NetworkInterface,
    private: Ipv4Addr,
) -> Option<(Ipv4Addr, Option<&'w Address>)> {
    if let Some(a) = eni::eip_of(w, &e.meta.id, private) {
        return Some((a.public_ip, Some(a)));
    }
    if Some(private) == e.primary_ip() {
        return e.public_ip.map(|ip| (ip, None));
    }
    None
}

/// `association` of an interface or one of its addresses. `full` adds the
/// allocation and association IDs (the NetworkInterface shape has them).
fn render_association(x: &mut Xml, w: &World, e: &NetworkInterface, private: Ipv4Addr, full: bool) {
    let Some((ip, a)) = public_of(w, e, private) else {
        return;
    };
    x.open("association");
    if full {
        if let Some(a) = a {
            x.leaf("allocationId", &a.meta.id)
                .opt("associationId", a.association_id.as_deref());
        }
    }
    x.leaf("ipOwnerId", a.map_or("amazon", |a| a.meta.owner.as_str()))
        .leaf("publicDnsName", &eni::public_dns_of(w, e, ip))
        .leaf("publicIp", &ip.to_string())
        .close("association");
}

fn render_private_ips(x: &mut Xml, w: &World, e: &NetworkInterface, full: bool) {
    x.set("privateIpAddressesSet", &e.private_ips, |x, p| {
        x.leaf("privateIpAddress", &p.ip.to_string())
            .leaf(
                "privateDnsName",
                &eni::private_dns_name(&e.meta.region, p.ip),
            )
            .bool("primary", p.primary);
        render_association(x, w, e, p.ip, full);
    });
    x.set("ipv6AddressesSet", &e.ipv6, |x, a| {
        x.leaf("ipv6Address", &a.to_string())
            .bool("isPrimaryIpv6", false);
    });
}

/// One `InstanceNetworkInterface` (inside an instance).
fn render_instance_eni(x: &mut Xml, w: &World, e: &NetworkInterface) {
    let ip = e.primary_ip();
    x.leaf("networkInterfaceId", &e.meta.id)
        .leaf("subnetId", &e.subnet_id)
        .leaf("vpcId", &e.vpc_id)
        .leaf("description", &e.description)
        .leaf("ownerId", &e.meta.owner)
        .leaf("status", e.status())
        .leaf("macAddress", &e.mac)
        .opt("privateIpAddress", ip.map(|ip| ip.to_string()).as_deref())
        .opt(
            "privateDnsName",
            ip.map(|ip| eni::private_dns_name(&e.meta.region, ip))
                .as_deref(),
        )
        .bool("sourceDestCheck", e.source_dest_check);
    render_groups(x, w, &e.groups);
    if let Some(a) = &e.attachment {
        x.open("attachment")
            .leaf("attachmentId", &a.id)
            .num("deviceIndex", a.device_index)
            .leaf("status", "attached")
            .leaf("attachTime", &timestamp(a.attached_at.0))
            .bool("deleteOnTermination", a.delete_on_termination)
            .num("networkCardIndex", 0)
            .close("attachment");
    }
    if let Some(ip) = ip {
        render_association(x, w, e, ip, false);
    }
    render_private_ips(x, w, e, false);
    x.leaf("interfaceType", &e.interface_type);
}

/// One `NetworkInterface` (DescribeNetworkInterfaces, CreateNetworkInterface).
/// The attachment an interface shows: its own, or the one just detached.
fn shown_attachment<'w>(
    w: &'w World,
    e: &'w NetworkInterface,
    now: vpc_model::Timestamp,
) -> Option<(&'w vpc_model::EniAttachment, &'static str)> {
    e.attachment
        .as_ref()
        .map(|a| (a, "attached"))
        .or_else(|| eni::recent_detachment(w, e, now).map(|a| (a, "detached")))
}

fn render_eni(x: &mut Xml, w: &World, e: &NetworkInterface, now: vpc_model::Timestamp) {
    let ip = e.primary_ip();
    let az_id = w
        .get::<vpc_model::Subnet>(&e.subnet_id)
        .map(|s| s.az_id.clone());
    x.leaf("networkInterfaceId", &e.meta.id)
        .leaf("subnetId", &e.subnet_id)
        .leaf("vpcId", &e.vpc_id)
        .leaf("availabilityZone", &e.az)
        .opt("availabilityZoneId", az_id.as_deref())
        .leaf("description", &e.description)
        .leaf("ownerId", &e.meta.owner);
    if e.requester_managed {
        x.leaf("requesterId", "amazon");
    }
    x.bool("requesterManaged", e.requester_managed)
        .leaf("status", e.status())
        .leaf("macAddress", &e.mac)
        .opt("privateIpAddress", ip.map(|ip| ip.to_string()).as_deref())
        .opt(
            "privateDnsName",
            ip.map(|ip| eni::private_dns_name(&e.meta.region, ip))
                .as_deref(),
        )
        .bool("sourceDestCheck", e.source_dest_check);
    render_groups(x, w, &e.groups);
    if let Some((a, status)) = shown_attachment(w, e, now) {
        x.open("attachment")
            .leaf("attachmentId", &a.id)
            .leaf("instanceId", &a.instance_id)
            .leaf("instanceOwnerId", &e.meta.owner)
            .num("deviceIndex", a.device_index)
            .num("networkCardIndex", 0)
            .leaf("status", status)
            .leaf("attachTime", &timestamp(a.attached_at.0))
            .bool("deleteOnTermination", a.delete_on_termination)
            .close("attachment");
    }
    if let Some(ip) = ip {
        render_association(x, w, e, ip, true);
    }
    x.tags(&e.meta.tags);
    render_private_ips(x, w, e, true);
    x.empty("ipv4PrefixSet")
        .empty("ipv6PrefixSet")
        .leaf("interfaceType", &e.interface_type)
        .bool("denyAllIgwTraffic", false)
        .bool("ipv6Native", false);
}

/// `User initiated (2024-01-02 03:04:05 GMT)`
fn user_initiated(ms: i64) -> String {
    let t = timestamp(ms);
    format!("User initiated ({} {} GMT)", &t[0..10], &t[11..19])
}

/// One instance item. `enis` are its attached interfaces, by device index.
fn render_instance(
    x: &mut Xml,
    w: &World,
    i: &Instance,
    enis: &[&NetworkInterface],
    hosts: &vpc_model::placement::Hosts,
) {
    let primary = enis
        .iter()
        .find(|e| e.attachment.as_ref().is_some_and(|a| a.device_index == 0));
    x.leaf("instanceId", &i.meta.id)
        .leaf("imageId", &i.image_id);
    render_state(x, "instanceState", i.state);
    let private = primary.and_then(|e| e.primary_ip());
    let public = primary.and_then(|e| eni::public_ip_of(w, e));
    x.leaf("privateDnsName", &hostname::private_dns_name_of(w, i))
        .leaf(
            "dnsName",
            &match (primary, public) {
                (Some(e), Some(ip)) => eni::public_dns_of(w, e, ip),
                _ => String::new(),
            },
        );
    let stopped_or_gone = matches!(
        i.state,
        InstanceState::Stopping
            | InstanceState::Stopped
            | InstanceState::ShuttingDown
            | InstanceState::Terminated
    );
    x.leaf(
        "reason",
        &if stopped_or_gone {
            user_initiated(i.state_since.0)
        } else {
            String::new()
        },
    );
    x.opt("keyName", i.key_name.as_deref())
        .num("amiLaunchIndex", i.launch_index)
        .empty("productCodes")
        .leaf("instanceType", &i.instance_type)
        .leaf("launchTime", &timestamp(i.meta.created.0))
        .open("placement")
        .leaf("availabilityZone", &i.az)
        .leaf("groupName", "")
        .leaf("tenancy", &i.opts.tenancy)
        // On a cluster, the host it was placed on (docs/cluster.md).
        .opt(
            "hostId",
            vpc_model::placement::host_name_of_instance(hosts, i),
        )
        .close("placement")
        .open("monitoring")
        .leaf(
            "state",
            if i.opts.monitoring {
                "enabled"
            } else {
                "disabled"
            },
        )
        .close("monitoring")
        .leaf("subnetId", &i.subnet_id)
        .leaf("vpcId", &i.vpc_id);
    if let Some(ip) = private {
        x.leaf("privateIpAddress", &ip.to_string());
    }
    if let Some(ip) = public {
        x.leaf("ipAddress", &ip.to_string());
    }
    if let Some(e) = primary {
        x.bool("sourceDestCheck", e.source_dest_check);
        render_groups(x, w, &e.groups);
    } else {
        x.empty("groupSet");
    }
    if stopped_or_gone {
        x.open("stateReason")
            .leaf("code", "Client.UserInitiatedShutdown")
            .leaf(
                "message",
                "Client.UserInitiatedShutdown: User initiated shutdown",
            )
            .close("stateReason");
    } else if i.state == InstanceState::Pending {
        x.open("stateReason")
            .leaf("code", "pending")
            .leaf("message", "pending")
            .close("stateReason");
    }
    let ti = instance_types::get(&i.instance_type);
    x.leaf(
        "architecture",
        ti.map_or("x86_64", instance_types::InstanceType::architecture),
    )
    .leaf("rootDeviceType", "ebs")
    .leaf("rootDeviceName", &i.opts.root_device_name);
    render_block_devices(x, w, i);
    x.leaf("virtualizationType", "hvm")
        .leaf("clientToken", i.client_token.as_deref().unwrap_or(""))
        .tags(&i.meta.tags)
        .leaf("hypervisor", "xen");
    x.set("networkInterfaceSet", enis, |x, e| {
        render_instance_eni(x, w, e)
    });
    x.bool("ebsOptimized", i.opts.ebs_optimized).bool(
        "enaSupport",
        ti.is_none_or(|t| t.family.ena != "unsupported"),
    );
    if let Some(v6) = primary.and_then(|e| e.ipv6.first()) {
        x.leaf("ipv6Address", &v6.to_string());
    }
    x.open("cpuOptions")
        .num("coreCount", ti.map_or(1, |t| t.cores()))
        .num(
            "threadsPerCore",
            ti.map_or(2, |t| t.family.threads_per_core),
        )
        .close("cpuOptions");
    x.open("metadataOptions");
    render_metadata(x, &i.opts.metadata, "applied");
    x.close("metadataOptions")
        .leaf("platformDetails", "Linux/UNIX")
        .leaf("usageOperation", "RunInstances")
        .leaf("usageOperationUpdateTime", &timestamp(i.meta.created.0))
        .open("privateDnsNameOptions");
    render_private_dns(x, &i.opts.private_dns);
    x.close("privateDnsNameOptions")
        .open("maintenanceOptions")
        .leaf("autoRecovery", "default")
        .close("maintenanceOptions")
        .leaf(
            "currentInstanceBootMode",
            ti.map_or("legacy-bios", instance_types::InstanceType::boot_mode),
        );
}

/// The members of `PrivateDnsNameOptionsResponse` (an instance's) and
/// `PrivateDnsNameOptionsOnLaunch` (a subnet's).
pub(crate) fn render_private_dns(x: &mut Xml, o: &vpc_model::PrivateDnsNameOptions) {
    x.leaf(
        "hostnameType",
        hostname::hostname_type_name(o.hostname_type),
    )
    .bool("enableResourceNameDnsARecord", o.resource_name_a)
    .bool("enableResourceNameDnsAAAARecord", o.resource_name_aaaa);
}

/// ModifyPrivateDnsNameOptions: an instance's hostname type (stopped only)
/// and resource-name record flags.
fn modify_private_dns_name_options(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    r: &Req<'_>,
) -> Result<String, Fault> {
    let p = r.p;
    let id = p.req("InstanceId")?;
    let change = hostname::PrivateDnsChange {
        hostname_type: p.string("PrivateDnsHostnameType"),
        resource_name_a: p.bool("EnableResourceNameDnsARecord")?,
        resource_name_aaaa: p.bool("EnableResourceNameDnsAAAARecord")?,
    };
    hostname::modify_instance(w, ctx, id, &change)?;
    let mut x = r.xml();
    x.bool("return", true);
    r.done(x)
}

/// The members of `InstanceMetadataOptionsResponse`.
pub(crate) fn render_metadata(x: &mut Xml, m: &vpc_model::MetadataOptions, state: &str) {
    x.leaf("state", state)
        .leaf("httpTokens", &m.http_tokens)
        .num("httpPutResponseHopLimit", m.http_put_response_hop_limit)
        .leaf("httpEndpoint", &m.http_endpoint)
        .leaf("httpProtocolIpv6", &m.http_protocol_ipv6)
        .leaf("instanceMetadataTags", &m.instance_metadata_tags);
}

/// `blockDeviceMapping` of an instance: its attached volumes.
fn render_block_devices(x: &mut Xml, w: &World, i: &Instance) {
    x.set(
        "blockDeviceMapping",
        volume::of_instance(w, &i.meta.id),
        |x, v| {
            if let Some(a) = &v.attachment {
                x.leaf("deviceName", &a.device)
                    .open("ebs")
                    .leaf("volumeId", &v.meta.id)
                    .leaf("status", "attached")
                    .leaf("attachTime", &timestamp(a.attached_at.0))
                    .bool("deleteOnTermination", a.delete_on_termination)
                    .close("ebs");
            }
        },
    );
}

/// Every attached interface by instance ID, by device index.
fn enis_by_instance(w: &World) -> HashMap<&str, Vec<&NetworkInterface>> {
    let mut m: HashMap<&str, Vec<&NetworkInterface>> = HashMap::new();
    for e in w.iter::<NetworkInterface>() {
        if let Some(a) = &e.attachment {
            m.entry(a.instance_id.as_str()).or_default().push(e);
        }
    }
    for v in m.values_mut() {
        v.sort_by_key(|e| e.attachment.as_ref().map_or(0, |a| a.device_index));
    }
    m
}

// ---- Instances -----------------------------------------------------------

fn run_instances(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let p = r.p;
    let mut tags = tag_specs_by_type(
        p,
        &[
            "instance",
            "network-interface",
            "volume",
            "spot-instances-request",
            "elastic-gpu",
        ],
    )?;
    let mut interfaces = Vec::new();
    for n in p.indexed("NetworkInterface")? {
        interfaces.push(instance::IfaceSpec {
            device_index: n.int("DeviceIndex")?,
            network_interface_id: non_empty(&n, "NetworkInterfaceId"),
            associate_public_ip: n.bool("AssociatePublicIpAddress")?,
            delete_on_termination: n.bool("DeleteOnTermination")?,
            eni: eni_spec(&n)?,
        });
    }
    let req = instance::RunInstances {
        image_id: p.string("ImageId"),
        instance_type: p.string("InstanceType"),
        min_count: p.int("MinCount")?,
        max_count: p.int("MaxCount")?,
        subnet_id: non_empty(p, "SubnetId"),
        private_ip: non_empty(p, "PrivateIpAddress"),
        group_ids: p.list("SecurityGroupId")?,
        group_names: p.list("SecurityGroup")?,
        ipv6_count: p.int("Ipv6AddressCount")?,
        ipv6: member_list(p, "Ipv6Address", "Ipv6Address")?,
        interfaces,
        availability_zone: non_empty(p, "Placement.AvailabilityZone"),
        host_id: non_empty(p, "Placement.HostId"),
        tenancy: non_empty(p, "Placement.Tenancy"),
        key_name: non_empty(p, "KeyName"),
        client_token: non_empty(p, "ClientToken"),
        instance_tags: tags.remove("instance").unwrap_or_default(),
        eni_tags: tags.remove("network-interface").unwrap_or_default(),
        volume_tags: tags.remove("volume").unwrap_or_default(),
        block_devices: block_devices(p)?,
        metadata: metadata_change(&p.sub("MetadataOptions"))?,
        cpu_credits: non_empty(p, "CreditSpecification.CpuCredits"),
        disable_api_termination: p.bool("DisableApiTermination")?,
        disable_api_stop: p.bool("DisableApiStop")?,
        shutdown_behavior: non_empty(p, "InstanceInitiatedShutdownBehavior"),
        user_data: non_empty(p, "UserData"),
        ebs_optimized: p.bool("EbsOptimized")?,
        monitoring: p.bool("Monitoring.Enabled")?,
        private_dns: hostname::PrivateDnsChange {
            hostname_type: p.string("PrivateDnsNameOptions.HostnameType"),
            resource_name_a: p.bool("PrivateDnsNameOptions.EnableResourceNameDnsARecord")?,
            resource_name_aaaa: p.bool("PrivateDnsNameOptions.EnableResourceNameDnsAAAARecord")?,
        },
    };
    let hosts = r.hosts_now();
    let insts = instance::run_placed(w, ctx, req, &hosts)?;
    let mut x = r.xml();
    let first = &insts[0];
    x.leaf("reservationId", &first.reservation_id)
        .leaf("ownerId", &first.meta.owner)
        .empty("groupSet");
    x.set("instancesSet", &insts, |x, i| {
        let enis = eni::enis_of_instance(w, &i.meta.id);
        render_instance(x, w, i, &enis, &hosts.hosts);
    });
    r.done(x)
}

const INSTANCE_FILTERS: &[&str] = &[
    "instance-id",
    "instance-state-name",
    "instance-state-code",
    "instance-type",
    "image-id",
    "vpc-id",
    "subnet-id",
    "availability-zone",
    "private-ip-address",
    "ip-address",
    "private-dns-name",
    "dns-name",
    "reservation-id",
    "owner-id",
    "key-name",
    "client-token",
    "launch-index",
    "architecture",
    "root-device-type",
    "source-dest-check",
    "instance.group-id",
    "instance.group-name",
    "group-id",
    "group-name",
    "network-interface.network-interface-id",
    "network-interface.subnet-id",
    "network-interface.vpc-id",
    "network-interface.status",
    "network-interface.mac-address",
    "network-interface.private-dns-name",
    "network-interface.source-dest-check",
    "network-interface.description",
    "network-interface.group-id",
    "network-interface.group-name",
    "network-interface.addresses.private-ip-address",
    "network-interface.addresses.primary",
    "network-interface.addresses.association.public-ip",
    "network-interface.association.public-ip",
    "network-interface.attachment.attachment-id",
    "network-interface.attachment.device-index",
    "network-interface.attachment.status",
    "network-interface.ipv6-addresses.ipv6-address",
    "ipv6-address",
];

fn instance_field(
    w: &World,
    i: &Instance,
    enis: &[&NetworkInterface],
    name: &str,
) -> Option<Vec<String>> {
    let one = |s: &str| Some(vec![s.to_string()]);
    let primary = enis
        .iter()
        .find(|e| e.attachment.as_ref().is_some_and(|a| a.device_index == 0));
    let over = |f: &dyn Fn(&NetworkInterface) -> Vec<String>| -> Option<Vec<String>> {
        Some(enis.iter().flat_map(|e| f(e)).collect())
    };
    let names = |gs: &[String]| {
        gs.iter()
            .filter_map(|g| group_name(w, g))
            .collect::<Vec<_>>()
    };
    match name {
        "instance-id" => one(&i.meta.id),
        "instance-state-name" => one(i.state.as_str()),
        "instance-state-code" => one(&i.state.code().to_string()),
        "instance-type" => one(&i.instance_type),
        "image-id" => one(&i.image_id),
        "vpc-id" => one(&i.vpc_id),
        "subnet-id" => one(&i.subnet_id),
        "availability-zone" => one(&i.az),
        "private-ip-address" => Some(
            primary
                .and_then(|e| e.primary_ip())
                .map(|ip| ip.to_string())
                .into_iter()
                .collect(),
        ),
        "ip-address" => Some(
            primary
                .and_then(|e| eni::public_ip_of(w, e))
                .map(|ip| ip.to_string())
                .into_iter()
                .collect(),
        ),
        "private-dns-name" => Some(
            Some(hostname::private_dns_name_of(w, i))
                .filter(|n| !n.is_empty())
                .into_iter()
                .collect(),
        ),
        "dns-name" => Some(
            primary
                .and_then(|e| eni::public_ip_of(w, e).map(|ip| eni::public_dns_of(w, e, ip)))
                .filter(|s| !s.is_empty())
                .into_iter()
                .collect(),
        ),
        "reservation-id" => one(&i.reservation_id),
        "owner-id" => one(&i.meta.owner),
        "key-name" => Some(i.key_name.iter().cloned().collect()),
        "client-token" => Some(i.client_token.iter().cloned().collect()),
        "launch-index" => one(&i.launch_index.to_string()),
        "architecture" => one("x86_64"),
        "root-device-type" => one("ebs"),
        "source-dest-check" => Some(
            primary
                .map(|e| e.source_dest_check.to_string())
                .into_iter()
                .collect(),
        ),
        "instance.group-id" | "group-id" => {
            Some(primary.map(|e| e.groups.clone()).unwrap_or_default())
        }
        "instance.group-name" | "group-name" => {
            Some(primary.map(|e| names(&e.groups)).unwrap_or_default())
        }
        "network-interface.network-interface-id" => over(&|e| vec![e.meta.id.clone()]),
        "network-interface.subnet-id" => over(&|e| vec![e.subnet_id.clone()]),
        "network-interface.vpc-id" => over(&|e| vec![e.vpc_id.clone()]),
        "network-interface.status" => over(&|e| vec![e.status().to_string()]),
        "network-interface.mac-address" => over(&|e| vec![e.mac.clone()]),
        "network-interface.description" => over(&|e| vec![e.description.clone()]),
        "network-interface.source-dest-check" => over(&|e| vec![e.source_dest_check.to_string()]),
        "network-interface.private-dns-name" => over(&|e| {
            e.primary_ip()
                .map(|ip| eni::private_dns_name(&e.meta.region, ip))
                .into_iter()
                .collect()
        }),
        "network-interface.group-id" => over(&|e| e.groups.clone()),
        "network-interface.group-name" => over(&|e| names(&e.groups)),
        "network-interface.addresses.private-ip-address" => {
            over(&|e| e.private_ips.iter().map(|p| p.ip.to_string()).collect())
        }
        "network-interface.addresses.primary" => over(&|e| {
            e.private_ips
                .iter()
                .map(|p| p.primary.to_string())
                .collect()
        }),
        "network-interface.addresses.association.public-ip"
        | "network-interface.association.public-ip" => over(&|e| {
            eni::public_ips_of(w, e)
                .into_iter()
                .map(|(_, p)| p.to_string())
                .collect()
        }),
        "network-interface.attachment.attachment-id" => {
            over(&|e| e.attachment.iter().map(|a| a.id.clone()).collect())
        }
        "network-interface.attachment.device-index" => over(&|e| {
            e.attachment
                .iter()
                .map(|a| a.device_index.to_string())
                .collect()
        }),
        "network-interface.attachment.status" => over(&|_| vec!["attached".to_string()]),
        "network-interface.ipv6-addresses.ipv6-address" | "ipv6-address" => {
            over(&|e| e.ipv6.iter().map(|a| a.to_string()).collect())
        }
        _ => tag_field(&i.meta.tags, name),
    }
}

fn describe_instances(w: &World, ctx: &Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let ids = r.p.list("InstanceId")?;
    if !ids.is_empty() && r.p.has("MaxResults") {
        return Err(Fault::new(
            "InvalidParameterCombination",
            "The parameter instancesSet cannot be used with the parameter maxResults",
        ));
    }
    let by_inst = enis_by_instance(w);
    let none: Vec<&NetworkInterface> = Vec::new();
    let enis_of = |i: &Instance| by_inst.get(i.meta.id.as_str()).unwrap_or(&none).clone();
    let mut items: Vec<&Instance> = if ids.is_empty() {
        w.scoped::<Instance>(&ctx.account, &ctx.region).collect()
    } else {
        instance::get_many(w, ctx, &ids)?
    };
    let key = |i: &&Instance| format!("{}:{:010}:{}", i.reservation_id, i.launch_index, i.meta.id);
    items.sort_by_key(key);
    let field = |i: &&Instance, name: &str| instance_field(w, i, &enis_of(i), name);
    let items = query::apply(items, &r.p.filters()?, &field, INSTANCE_FILTERS)?;
    let (page, next) = query::paginate(items, r.p, key, 5, 1000)?;
    // Consecutive instances of one reservation form one reservation item.
    let mut groups: Vec<Vec<&Instance>> = Vec::new();
    for i in page {
        match groups.last_mut() {
            Some(g) if g[0].reservation_id == i.reservation_id => g.push(i),
            _ => groups.push(vec![i]),
        }
    }
    let hosts = r.hosts_now();
    let mut x = r.xml();
    x.set("reservationSet", &groups, |x, g| {
        x.leaf("reservationId", &g[0].reservation_id)
            .leaf("ownerId", &g[0].meta.owner)
            .empty("groupSet");
        x.set("instancesSet", g, |x, i| {
            render_instance(x, w, i, &enis_of(i), &hosts.hosts)
        });
    });
    x.opt("nextToken", next.as_deref());
    r.done(x)
}

fn render_changes(r: &Req<'_>, changes: &[instance::StateChange]) -> Result<String, Fault> {
    let mut x = r.xml();
    x.set("instancesSet", changes, |x, c| {
        x.leaf("instanceId", &c.instance_id);
        render_state(x, "currentState", c.current);
        render_state(x, "previousState", c.previous);
    });
    r.done(x)
}

fn start_instances(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let c = instance::start(w, ctx, &r.p.list("InstanceId")?)?;
    render_changes(r, &c)
}

fn stop_instances(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let c = instance::stop(w, ctx, &r.p.list("InstanceId")?)?;
    render_changes(r, &c)
}

fn terminate_instances(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let c = instance::terminate(w, ctx, &r.p.list("InstanceId")?)?;
    render_changes(r, &c)
}

fn reboot_instances(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    instance::reboot(w, ctx, &r.p.list("InstanceId")?)?;
    r.ok()
}

/// Attributes ModifyInstanceAttribute accepts and ignores (nothing here models them).
const IGNORED_INSTANCE_ATTRS: &[&str] = &["EnaSupport", "SriovNetSupport", "Kernel", "Ramdisk"];

fn modify_instance_attribute(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    r: &Req<'_>,
) -> Result<String, Fault> {
    let p = r.p;
    let id = p.req("InstanceId")?.to_string();
    let value_of = |k: &str| p.string(&format!("{k}.Value")).or_else(|| p.string(k));
    let mut c = instance::InstanceChange {
        source_dest_check: p.attr_bool("SourceDestCheck")?,
        instance_type: value_of("InstanceType"),
        disable_api_termination: p.attr_bool("DisableApiTermination")?,
        disable_api_stop: p.attr_bool("DisableApiStop")?,
        shutdown_behavior: value_of("InstanceInitiatedShutdownBehavior"),
        user_data: value_of("UserData"),
        ebs_optimized: p.attr_bool("EbsOptimized")?,
        ignored: IGNORED_INSTANCE_ATTRS
            .iter()
            .any(|a| p.has(a) || p.has(&format!("{a}.Value"))),
        ..instance::InstanceChange::default()
    };
    let groups = p.list("GroupId")?;
    if !groups.is_empty() {
        c.groups = Some(groups);
    }
    if let Some(attr) = p.get("Attribute") {
        let value = p.string("Value");
        let v = || value.clone().ok_or_else(|| Fault::missing("Value"));
        let b = || v().map(|s| s.eq_ignore_ascii_case("true"));
        match attr {
            "sourceDestCheck" => c.source_dest_check = Some(b()?),
            "instanceType" => c.instance_type = Some(v()?),
            "disableApiTermination" => c.disable_api_termination = Some(b()?),
            "disableApiStop" => c.disable_api_stop = Some(b()?),
            "instanceInitiatedShutdownBehavior" => c.shutdown_behavior = Some(v()?),
            "userData" => c.user_data = Some(v()?),
            "ebsOptimized" => c.ebs_optimized = Some(b()?),
            "groupSet" => {}
            "enaSupport" | "sriovNetSupport" | "kernel" | "ramdisk" => c.ignored = true,
            other => {
                return Err(Fault::new(
                    "UnsupportedInstanceAttribute",
                    format!("The attribute '{other}' is not supported by vpcd."),
                ))
            }
        }
    }
    instance::modify_attribute(w, ctx, &id, c)?;
    r.ok()
}

fn describe_instance_attribute(w: &World, ctx: &Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let id = r.p.req("InstanceId")?;
    let attr = r.p.req("Attribute")?;
    let i = instance::get(w, ctx, id)?;
    let primary = w
        .get::<NetworkInterface>(&i.primary_eni)
        .filter(|e| e.attachment.as_ref().is_some_and(|a| a.instance_id == id));
    let mut x = r.xml();
    x.leaf("instanceId", id);
    let value = |x: &mut Xml, tag: &str, v: &str| {
        x.open(tag).leaf("value", v).close(tag);
    };
    let boolean = |x: &mut Xml, tag: &str, v: bool| {
        x.open(tag).bool("value", v).close(tag);
    };
    match attr {
        "instanceType" => value(&mut x, "instanceType", &i.instance_type),
        "sourceDestCheck" => boolean(
            &mut x,
            "sourceDestCheck",
            primary.is_none_or(|e| e.source_dest_check),
        ),
        "groupSet" => {
            let groups = primary.map(|e| e.groups.clone()).unwrap_or_default();
            render_groups(&mut x, w, &groups);
        }
        "disableApiTermination" => boolean(
            &mut x,
            "disableApiTermination",
            i.opts.disable_api_termination,
        ),
        "disableApiStop" => boolean(&mut x, "disableApiStop", i.opts.disable_api_stop),
        "instanceInitiatedShutdownBehavior" => value(
            &mut x,
            "instanceInitiatedShutdownBehavior",
            &i.opts.shutdown_behavior,
        ),
        "rootDeviceName" => value(&mut x, "rootDeviceName", &i.opts.root_device_name),
        "ebsOptimized" => boolean(&mut x, "ebsOptimized", i.opts.ebs_optimized),
        "enaSupport" => boolean(
            &mut x,
            "enaSupport",
            instance_types::get(&i.instance_type).is_none_or(|t| t.family.ena != "unsupported"),
        ),
        "userData" => match &i.opts.user_data {
            Some(u) => value(&mut x, "userData", u),
            None => {
                x.empty("userData");
            }
        },
        "kernel" => {
            x.empty("kernel");
        }
        "ramdisk" => {
            x.empty("ramdisk");
        }
        "sriovNetSupport" => {
            x.empty("sriovNetSupport");
        }
        "blockDeviceMapping" => render_block_devices(&mut x, w, i),
        "productCodes" => {
            x.empty("productCodes");
        }
        other => {
            return Err(Fault::invalid_param(format!(
                "Value ({other}) for parameter attribute is invalid. Unknown attribute."
            )))
        }
    }
    r.done(x)
}

// ---- Network interfaces ----------------------------------------------------

fn create_eni(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let mut spec = eni_spec(r.p)?;
    spec.tags = r.p.tag_specs("network-interface")?;
    if let Some(t) = r.p.get("InterfaceType").filter(|t| !t.is_empty()) {
        if t != "interface" {
            return Err(Fault::new(
                "UnsupportedOperation",
                format!("The interface type '{t}' is not supported by vpcd."),
            ));
        }
    }
    let e = eni::create(w, ctx, spec)?;
    let mut x = r.xml();
    x.open("networkInterface");
    render_eni(&mut x, w, &e, ctx.now);
    x.close("networkInterface");
    x.opt("clientToken", r.p.get("ClientToken"));
    r.done(x)
}

fn delete_eni(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    eni::delete(w, ctx, r.p.req("NetworkInterfaceId")?)?;
    r.ok()
}

const ENI_FILTERS: &[&str] = &[
    "network-interface-id",
    "subnet-id",
    "vpc-id",
    "availability-zone",
    "description",
    "mac-address",
    "owner-id",
    "status",
    "interface-type",
    "requester-managed",
    "requester-id",
    "source-dest-check",
    "private-ip-address",
    "private-dns-name",
    "addresses.private-ip-address",
    "addresses.primary",
    "addresses.association.public-ip",
    "addresses.association.owner-id",
    "association.public-ip",
    "association.allocation-id",
    "association.association-id",
    "association.ip-owner-id",
    "association.public-dns-name",
    "group-id",
    "group-name",
    "attachment.instance-id",
    "attachment.instance-owner-id",
    "attachment.attachment-id",
    "attachment.device-index",
    "attachment.status",
    "attachment.attach-time",
    "attachment.delete-on-termination",
    "ipv6-addresses.ipv6-address",
    "ipv6-address",
];

fn eni_field(
    w: &World,
    e: &NetworkInterface,
    name: &str,
    now: vpc_model::Timestamp,
) -> Option<Vec<String>> {
    let shown = shown_attachment(w, e, now);
    let one = |s: &str| Some(vec![s.to_string()]);
    let att = |f: &dyn Fn(&vpc_model::EniAttachment) -> String| -> Option<Vec<String>> {
        Some(shown.iter().map(|(a, _)| f(a)).collect())
    };
    let primary_public = || public_of(w, e, e.primary_ip()?);
    match name {
        "network-interface-id" => one(&e.meta.id),
        "subnet-id" => one(&e.subnet_id),
        "vpc-id" => one(&e.vpc_id),
        "availability-zone" => one(&e.az),
        "description" => one(&e.description),
        "mac-address" => one(&e.mac),
        "owner-id" => one(&e.meta.owner),
        "status" => one(e.status()),
        "interface-type" => one(&e.interface_type),
        "requester-managed" => one(&e.requester_managed.to_string()),
        "requester-id" => Some(if e.requester_managed {
            vec!["amazon".to_string()]
        } else {
            vec![]
        }),
        "source-dest-check" => one(&e.source_dest_check.to_string()),
        "private-ip-address" | "addresses.private-ip-address" => {
            Some(e.private_ips.iter().map(|p| p.ip.to_string()).collect())
        }
        "private-dns-name" => Some(
            e.primary_ip()
                .map(|ip| eni::private_dns_name(&e.meta.region, ip))
                .into_iter()
                .collect(),
        ),
        "addresses.primary" => Some(
            e.private_ips
                .iter()
                .map(|p| p.primary.to_string())
                .collect(),
        ),
        "addresses.association.public-ip" => Some(
            eni::public_ips_of(w, e)
                .into_iter()
                .map(|(_, p)| p.to_string())
                .collect(),
        ),
        "addresses.association.owner-id" | "association.ip-owner-id" => Some(
            primary_public()
                .map(|(_, a)| a.map_or("amazon".to_string(), |a| a.meta.owner.clone()))
                .into_iter()
                .collect(),
        ),
        "association.public-ip" => Some(
            primary_public()
                .map(|(ip, _)| ip.to_string())
                .into_iter()
                .collect(),
        ),
        "association.allocation-id" => Some(
            primary_public()
                .and_then(|(_, a)| a.map(|a| a.meta.id.clone()))
                .into_iter()
                .collect(),
        ),
        "association.association-id" => Some(
            primary_public()
                .and_then(|(_, a)| a.and_then(|a| a.association_id.clone()))
                .into_iter()
                .collect(),
        ),
        "association.public-dns-name" => Some(
            primary_public()
                .map(|(ip, _)| eni::public_dns_of(w, e, ip))
                .into_iter()
                .collect(),
        ),
        "group-id" => Some(e.groups.clone()),
        "group-name" => Some(e.groups.iter().filter_map(|g| group_name(w, g)).collect()),
        "attachment.instance-id" => att(&|a| a.instance_id.clone()),
        "attachment.instance-owner-id" => att(&|_| e.meta.owner.clone()),
        "attachment.attachment-id" => att(&|a| a.id.clone()),
        "attachment.device-index" => att(&|a| a.device_index.to_string()),
        "attachment.status" => Some(shown.iter().map(|(_, s)| s.to_string()).collect()),
        "attachment.attach-time" => att(&|a| timestamp(a.attached_at.0)),
        "attachment.delete-on-termination" => att(&|a| a.delete_on_termination.to_string()),
        "ipv6-addresses.ipv6-address" | "ipv6-address" => {
            Some(e.ipv6.iter().map(|a| a.to_string()).collect())
        }
        _ => tag_field(&e.meta.tags, name),
    }
}

/// Looks up requested IDs (an unknown one fails the call), or all of the caller's.
pub(super) fn by_ids<'w, T>(
    ids: &[String],
    get: impl Fn(&str) -> Result<&'w T, Fault>,
    all: impl FnOnce() -> Vec<&'w T>,
) -> Result<Vec<&'w T>, Fault> {
    if ids.is_empty() {
        return Ok(all());
    }
    let mut ids: Vec<&String> = ids.iter().collect();
    ids.sort();
    ids.dedup();
    ids.into_iter().map(|id| get(id)).collect()
}

fn describe_enis(w: &World, ctx: &Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let ids = r.p.list("NetworkInterfaceId")?;
    let items = by_ids(
        &ids,
        |id| eni::get(w, ctx, id),
        || {
            w.scoped::<NetworkInterface>(&ctx.account, &ctx.region)
                .collect()
        },
    )?;
    let field = |e: &&NetworkInterface, name: &str| eni_field(w, e, name, ctx.now);
    let items = query::apply(items, &r.p.filters()?, &field, ENI_FILTERS)?;
    let (page, next) = query::paginate(items, r.p, |e| e.meta.id.clone(), 5, 1000)?;
    let mut x = r.xml();
    x.set("networkInterfaceSet", page, |x, e| {
        render_eni(x, w, e, ctx.now)
    });
    x.opt("nextToken", next.as_deref());
    r.done(x)
}

fn attach_eni(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let id = eni::attach(
        w,
        ctx,
        r.p.req("NetworkInterfaceId")?,
        r.p.req("InstanceId")?,
        r.p.int("DeviceIndex")?,
    )?;
    let mut x = r.xml();
    x.leaf("attachmentId", &id).num("networkCardIndex", 0);
    r.done(x)
}

fn detach_eni(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    eni::detach(w, ctx, r.p.req("AttachmentId")?)?;
    r.ok()
}

fn modify_eni_attribute(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let p = r.p;
    let groups = p.list("SecurityGroupId")?;
    let attachment = match p.string("Attachment.AttachmentId") {
        Some(a) => Some((a, p.bool("Attachment.DeleteOnTermination")?)),
        None if p.has("Attachment.DeleteOnTermination") => {
            return Err(Fault::missing("Attachment.AttachmentId"))
        }
        None => None,
    };
    let c = eni::EniChange {
        groups: (!groups.is_empty()).then_some(groups),
        source_dest_check: p.attr_bool("SourceDestCheck")?,
        description: p
            .string("Description.Value")
            .or_else(|| p.string("Description")),
        attachment,
    };
    eni::modify_attribute(w, ctx, p.req("NetworkInterfaceId")?, c)?;
    r.ok()
}

fn describe_eni_attribute(w: &World, ctx: &Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let id = r.p.req("NetworkInterfaceId")?;
    let e = eni::get(w, ctx, id)?;
    let mut x = r.xml();
    x.leaf("networkInterfaceId", id);
    match r.p.get("Attribute").unwrap_or("") {
        "description" => {
            x.open("description")
                .leaf("value", &e.description)
                .close("description");
        }
        "groupSet" => render_groups(&mut x, w, &e.groups),
        "sourceDestCheck" => {
            x.open("sourceDestCheck")
                .bool("value", e.source_dest_check)
                .close("sourceDestCheck");
        }
        "attachment" => {
            if let Some(a) = &e.attachment {
                x.open("attachment")
                    .leaf("attachmentId", &a.id)
                    .leaf("instanceId", &a.instance_id)
                    .leaf("instanceOwnerId", &e.meta.owner)
                    .num("deviceIndex", a.device_index)
                    .num("networkCardIndex", 0)
                    .leaf("status", "attached")
                    .leaf("attachTime", &timestamp(a.attached_at.0))
                    .bool("deleteOnTermination", a.delete_on_termination)
                    .close("attachment");
            }
        }
        "associatePublicIpAddress" => {
            x.bool("associatePublicIpAddress", e.public_ip.is_some());
        }
        "" => return Err(Fault::missing("Attribute")),
        other => {
            return Err(Fault::invalid_param(format!(
                "Value ({other}) for parameter attribute is invalid. Unknown attribute."
            )))
        }
    }
    r.done(x)
}
