//! EC2 resource ID formats: `<prefix>-` then 8 (legacy) or 17 lowercase hex digits.

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

/// Checks an ID's shape and returns `<code>` with AWS's `Invalid id` message when it is off.
pub fn check(prefix: &str, code: &'static str, s: &str) -> Result<(), Fault> {
    if is_well_formed(prefix, s) {
        Ok(())
    } else {
        Err(Fault::new(
            code,
            format!("Invalid id: \"{s}\" (expecting \"{prefix}-...\")"),
        ))
    }
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
}
