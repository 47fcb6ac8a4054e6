//! What Terraform's `aws_instance` and Ansible's `ec2_instance` read besides
//! the instance itself: instance types, images, volumes, instance status,
//! CPU credit and metadata options; and secondary private addresses.

use super::{Handler, Req};
use crate::params::Params;
use crate::query::{self, tag_field};
use crate::xml::{timestamp, Xml};
use vpc_model::instance_types::{self, InstanceType, CATALOGUE};
use vpc_model::ops::{eni, image, instance, volume};
use vpc_model::{Ctx, Fault, Instance, Volume, World};

/// Every action this family serves, with its handler.
pub const ACTIONS: &[(&str, Handler)] = &[
    (
        "DescribeInstanceTypes",
        Handler::Read(describe_instance_types),
    ),
    ("DescribeImages", Handler::Read(describe_images)),
    ("DescribeVolumes", Handler::Read(describe_volumes)),
    (
        "DescribeInstanceStatus",
        Handler::Read(describe_instance_status),
    ),
    (
        "DescribeInstanceCreditSpecifications",
        Handler::Read(describe_credit_specifications),
    ),
    (
        "ModifyInstanceCreditSpecification",
        Handler::Write(modify_credit_specification),
    ),
    (
        "ModifyInstanceMetadataOptions",
        Handler::Write(modify_metadata_options),
    ),
    (
        "AssignPrivateIpAddresses",
        Handler::Write(assign_private_ips),
    ),
    (
        "UnassignPrivateIpAddresses",
        Handler::Write(unassign_private_ips),
    ),
];

fn strs(x: &mut Xml, tag: &str, items: &[&str]) {
    x.set(tag, items, |x, s| {
        crate::xml::escape_into(&mut x.out, s);
    });
}

// ---- DescribeInstanceTypes -------------------------------------------------

const TYPE_FILTERS: &[&str] = &[
    "instance-type",
    "current-generation",
    "free-tier-eligible",
    "burstable-performance-supported",
    "bare-metal",
    "hypervisor",
    "instance-storage-supported",
    "hibernation-supported",
    "dedicated-hosts-supported",
    "auto-recovery-supported",
    "supported-usage-class",
    "supported-root-device-type",
    "supported-virtualization-type",
    "supported-boot-mode",
    "processor-info.supported-architecture",
    "processor-info.sustained-clock-speed-in-ghz",
    "processor-info.manufacturer",
    "vcpu-info.default-vcpus",
    "vcpu-info.default-cores",
    "vcpu-info.default-threads-per-core",
    "memory-info.size-in-mib",
    "network-info.network-performance",
    "network-info.maximum-network-interfaces",
    "network-info.maximum-network-cards",
    "network-info.ipv4-addresses-per-interface",
    "network-info.ipv6-addresses-per-interface",
    "network-info.ipv6-supported",
    "network-info.ena-support",
    "network-info.efa-supported",
    "network-info.encryption-in-transit-supported",
    "ebs-info.ebs-optimized-support",
    "ebs-info.encryption-support",
    "ebs-info.nvme-support",
    "placement-group-info.supported-strategy",
];

