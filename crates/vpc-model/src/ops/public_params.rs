//! The public SSM parameters EC2 users read AMI IDs from
//! (`/aws/service/ami-amazon-linux-latest/...`, Canonical's Ubuntu ones).
//! vpcd has no image store: each parameter's value is an `ami-` ID derived
//! from the region and the parameter's name, stable across restarts, and
//! DescribeImages describes it like any other ID (`ops::image`).

use crate::fault::{Fault, Result};

/// The public parameters vpcd answers, by name.
pub const NAMES: &[&str] = &[
    "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64",
    "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64",
    "/aws/service/ami-amazon-linux-latest/al2023-ami-minimal-kernel-default-x86_64",
    "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-6.1-x86_64",
    "/aws/service/ami-amazon-linux-latest/amzn2-ami-hvm-x86_64-gp2",
    "/aws/service/ami-amazon-linux-latest/amzn2-ami-kernel-5.10-hvm-x86_64-gp2",
    "/aws/service/canonical/ubuntu/server/22.04/stable/current/amd64/hvm/ebs-gp2/ami-id",
    "/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id",
];

/// One parameter's value as SSM shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parameter {
    pub name: String,
    pub value: String,
    pub arn: String,
}

/// The parameter `name` in `region`; a name given as an ARN is accepted, as
/// SSM does. Anything else is `ParameterNotFound`.
pub fn get(region: &str, name: &str) -> Result<Parameter> {
    let bare = name
        .strip_prefix(&format!("arn:aws:ssm:{region}::parameter"))
        .unwrap_or(name);
    if !NAMES.contains(&bare) {
        return Err(Fault::new("ParameterNotFound", ""));
    }
    // FNV-1a over region and name, 64 bits, as 17 hex digits.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in region.bytes().chain([0]).chain(bare.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    Ok(Parameter {
        name: bare.to_string(),
        value: format!("ami-0{h:016x}"),
        arn: format!("arn:aws:ssm:{region}::parameter{bare}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_image_ids_stable_per_region() {
        let a = get("us-east-1", NAMES[0]).unwrap();
        assert!(crate::ids::is_well_formed("ami", &a.value), "{}", a.value);
        assert_eq!(a, get("us-east-1", &a.arn).unwrap());
        assert_ne!(a.value, get("eu-west-1", NAMES[0]).unwrap().value);
        assert_eq!(
            get("us-east-1", "/nope").unwrap_err().code,
            "ParameterNotFound"
        );
    }
}
