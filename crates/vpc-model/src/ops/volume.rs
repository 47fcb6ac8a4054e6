//! EBS volumes, as far as instances need them: RunInstances makes one per
//! block-device mapping (the image's root device always gets one), the
//! instance shows them in `blockDeviceMapping`, and termination deletes those
//! with DeleteOnTermination and detaches the others.

use super::image::Image;
use super::new_meta;
use crate::fault::{Fault, Result};
use crate::ids;
use crate::types::*;
use crate::world::World;
use crate::Ctx;

pub const VOLUME: super::IdKind = super::IdKind {
    prefix: "vol",
    malformed: "InvalidVolumeID.Malformed",
    not_found: "InvalidVolume.NotFound",
    noun: "volume",
};

fn not_found(id: &str) -> Fault {
    Fault::new(
        "InvalidVolume.NotFound",
        format!("The volume '{id}' does not exist."),
    )
}

/// The caller's volume by ID.
pub fn get<'w>(w: &'w World, ctx: &Ctx<'_>, id: &str) -> Result<&'w Volume> {
    ids::check("vol", VOLUME.malformed, id)?;
    w.owned::<Volume>(id, &ctx.account, &ctx.region, || not_found(id))
}

/// One `BlockDeviceMapping.N` of RunInstances.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockDevice {
    pub device_name: Option<String>,
    pub no_device: bool,
    pub virtual_name: Option<String>,
    pub volume_size: Option<i64>,
    pub volume_type: Option<String>,
    pub iops: Option<i64>,
    pub throughput: Option<i64>,
    pub encrypted: Option<bool>,
    pub kms_key_id: Option<String>,
    pub snapshot_id: Option<String>,
    pub delete_on_termination: Option<bool>,
}

/// A checked volume to create at launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumePlan {
    pub device: String,
    pub size_gib: u32,
    pub volume_type: String,
    pub iops: Option<u32>,
    pub throughput: Option<u32>,
    pub encrypted: bool,
    pub kms_key_id: Option<String>,
    pub snapshot_id: Option<String>,
    pub delete_on_termination: bool,
}

const TYPES: &[&str] = &["gp2", "gp3", "io1", "io2", "st1", "sc1", "standard"];

fn mapping_error(msg: String) -> Fault {
    Fault::new("InvalidBlockDeviceMapping", msg)
}

fn to_u32(name: &str, v: i64) -> Result<u32> {
    u32::try_from(v).map_err(|_| {
        Fault::invalid_param(format!(
            "Value ({v}) for parameter {name} is invalid. Expected a positive number."
        ))
    })
}

/// Checks the mappings against the image: the root device gets the image's
/// snapshot and size unless the mapping overrides them.
pub fn plan(img: &Image, mappings: &[BlockDevice]) -> Result<Vec<VolumePlan>> {
    let mut out: Vec<VolumePlan> = Vec::new();
    let mut root_done = false;
    let mut seen: Vec<&str> = Vec::new();
    for m in mappings {
        let device = m
            .device_name
            .as_deref()
            .filter(|d| !d.is_empty())
            .ok_or_else(|| Fault::missing("BlockDeviceMapping.DeviceName"))?;
        if seen.contains(&device) {
            return Err(mapping_error(format!(
                "The device '{device}' is used in more than one block-device mapping"
            )));
        }
        seen.push(device);
        let root = device == img.root_device_name;
        if m.no_device || m.virtual_name.is_some() {
            if root {
                return Err(mapping_error(format!(
                    "The root device '{device}' cannot be suppressed or mapped to an instance store."
                )));
            }
            continue;
        }
        let vt = m
            .volume_type
            .clone()
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| {
                if root {
                    img.root_volume_type.to_string()
                } else {
                    "gp2".to_string()
                }
            });
        if !TYPES.contains(&vt.as_str()) {
            return Err(Fault::invalid_param(format!(
                "Value ({vt}) for parameter volumeType is invalid. Valid volume types are: {}.",
                TYPES.join(", ")
            )));
        }
        let snapshot = if root {
            Some(
                m.snapshot_id
                    .clone()
                    .unwrap_or_else(|| img.root_snapshot_id.clone()),
            )
        } else {
            m.snapshot_id.clone().filter(|s| !s.is_empty())
        };
        if let Some(s) = &snapshot {
            ids::check_strict("snap", "InvalidSnapshotID.Malformed", s)?;
        }
        let size = match m.volume_size {
            Some(v) => to_u32("size", v)?,
            None if root => img.root_size_gib,
            None if snapshot.is_some() => img.root_size_gib,
            None => {
                return Err(Fault::missing(
                    "BlockDeviceMapping.Ebs.VolumeSize or BlockDeviceMapping.Ebs.SnapshotId",
                ))
            }
        };
        if root && size < img.root_size_gib {
            return Err(mapping_error(format!(
                "Volume of size {size}GB is smaller than snapshot '{}', expect size >= {}GB",
                img.root_snapshot_id, img.root_size_gib
            )));
        }
        let max = if matches!(vt.as_str(), "gp2" | "gp3" | "io1" | "st1" | "sc1") {
            16384
        } else if vt == "io2" {
            65536
        } else {
            1024
        };
        if size == 0 || size > max {
            return Err(Fault::invalid_param(format!(
                "Volume size {size} is out of range for volume type {vt}: 1 to {max} GiB."
            )));
        }
        let iops = match (vt.as_str(), m.iops) {
            ("gp3", None) => Some(3000),
            ("gp3", Some(v)) => {
                let v = to_u32("iops", v)?;
                if !(3000..=16000).contains(&v) {
                    return Err(Fault::invalid_param(format!(
                        "Value ({v}) for parameter iops is invalid. Expected a value between 3000 and 16000 for gp3 volumes."
                    )));
                }
                Some(v)
            }
            ("io1" | "io2", Some(v)) => Some(to_u32("iops", v)?),
            ("io1" | "io2", None) => return Err(Fault::missing("iops")),
            ("gp2", None) => Some((size.saturating_mul(3)).clamp(100, 16000)),
            (_, None) => None,
            (t, Some(_)) => {
                return Err(Fault::new(
                    "InvalidParameterCombination",
                    format!("The parameter iops is not supported for {t} volumes."),
                ))
            }
        };
        let throughput = match (vt.as_str(), m.throughput) {
            ("gp3", None) => Some(125),
            ("gp3", Some(v)) => {
                let v = to_u32("throughput", v)?;
                if !(125..=1000).contains(&v) {
                    return Err(Fault::invalid_param(format!(
                        "Value ({v}) for parameter throughput is invalid. Expected a value between 125 and 1000."
                    )));
                }
                Some(v)
            }
            (_, None) => None,
            (t, Some(_)) => {
                return Err(Fault::new(
                    "InvalidParameterCombination",
                    format!("The parameter throughput is not supported for {t} volumes."),
                ))
            }
        };
        let kms = m.kms_key_id.clone().filter(|k| !k.is_empty());
        root_done |= root;
        out.push(VolumePlan {
            device: device.to_string(),
            size_gib: size,
            volume_type: vt,
            iops,
            throughput,
            encrypted: m.encrypted.unwrap_or(false) || kms.is_some(),
            kms_key_id: kms,
            snapshot_id: snapshot,
            delete_on_termination: m.delete_on_termination.unwrap_or(true),
        });
    }
    if !root_done {
        out.insert(
            0,
            VolumePlan {
                device: img.root_device_name.to_string(),
                size_gib: img.root_size_gib,
                volume_type: img.root_volume_type.to_string(),
                iops: Some(3000),
                throughput: Some(125),
                encrypted: false,
                kms_key_id: None,
                snapshot_id: Some(img.root_snapshot_id.clone()),
                delete_on_termination: true,
            },
        );
    }
    Ok(out)
}