fn type_field(t: &&InstanceType, name: &str) -> Option<Vec<String>> {
    let f = t.family;
    let one = |s: String| Some(vec![s]);
    let many = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect());
    match name {
        "instance-type" => one(t.name.into()),
        "current-generation" => one(f.current_generation.to_string()),
        "free-tier-eligible" => one(t.free_tier.to_string()),
        "burstable-performance-supported" => one(f.burstable.to_string()),
        "bare-metal"
        | "instance-storage-supported"
        | "dedicated-hosts-supported"
        | "network-info.efa-supported" => one("false".into()),
        "hibernation-supported" | "auto-recovery-supported" => one("true".into()),
        "network-info.encryption-in-transit-supported" => {
            one((f.hypervisor == "nitro" && !f.burstable).to_string())
        }
        "hypervisor" => one(f.hypervisor.into()),
        "supported-usage-class" => many(&["on-demand", "spot"]),
        "supported-root-device-type" => many(&["ebs"]),
        "supported-virtualization-type" => many(&["hvm"]),
        "supported-boot-mode" => many(f.boot_modes),
        "processor-info.supported-architecture" => many(t.architectures()),
        "processor-info.sustained-clock-speed-in-ghz" => one(f.clock_ghz.to_string()),
        "processor-info.manufacturer" => one(f.manufacturer.into()),
        "vcpu-info.default-vcpus" => one(t.vcpus.to_string()),
        "vcpu-info.default-cores" => one(t.cores().to_string()),
        "vcpu-info.default-threads-per-core" => one(f.threads_per_core.to_string()),
        "memory-info.size-in-mib" => one(t.memory_mib.to_string()),
        "network-info.network-performance" => one(t.network_performance.into()),
        "network-info.maximum-network-interfaces" => one(t.max_interfaces.to_string()),
        "network-info.maximum-network-cards" => one("1".into()),
        "network-info.ipv4-addresses-per-interface" => one(t.ipv4_per_interface.to_string()),
        "network-info.ipv6-addresses-per-interface" => one(t.ipv6_per_interface.to_string()),
        "network-info.ipv6-supported" => one("true".into()),
        "network-info.ena-support" => one(f.ena.into()),
        "ebs-info.ebs-optimized-support" => one(f.ebs_optimized.into()),
        "ebs-info.encryption-support" => one("supported".into()),
        "ebs-info.nvme-support" => one(f.nvme.into()),
        "placement-group-info.supported-strategy" => many(f.placement_strategies),
        _ => None,
    }
}

fn render_type(x: &mut Xml, t: &InstanceType) {
    let f = t.family;
    x.leaf("instanceType", t.name)
        .bool("currentGeneration", f.current_generation)
        .bool("freeTierEligible", t.free_tier);
    strs(x, "supportedUsageClasses", &["on-demand", "spot"]);
    strs(x, "supportedRootDeviceTypes", &["ebs"]);
    strs(x, "supportedVirtualizationTypes", &["hvm"]);
    x.bool("bareMetal", false).leaf("hypervisor", f.hypervisor);
    x.open("processorInfo");
    strs(x, "supportedArchitectures", t.architectures());
    x.num("sustainedClockSpeedInGhz", f.clock_ghz)
        .leaf("manufacturer", f.manufacturer)
        .close("processorInfo");
    let cores: Vec<u32> = (1..=t.cores()).collect();
    let threads: Vec<u32> = (1..=f.threads_per_core).collect();
    x.open("vCpuInfo")
        .num("defaultVCpus", t.vcpus)
        .num("defaultCores", t.cores())
        .num("defaultThreadsPerCore", f.threads_per_core);
    if !f.burstable {
        x.set("validCores", &cores, |x, c| {
            x.out.push_str(&c.to_string());
        });
        x.set("validThreadsPerCore", &threads, |x, c| {
            x.out.push_str(&c.to_string());
        });
    }
    x.close("vCpuInfo")
        .open("memoryInfo")
        .num("sizeInMiB", t.memory_mib)
        .close("memoryInfo")
        .bool("instanceStorageSupported", false)
        .open("ebsInfo")
        .leaf("ebsOptimizedSupport", f.ebs_optimized)
        .leaf("encryptionSupport", "supported")
        .leaf("nvmeSupport", f.nvme)
        .close("ebsInfo")
        .open("networkInfo")
        .leaf("networkPerformance", t.network_performance)
        .num("maximumNetworkInterfaces", t.max_interfaces)
        .num("maximumNetworkCards", 1)
        .num("defaultNetworkCardIndex", 0);
    x.set("networkCards", [()], |x, ()| {
        x.num("networkCardIndex", 0)
            .leaf("networkPerformance", t.network_performance)
            .num("maximumNetworkInterfaces", t.max_interfaces);
    });
    x.num("ipv4AddressesPerInterface", t.ipv4_per_interface)
        .num("ipv6AddressesPerInterface", t.ipv6_per_interface)
        .bool("ipv6Supported", true)
        .leaf("enaSupport", f.ena)
        .bool("efaSupported", false)
        .bool(
            "encryptionInTransitSupported",
            f.hypervisor == "nitro" && !f.burstable,
        )
        .bool("enaSrdSupported", false)
        .close("networkInfo")
        .open("placementGroupInfo");
    strs(x, "supportedStrategies", f.placement_strategies);
    x.close("placementGroupInfo")
        .bool("hibernationSupported", true)
        .bool("burstablePerformanceSupported", f.burstable)
        .bool("dedicatedHostsSupported", false)
        .bool("autoRecoverySupported", true);
    strs(x, "supportedBootModes", f.boot_modes);
    x.leaf(
        "nitroEnclavesSupport",
        if f.hypervisor == "nitro" && !f.burstable {
            "supported"
        } else {
            "unsupported"
        },
    )
    .leaf(
        "nitroTpmSupport",
        if f.hypervisor == "nitro" {
            "supported"
        } else {
            "unsupported"
        },
    );
    if f.hypervisor == "nitro" {
        x.open("nitroTpmInfo");
        strs(x, "supportedVersions", &["2.0"]);
        x.close("nitroTpmInfo");
    }
}

