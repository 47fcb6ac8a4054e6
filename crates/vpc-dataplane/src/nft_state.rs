//! What the kernel holds of vpcd's nftables tables, read back as JSON
//! (`nft -j list ruleset`, deserialized into the objects of libnftables'
//! JSON schema that a shape needs: tables, chains, rules, sets and maps;
//! rule expressions are not read) and reduced to each table's [`NftShape`],
//! which the periodic pass compares with the plan's.
//!
//! The `nftables` crate's schema cannot read a listing with a verdict map
//! (its set types lack `verdict`), and every router has four, so the few
//! fields needed are declared here.

use crate::error::CommandError;
use crate::kernel::Runner;
use crate::plan::{ChainShape, NftShape, NsPlan};
use serde::de::IgnoredAny;
use serde::Deserialize;
use std::collections::BTreeMap;

/// `{"nftables": [...]}`.
#[derive(Debug, Deserialize)]
struct Listing {
    nftables: Vec<Object>,
}

/// One ruleset object: exactly one of these keys is present (others, such
/// as `metainfo`, are ignored).
#[derive(Debug, Deserialize)]
struct Object {
    table: Option<Named>,
    chain: Option<Chain>,
    rule: Option<Rule>,
    set: Option<Set>,
    map: Option<Set>,
}

#[derive(Debug, Deserialize)]
struct Named {
    family: String,
    name: String,
}

#[derive(Debug, Deserialize)]
struct Chain {
    family: String,
    table: String,
    name: String,
    hook: Option<String>,
    policy: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Rule {
    family: String,
    table: String,
    chain: String,
}

#[derive(Debug, Deserialize)]
struct Set {
    family: String,
    table: String,
    name: String,
    elem: Option<Vec<IgnoredAny>>,
}

/// The shape of every table in a ruleset listing, by (family, name).
fn shapes(listing: &Listing) -> BTreeMap<(String, String), NftShape> {
    let mut out: BTreeMap<(String, String), NftShape> = BTreeMap::new();
    fn table<'a>(
        out: &'a mut BTreeMap<(String, String), NftShape>,
        family: &str,
        name: &str,
    ) -> &'a mut NftShape {
        out.entry((family.to_string(), name.to_string()))
            .or_default()
    }
    for o in &listing.nftables {
        if let Some(t) = &o.table {
            table(&mut out, &t.family, &t.name);
        }
        if let Some(c) = &o.chain {
            let policy = c.hook.as_ref().map(|_| match c.policy.as_deref() {
                Some("drop") => "drop",
                _ => "accept",
            });
            table(&mut out, &c.family, &c.table)
                .chains
                .insert(c.name.clone(), ChainShape { rules: 0, policy });
        }
        if let Some(r) = &o.rule {
            if let Some(c) = table(&mut out, &r.family, &r.table)
                .chains
                .get_mut(&r.chain)
            {
                c.rules += 1;
            }
        }
        for s in [&o.set, &o.map].into_iter().flatten() {
            table(&mut out, &s.family, &s.table)
                .sets
                .insert(s.name.clone(), s.elem.as_ref().map_or(0, Vec::len));
        }
    }
    out
}

/// The shapes in `nft -j list ruleset` output.
fn parse(json: &str) -> Result<BTreeMap<(String, String), NftShape>, String> {
    let listing: Listing = serde_json::from_str(json).map_err(|e| e.to_string())?;
    Ok(shapes(&listing))
}

/// Whether any of the namespace's planned tables differs in the kernel
/// (missing, or another shape). Other tables are not looked at.
pub(crate) fn differs(run: &Runner, ns: &NsPlan) -> Result<bool, CommandError> {
    let out = run.nft_list(&ns.name)?;
    let kernel = parse(&out).map_err(|detail| CommandError::Output {
        cmd: format!("nft -j list ruleset (in {})", ns.name),
        detail,
    })?;
    Ok(ns.nft.iter().any(|t| {
        let have = kernel.get(&(t.family.to_string(), t.name.to_string()));
        if have != Some(&t.shape) {
            tracing::info!(ns = %ns.name, table = %t.name, "nft table differs from the plan");
            true
        } else {
            false
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_reduces_to_chains_rules_sets_and_policies() {
        // As nft 1.0.6 lists a small table (expressions cut short).
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
            {"table": {"family": "inet", "name": "vpcd", "handle": 1}},
            {"map": {"family": "inet", "name": "m", "table": "vpcd", "type": "ifname", "handle": 2, "map": "verdict",
                     "elem": [["e-1", {"goto": {"target": "c"}}], ["e-2", {"goto": {"target": "c"}}]]}},
            {"set": {"family": "inet", "name": "s", "table": "vpcd", "type": "ifname", "handle": 3}},
            {"chain": {"family": "inet", "table": "vpcd", "name": "c", "handle": 4}},
            {"chain": {"family": "inet", "table": "vpcd", "name": "forward", "handle": 5, "type": "filter",
                       "hook": "forward", "prio": 0, "policy": "drop"}},
            {"rule": {"family": "inet", "table": "vpcd", "chain": "c", "handle": 6, "expr": [{"counter": {"packets": 0, "bytes": 0}}, {"drop": null}]}},
            {"rule": {"family": "inet", "table": "vpcd", "chain": "forward", "handle": 7, "expr": [{"vmap": {"key": {"meta": {"key": "iifname"}}, "data": "@m"}}]}},
            {"table": {"family": "ip", "name": "other", "handle": 9}}]}"#;
        let shapes = parse(json).unwrap();
        let t = &shapes[&("inet".to_string(), "vpcd".to_string())];
        assert_eq!(
            t.sets,
            BTreeMap::from([("m".to_string(), 2), ("s".to_string(), 0)])
        );
        assert_eq!(
            t.chains["c"],
            ChainShape {
                rules: 1,
                policy: None
            }
        );
        assert_eq!(
            t.chains["forward"],
            ChainShape {
                rules: 1,
                policy: Some("drop")
            }
        );
        assert_eq!(
            shapes[&("ip".to_string(), "other".to_string())],
            NftShape::default()
        );
        assert!(parse("not json").is_err());
    }
}
