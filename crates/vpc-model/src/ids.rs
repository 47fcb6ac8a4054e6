//! EC2 resource ID formats: `<prefix>-` then 8 (legacy) or 17 lowercase hex digits.
//!
//! What the API refuses as `Malformed` is looser than what vpcd makes: an ID
//! with the right prefix (`subnet-does_not_exist`) is looked up and is then
//! `NotFound`, as AWS answers; only a wrong or missing prefix is `Malformed`
//! (docs/api.md, "IDs"). AMI IDs are the exception (`check_strict`): vpcd
//! derives an image from any well-formed `ami-` ID, so a sloppy one must not
//! name an image.

use crate::fault::Fault;

/// True when `s` is `<prefix>-` followed by 8 or 17 lowercase hex digits.
pub fn is_well_formed(prefix: &str, s: &str) -> bool {
    let Some(rest) = s.strip_prefix(prefix).and_then(|r| r.strip_prefix('-')) else {
        return false;
    };
    (rest.len() == 8 || rest.len() == 17)
        && rest
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// True when `s` is `<prefix>-` followed by anything: an ID of that type as
/// far as the API's `Malformed` errors are concerned.
pub fn has_prefix(prefix: &str, s: &str) -> bool {
    s.strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('-'))
        .is_some_and(|rest| !rest.is_empty())
}

/// Checks an ID's prefix and returns `<code>` with AWS's `Invalid id` message
/// when it is not the type's; a prefix-correct ID passes, to be looked up.
pub fn check(prefix: &str, code: &'static str, s: &str) -> Result<(), Fault> {
    if has_prefix(prefix, s) {
        Ok(())
    } else {
        Err(invalid_id(prefix, code, s))
    }
}

/// As `check`, but the whole shape must be right (8 or 17 lowercase hex digits).
pub fn check_strict(prefix: &str, code: &'static str, s: &str) -> Result<(), Fault> {
    if is_well_formed(prefix, s) {
        Ok(())
    } else {
        Err(invalid_id(prefix, code, s))
    }
}

fn invalid_id(prefix: &str, code: &'static str, s: &str) -> Fault {
    Fault::new(
        code,
        format!("Invalid id: \"{s}\" (expecting \"{prefix}-...\")"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert!(is_well_formed("vpc", "vpc-0123456789abcdef0"));
        assert!(is_well_formed("vpc", "vpc-1a2b3c4d"));
        assert!(!is_well_formed("vpc", "vpc-0123456789ABCDEF0"));
        assert!(!is_well_formed("vpc", "subnet-1a2b3c4d"));
        assert!(!is_well_formed("vpc", "vpc-1a2b3c4"));
        assert!(!is_well_formed("pcx", "pcx-"));
    }

    #[test]
    fn a_prefix_correct_id_passes_the_check_and_a_wrong_prefix_does_not() {
        assert!(check("subnet", "X", "subnet-does_not_exist").is_ok());
        assert!(check("subnet", "X", "subnet-xxxxxx ").is_ok());
        assert!(check("vpc", "X", "vpc-0123456789abcdef0").is_ok());
        for bad in [
            "subnet-",
            "subnet",
            "notasubnet",
            "vpc-0123456789abcdef0",
            "subnetx-1",
        ] {
            let f = check("subnet", "InvalidSubnetID.Malformed", bad).unwrap_err();
            assert_eq!(f.code, "InvalidSubnetID.Malformed");
            assert_eq!(
                f.message,
                format!("Invalid id: \"{bad}\" (expecting \"subnet-...\")")
            );
        }
        assert!(check_strict("ami", "X", "ami-xyz").is_err());
        assert!(check_strict("ami", "X", "ami-12345678").is_ok());
    }
}