fn describe_instance_types(_w: &World, _ctx: &Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let names = r.p.list("InstanceType")?;
    if names.len() > 100 {
        return Err(Fault::invalid_param(
            "The maximum number of instance types that can be specified is 100.",
        ));
    }
    let items: Vec<&InstanceType> = if names.is_empty() {
        CATALOGUE.iter().collect()
    } else {
        let unknown: Vec<&str> = names
            .iter()
            .filter(|n| instance_types::get(n).is_none())
            .map(String::as_str)
            .collect();
        if !unknown.is_empty() {
            return Err(Fault::new(
                "InvalidInstanceType",
                format!(
                    "The following supplied instance types do not exist: [{}]",
                    unknown.join(", ")
                ),
            ));
        }
        CATALOGUE
            .iter()
            .filter(|t| names.iter().any(|n| n == t.name))
            .collect()
    };
    let items = query::apply(items, &r.p.filters()?, &type_field, TYPE_FILTERS)?;
    let (page, next) = query::paginate(items, r.p, |t| t.name.to_string(), 5, 100)?;
    let mut x = r.xml();
    x.set("instanceTypeSet", page, render_type);
    x.opt("nextToken", next.as_deref());
    r.done(x)
}

// ---- DescribeImages --------------------------------------------------------

const IMAGE_FILTERS: &[&str] = &[
    "image-id",
    "name",
    "description",
    "architecture",
    "owner-id",
    "owner-alias",
    "state",
    "is-public",
    "image-type",
    "root-device-type",
    "root-device-name",
    "virtualization-type",
    "hypervisor",
    "ena-support",
    "platform-details",
    "usage-operation",
    "creation-date",
    "boot-mode",
    "block-device-mapping.device-name",
    "block-device-mapping.snapshot-id",
    "block-device-mapping.volume-size",
    "block-device-mapping.volume-type",
    "block-device-mapping.delete-on-termination",
    "block-device-mapping.encrypted",
];

