//! Machine images. vpcd boots nothing, so it keeps no image store: any
//! well-formed `ami-` ID names an image, and its attributes are derived from
//! the ID alone, so that every call describes it the same way.
//!
//! Such an image is a public Amazon-owned (`137112412989`, alias `amazon`)
//! x86_64 HVM image on EBS with one 8 GiB gp3 root volume at `/dev/xvda`,
//! made from a snapshot whose ID and whose creation date come from a hash of
//! the image ID.

use crate::fault::Result;
use crate::ids;

/// The account AWS's own images belong to.
pub const AMAZON_OWNER: &str = "137112412989";

/// One image, as DescribeImages shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub id: String,
    pub name: String,
    pub description: String,
    pub owner_id: &'static str,
    pub owner_alias: &'static str,
    pub architecture: &'static str,
    /// Milliseconds since the epoch.
    pub created_ms: i64,
    pub root_device_name: &'static str,
    pub root_snapshot_id: String,
    pub root_size_gib: u32,
    pub root_volume_type: &'static str,
    pub boot_mode: &'static str,
}

/// FNV-1a: a stable hash (the standard library's is randomly seeded).
fn fnv(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The image an `ami-` ID names; `InvalidAMIID.Malformed` for anything else.
pub fn describe(id: &str) -> Result<Image> {
    ids::check_strict("ami", "InvalidAMIID.Malformed", id)?;
    let h = fnv(id);
    // 2023-01-01T00:00:00Z plus up to two years, whole seconds.
    let created_ms = (1_672_531_200 + (h % (730 * 86_400)) as i64) * 1000;
    let suffix = &id[4..];
    Ok(Image {
        id: id.to_string(),
        name: format!("vpcd-linux-{suffix}"),
        description: format!("vpcd stand-in for {id}"),
        owner_id: AMAZON_OWNER,
        owner_alias: "amazon",
        architecture: "x86_64",
        created_ms,
        root_device_name: "/dev/xvda",
        root_snapshot_id: format!("snap-{h:017x}"),
        root_size_gib: 8,
        root_volume_type: "gp3",
        boot_mode: "uefi-preferred",
    })
}

/// Whether the image passes `Owner.N` (`amazon`, `self`, an account ID; empty passes all).
pub fn owned_by(img: &Image, owners: &[String], caller: &str) -> bool {
    owners.is_empty()
        || owners.iter().any(|o| {
            o == img.owner_id || o == img.owner_alias || (o == "self" && caller == img.owner_id)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_derived_from_their_id() {
        let a = describe("ami-12345678").unwrap();
        assert_eq!(a, describe("ami-12345678").unwrap());
        let b = describe("ami-0123456789abcdef0").unwrap();
        assert_ne!(a.root_snapshot_id, b.root_snapshot_id);
        assert!(ids::is_well_formed("snap", &a.root_snapshot_id));
        assert_eq!(
            describe("ami-xyz").unwrap_err().code,
            "InvalidAMIID.Malformed"
        );
        assert!(describe("i-12345678").is_err());
        assert!(owned_by(&a, &["amazon".into()], "111111111111"));
        assert!(!owned_by(&a, &["self".into()], "111111111111"));
        assert!(owned_by(&a, &[], "111111111111"));
    }
}