/// Creates and attaches an instance's volumes.
pub fn create_for_instance(
    w: &mut World,
    ctx: &mut Ctx<'_>,
    plans: &[VolumePlan],
    instance_id: &str,
    az: &str,
    tags: &Tags,
) {
    for p in plans {
        let v = Volume {
            meta: new_meta(ctx, "vol", tags.clone()),
            az: az.to_string(),
            size_gib: p.size_gib,
            volume_type: p.volume_type.clone(),
            iops: p.iops,
            throughput: p.throughput,
            encrypted: p.encrypted,
            kms_key_id: p.kms_key_id.clone(),
            snapshot_id: p.snapshot_id.clone(),
            attachment: Some(VolumeAttachment {
                instance_id: instance_id.to_string(),
                device: p.device.clone(),
                delete_on_termination: p.delete_on_termination,
                attached_at: ctx.now,
            }),
        };
        w.put(v);
    }
}

/// An instance's attached volumes, by device name.
pub fn of_instance<'w>(w: &'w World, instance_id: &str) -> Vec<&'w Volume> {
    let mut v: Vec<&Volume> = w
        .iter::<Volume>()
        .filter(|v| {
            v.attachment
                .as_ref()
                .is_some_and(|a| a.instance_id == instance_id)
        })
        .collect();
    v.sort_by(|a, b| {
        let d = |v: &Volume| v.attachment.as_ref().map(|a| a.device.clone());
        d(a).cmp(&d(b))
    });
    v
}

/// At termination: deletes the volumes with DeleteOnTermination, detaches the rest.
pub fn release(w: &mut World, instance_id: &str) {
    let vols: Vec<(String, bool)> = of_instance(w, instance_id)
        .iter()
        .map(|v| {
            (
                v.meta.id.clone(),
                v.attachment
                    .as_ref()
                    .is_some_and(|a| a.delete_on_termination),
            )
        })
        .collect();
    for (id, dot) in vols {
        if dot {
            w.remove::<Volume>(&id);
        } else {
            w.update::<Volume>(&id, |v| v.attachment = None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_defaults_and_overrides() {
        let img = super::super::image::describe("ami-12345678").unwrap();
        let p = plan(&img, &[]).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!((p[0].device.as_str(), p[0].size_gib), ("/dev/xvda", 8));
        assert!(p[0].delete_on_termination);
        let root = BlockDevice {
            device_name: Some("/dev/xvda".into()),
            volume_size: Some(20),
            volume_type: Some("gp2".into()),
            delete_on_termination: Some(false),
            ..BlockDevice::default()
        };
        let data = BlockDevice {
            device_name: Some("/dev/sdf".into()),
            volume_size: Some(5),
            ..BlockDevice::default()
        };
        let p = plan(&img, &[root.clone(), data]).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].size_gib, p[0].iops), (20, Some(100)));
        assert!(!p[0].delete_on_termination);
        assert_eq!(p[1].snapshot_id, None);
        let small = BlockDevice {
            volume_size: Some(4),
            ..root.clone()
        };
        assert_eq!(
            plan(&img, &[small]).unwrap_err().code,
            "InvalidBlockDeviceMapping"
        );
        let bad = BlockDevice {
            volume_type: Some("gp9".into()),
            ..root.clone()
        };
        assert_eq!(
            plan(&img, &[bad]).unwrap_err().code,
            "InvalidParameterValue"
        );
        let iops = BlockDevice {
            iops: Some(500),
            ..root
        };
        assert_eq!(
            plan(&img, &[iops]).unwrap_err().code,
            "InvalidParameterCombination"
        );
    }
}