fn image_field(i: &image::Image, name: &str) -> Option<Vec<String>> {
    let one = |s: &str| Some(vec![s.to_string()]);
    match name {
        "image-id" => one(&i.id),
        "name" => one(&i.name),
        "description" => one(&i.description),
        "architecture" => one(i.architecture),
        "owner-id" => one(i.owner_id),
        "owner-alias" => one(i.owner_alias),
        "state" => one("available"),
        "is-public" => one("true"),
        "image-type" => one("machine"),
        "root-device-type" => one("ebs"),
        "root-device-name" | "block-device-mapping.device-name" => one(i.root_device_name),
        "virtualization-type" => one("hvm"),
        "hypervisor" => one("xen"),
        "ena-support" => one("true"),
        "platform-details" => one("Linux/UNIX"),
        "usage-operation" => one("RunInstances"),
        "creation-date" => one(&timestamp(i.created_ms)),
        "boot-mode" => one(i.boot_mode),
        "block-device-mapping.snapshot-id" => one(&i.root_snapshot_id),
        "block-device-mapping.volume-size" => one(&i.root_size_gib.to_string()),
        "block-device-mapping.volume-type" => one(i.root_volume_type),
        "block-device-mapping.delete-on-termination" => one("true"),
        "block-device-mapping.encrypted" => one("false"),
        _ => tag_field(&[], name),
    }
}

fn render_image(x: &mut Xml, i: &image::Image) {
    x.leaf("imageId", &i.id)
        .leaf("imageLocation", &format!("amazon/{}", i.name))
        .leaf("imageState", "available")
        .leaf("imageOwnerId", i.owner_id)
        .leaf("creationDate", &timestamp(i.created_ms))
        .bool("isPublic", true)
        .leaf("architecture", i.architecture)
        .leaf("imageType", "machine")
        .leaf("imageOwnerAlias", i.owner_alias)
        .leaf("name", &i.name)
        .leaf("description", &i.description)
        .leaf("rootDeviceType", "ebs")
        .leaf("rootDeviceName", i.root_device_name);
    x.set("blockDeviceMapping", [()], |x, ()| {
        x.leaf("deviceName", i.root_device_name)
            .open("ebs")
            .leaf("snapshotId", &i.root_snapshot_id)
            .num("volumeSize", i.root_size_gib)
            .bool("deleteOnTermination", true)
            .leaf("volumeType", i.root_volume_type)
            .num("iops", 3000)
            .num("throughput", 125)
            .bool("encrypted", false)
            .close("ebs");
    });
    x.leaf("virtualizationType", "hvm")
        .empty("tagSet")
        .leaf("hypervisor", "xen")
        .bool("enaSupport", true)
        .leaf("sriovNetSupport", "simple")
        .leaf("platformDetails", "Linux/UNIX")
        .leaf("usageOperation", "RunInstances")
        .leaf("bootMode", i.boot_mode)
        .leaf("imdsSupport", "v2.0");
}

fn describe_images(w: &World, ctx: &Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let ids = r.p.list("ImageId")?;
    let owners = r.p.list("Owner")?;
    let _ = r.p.list("ExecutableBy")?;
    let mut ids: Vec<String> = if ids.is_empty() {
        // Without IDs: the images the caller's instances in this region run.
        w.scoped::<Instance>(&ctx.account, &ctx.region)
            .map(|i| i.image_id.clone())
            .collect()
    } else {
        ids
    };
    ids.sort();
    ids.dedup();
    let mut imgs = Vec::new();
    for id in &ids {
        imgs.push(image::describe(id)?);
    }
    imgs.retain(|i| image::owned_by(i, &owners, &ctx.account));
    let items = query::apply(imgs, &r.p.filters()?, &image_field, IMAGE_FILTERS)?;
    let (page, next) = query::paginate(items, r.p, |i| i.id.clone(), 6, 1000)?;
    let mut x = r.xml();
    x.set("imagesSet", &page, render_image);
    x.opt("nextToken", next.as_deref());
    r.done(x)
}

// ---- DescribeVolumes -------------------------------------------------------

const VOLUME_FILTERS: &[&str] = &[
    "volume-id",
    "availability-zone",
    "create-time",
    "encrypted",
    "size",
    "snapshot-id",
    "status",
    "volume-type",
    "iops",
    "throughput",
    "multi-attach-enabled",
    "fast-restored",
    "attachment.instance-id",
    "attachment.device",
    "attachment.status",
    "attachment.attach-time",
    "attachment.delete-on-termination",
];

fn volume_field(v: &&Volume, name: &str) -> Option<Vec<String>> {
    let one = |s: String| Some(vec![s]);
    let att = |f: &dyn Fn(&vpc_model::VolumeAttachment) -> String| {
        Some(v.attachment.iter().map(f).collect())
    };
    match name {
        "volume-id" => one(v.meta.id.clone()),
        "availability-zone" => one(v.az.clone()),
        "create-time" => one(timestamp(v.meta.created.0)),
        "encrypted" => one(v.encrypted.to_string()),
        "size" => one(v.size_gib.to_string()),
        "snapshot-id" => Some(v.snapshot_id.iter().cloned().collect()),
        "status" => one(v.state().into()),
        "volume-type" => one(v.volume_type.clone()),
        "iops" => Some(v.iops.iter().map(|i| i.to_string()).collect()),
        "throughput" => Some(v.throughput.iter().map(|i| i.to_string()).collect()),
        "multi-attach-enabled" | "fast-restored" => one("false".into()),
        "attachment.instance-id" => att(&|a| a.instance_id.clone()),
        "attachment.device" => att(&|a| a.device.clone()),
        "attachment.status" => att(&|_| "attached".into()),
        "attachment.attach-time" => att(&|a| timestamp(a.attached_at.0)),
        "attachment.delete-on-termination" => att(&|a| a.delete_on_termination.to_string()),
        _ => tag_field(&v.meta.tags, name),
    }
}

fn render_volume(x: &mut Xml, w: &World, v: &Volume) {
    let az_id = w
        .iter::<vpc_model::Subnet>()
        .find(|s| s.az == v.az)
        .map(|s| s.az_id.clone());
    x.leaf("volumeId", &v.meta.id)
        .num("size", v.size_gib)
        .leaf("snapshotId", v.snapshot_id.as_deref().unwrap_or(""))
        .leaf("availabilityZone", &v.az)
        .opt("availabilityZoneId", az_id.as_deref())
        .leaf("status", v.state())
        .leaf("createTime", &timestamp(v.meta.created.0));
    x.set("attachmentSet", v.attachment.iter(), |x, a| {
        x.leaf("volumeId", &v.meta.id)
            .leaf("instanceId", &a.instance_id)
            .leaf("device", &a.device)
            .leaf("status", "attached")
            .leaf("attachTime", &timestamp(a.attached_at.0))
            .bool("deleteOnTermination", a.delete_on_termination);
    });
    x.leaf("volumeType", &v.volume_type);
    if let Some(i) = v.iops {
        x.num("iops", i);
    }
    x.bool("encrypted", v.encrypted)
        .opt("kmsKeyId", v.kms_key_id.as_deref())
        .tags(&v.meta.tags)
        .bool("multiAttachEnabled", false);
    if let Some(t) = v.throughput {
        x.num("throughput", t);
    }
}

fn describe_volumes(w: &World, ctx: &Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let ids = r.p.list("VolumeId")?;
    let mut items: Vec<&Volume> = if ids.is_empty() {
        w.scoped::<Volume>(&ctx.account, &ctx.region).collect()
    } else {
        let mut v = Vec::new();
        for id in &ids {
            v.push(volume::get(w, ctx, id)?);
        }
        v
    };
    items.sort_by(|a, b| a.meta.id.cmp(&b.meta.id));
    items.dedup_by(|a, b| a.meta.id == b.meta.id);
    let items = query::apply(items, &r.p.filters()?, &volume_field, VOLUME_FILTERS)?;
    let (page, next) = query::paginate(items, r.p, |v| v.meta.id.clone(), 5, 500)?;
    let mut x = r.xml();
    x.set("volumeSet", page, |x, v| render_volume(x, w, v));
    x.opt("nextToken", next.as_deref());
    r.done(x)
}

// ---- DescribeInstanceStatus ------------------------------------------------

const STATUS_FILTERS: &[&str] = &[
    "availability-zone",
    "instance-state-name",
    "instance-state-code",
    "instance-status.status",
    "instance-status.reachability",
    "system-status.status",
    "system-status.reachability",
    "attached-ebs-status.status",
    "attached-ebs-status.reachability",
    "event.code",
    "event.description",
];

fn status_field(i: &&Instance, name: &str) -> Option<Vec<String>> {
    let s = instance::status_of(i);
    let one = |v: &str| Some(vec![v.to_string()]);
    let reach = || Some(s.reachability.iter().map(|r| r.to_string()).collect());
    match name {
        "availability-zone" => one(&i.az),
        "instance-state-name" => one(i.state.as_str()),
        "instance-state-code" => one(&i.state.code().to_string()),
        "instance-status.status" => one(s.instance_status),
        "system-status.status" => one(s.system_status),
        "attached-ebs-status.status" => one(s.ebs_status),
        "instance-status.reachability"
        | "system-status.reachability"
        | "attached-ebs-status.reachability" => reach(),
        "event.code" | "event.description" => Some(vec![]),
        _ => None,
    }
}

fn render_summary(x: &mut Xml, tag: &str, status: &str, reach: Option<&str>) {
    x.open(tag).leaf("status", status);
    x.set("details", reach, |x, r| {
        x.leaf("name", "reachability").leaf("status", r);
    });
    x.close(tag);
}

fn describe_instance_status(w: &World, ctx: &Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let ids = r.p.list("InstanceId")?;
    if !ids.is_empty() && r.p.has("MaxResults") {
        return Err(Fault::new(
            "InvalidParameterCombination",
            "The parameter instancesSet cannot be used with the parameter maxResults",
        ));
    }
    let all = r.p.bool("IncludeAllInstances")?.unwrap_or(false);
    let mut items: Vec<&Instance> = if ids.is_empty() {
        w.scoped::<Instance>(&ctx.account, &ctx.region).collect()
    } else {
        instance::get_many(w, ctx, &ids)?
    };
    if !all {
        items.retain(|i| i.state == vpc_model::InstanceState::Running);
    }
    items.sort_by(|a, b| a.meta.id.cmp(&b.meta.id));
    let items = query::apply(items, &r.p.filters()?, &status_field, STATUS_FILTERS)?;
    let (page, next) = query::paginate(items, r.p, |i| i.meta.id.clone(), 5, 1000)?;
    let mut x = r.xml();
    x.set("instanceStatusSet", page, |x, i| {
        let s = instance::status_of(i);
        let az_id = w
            .get::<vpc_model::Subnet>(&i.subnet_id)
            .map(|s| s.az_id.clone());
        x.leaf("instanceId", &i.meta.id)
            .leaf("availabilityZone", &i.az)
            .opt("availabilityZoneId", az_id.as_deref())
            .empty("eventsSet")
            .open("instanceState")
            .num("code", i.state.code())
            .leaf("name", i.state.as_str())
            .close("instanceState");
        render_summary(x, "systemStatus", s.system_status, s.reachability);
        render_summary(x, "instanceStatus", s.instance_status, s.reachability);
        render_summary(x, "attachedEbsStatus", s.ebs_status, s.reachability);
    });
    x.opt("nextToken", next.as_deref());
    r.done(x)
}

// ---- CPU credits and metadata options -------------------------------------

fn describe_credit_specifications(w: &World, ctx: &Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let ids = r.p.list("InstanceId")?;
    if !ids.is_empty() && r.p.has("MaxResults") {
        return Err(Fault::new(
            "InvalidParameterCombination",
            "The parameter instancesSet cannot be used with the parameter maxResults",
        ));
    }
    let mut items = instance::credit_specifications(w, ctx, &ids)?;
    items.sort_by(|a, b| a.0.meta.id.cmp(&b.0.meta.id));
    let field = |it: &(&Instance, String), name: &str| match name {
        "instance-id" => Some(vec![it.0.meta.id.clone()]),
        _ => None,
    };
    let items = query::apply(items, &r.p.filters()?, &field, &["instance-id"])?;
    let (page, next) = query::paginate(items, r.p, |it| it.0.meta.id.clone(), 5, 1000)?;
    let mut x = r.xml();
    x.set("instanceCreditSpecificationSet", page, |x, (i, c)| {
        x.leaf("instanceId", &i.meta.id).leaf("cpuCredits", &c);
    });
    x.opt("nextToken", next.as_deref());
    r.done(x)
}

fn modify_credit_specification(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    r: &Req<'_>,
) -> Result<String, Fault> {
    let mut items = Vec::new();
    for e in r.p.indexed("InstanceCreditSpecification")? {
        e.allow_only(&["InstanceId", "CpuCredits"])?;
        items.push((
            e.req_member("InstanceId")?.to_string(),
            e.req_member("CpuCredits")?.to_string(),
        ));
    }
    let out = instance::modify_credit_specification(w, ctx, &items)?;
    let mut x = r.xml();
    x.set(
        "successfulInstanceCreditSpecificationSet",
        out.iter().filter(|(_, r)| r.is_ok()),
        |x, (id, _)| {
            x.leaf("instanceId", id);
        },
    );
    x.set(
        "unsuccessfulInstanceCreditSpecificationSet",
        out.iter()
            .filter_map(|(id, r)| r.as_ref().err().map(|e| (id, e))),
        |x, (id, e)| {
            x.leaf("instanceId", id)
                .open("error")
                .leaf("code", &e.code)
                .leaf("message", &e.message)
                .close("error");
        },
    );
    r.done(x)
}

fn modify_metadata_options(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let id = r.p.req("InstanceId")?.to_string();
    let c = super::instance::metadata_change(r.p)?;
    let m = instance::modify_metadata_options(w, ctx, &id, &c)?;
    let mut x = r.xml();
    x.leaf("instanceId", &id).open("instanceMetadataOptions");
    super::instance::render_metadata(&mut x, &m, "pending");
    x.close("instanceMetadataOptions");
    r.done(x)
}

// ---- Secondary private addresses -------------------------------------------

/// `PrivateIpAddress.N` (also the flat `PrivateIpAddress`).
fn addresses(p: &Params) -> Result<Vec<String>, Fault> {
    let mut v = p.list("PrivateIpAddress")?;
    v.retain(|s| !s.is_empty());
    Ok(v)
}

fn assign_private_ips(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let p = r.p;
    if !p.list("Ipv4Prefix")?.is_empty() || p.has("Ipv4PrefixCount") {
        return Err(Fault::new(
            "UnsupportedOperation",
            "IPv4 prefix delegation is not supported by vpcd.",
        ));
    }
    let id = p.req("NetworkInterfaceId")?.to_string();
    let added = eni::assign_private_ips(
        w,
        ctx,
        &id,
        &addresses(p)?,
        p.int("SecondaryPrivateIpAddressCount")?,
        p.bool("AllowReassignment")?.unwrap_or(false),
    )?;
    let mut x = r.xml();
    x.leaf("networkInterfaceId", &id);
    x.set("assignedPrivateIpAddressesSet", &added, |x, ip| {
        x.leaf("privateIpAddress", &ip.to_string());
    });
    x.empty("assignedIpv4PrefixSet");
    r.done(x)
}

fn unassign_private_ips(w: &mut World, ctx: &mut Ctx<'_>, r: &Req<'_>) -> Result<String, Fault> {
    let p = r.p;
    let id = p.req("NetworkInterfaceId")?.to_string();
    eni::unassign_private_ips(w, ctx, &id, &addresses(p)?)?;
    r.ok()
}
