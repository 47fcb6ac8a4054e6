//! What the kernel holds of vpcd's nftables tables, read back as JSON
//! (`nft -j list ruleset`): every object of a planned table is deserialized
//! into the `nftables` crate's schema (`NfListObject`: tables, chains,
//! rules with their statements, sets and maps with their elements) and
//! reduced to each table's [`NftShape`], which the periodic pass compares
//! with the plan's. Objects of other tables (the meter's, whose named
//! counters may exceed the crate's 32-bit counter fields, or anyone else's)
//! are not deserialized.

use crate::error::CommandError;
use crate::kernel::Runner;
use crate::plan::{family_name, ChainShape, NftShape, NsPlan};
use nftables::schema::NfListObject;
use nftables::types::NfChainPolicy;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

type TableKey = (String, String);

/// The shape of each `wanted` table (family, name) in a ruleset listing;
/// a table missing from the kernel is missing here.
fn parse(json: &str, wanted: &BTreeSet<TableKey>) -> Result<BTreeMap<TableKey, NftShape>, String> {
    let listing: Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let objects = listing
        .get("nftables")
        .and_then(Value::as_array)
        .ok_or("no nftables array")?;
    let mut out: BTreeMap<TableKey, NftShape> = BTreeMap::new();
    for o in objects {
        let Some((kind, body)) = o.as_object().and_then(|m| m.iter().next()) else {
            continue;
        };
        let name_key = match kind.as_str() {
            "table" => "name",
            "chain" | "rule" | "set" | "map" => "table",
            _ => continue,
        };
        let field = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or_default();
        let key = (field("family").to_string(), field(name_key).to_string());
        if !wanted.contains(&key) {
            continue;
        }
        let object: NfListObject<'_> = serde_json::from_value(o.clone())
            .map_err(|e| format!("{kind} of table {} {}: {e}", key.0, key.1))?;
        let shape = out.entry(key).or_default();
        match object {
            NfListObject::Chain(c) => {
                let policy = c.hook.map(|_| match c.policy {
                    Some(NfChainPolicy::Drop) => "drop",
                    _ => "accept",
                });
                shape
                    .chains
                    .insert(c.name.into_owned(), ChainShape { rules: 0, policy });
            }
            NfListObject::Rule(r) => {
                if let Some(c) = shape.chains.get_mut(r.chain.as_ref()) {
                    c.rules += 1;
                }
            }
            NfListObject::Set(set) => {
                let n = set.elem.as_ref().map_or(0, |e| e.len());
                shape.sets.insert(set.name.into_owned(), n);
            }
            NfListObject::Map(map) => {
                let n = map.elem.as_ref().map_or(0, |e| e.len());
                shape.sets.insert(map.name.into_owned(), n);
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Whether any of the namespace's planned tables differs in the kernel
/// (missing, or another shape). Other tables are not looked at.
pub(crate) fn differs(run: &Runner, ns: &NsPlan) -> Result<bool, CommandError> {
    let wanted: BTreeSet<TableKey> = ns
        .nft
        .iter()
        .map(|t| (family_name(t.family).to_string(), t.name.to_string()))
        .collect();
    let out = run.nft_list(&ns.name)?;
    let kernel = parse(&out, &wanted).map_err(|detail| CommandError::Output {
        cmd: format!("nft -j list ruleset (in {})", ns.name),
        detail,
    })?;
    Ok(ns.nft.iter().any(|t| {
        let have = kernel.get(&(family_name(t.family).to_string(), t.name.to_string()));
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

    /// What nft 1.0.6 listed after loading a JSON document with every
    /// construct the data plane writes (concatenated and interval sets, an
    /// anonymous verdict map, wildcard interface names, a log statement, a
    /// NAT map), plus a table of someone else's with a counter too large for
    /// the crate's schema.
    const LISTING: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"table": {"family": "inet", "name": "vpcd", "handle": 2}}, {"set": {"family": "inet", "name": "eni_addr4", "table": "vpcd", "type": ["ifname", "ipv4_addr"], "handle": 1, "elem": [{"concat": ["e-1", "10.0.0.1"]}]}}, {"set": {"family": "inet", "name": "sdc_if", "table": "vpcd", "type": "ifname", "handle": 2}}, {"set": {"family": "inet", "name": "pl4", "table": "vpcd", "type": "ipv4_addr", "handle": 3, "flags": ["interval"], "elem": [{"prefix": {"addr": "10.0.0.0", "len": 8}}, "192.168.1.1"]}}, {"chain": {"family": "inet", "table": "vpcd", "name": "c", "handle": 4}}, {"chain": {"family": "inet", "table": "vpcd", "name": "forward", "handle": 6, "type": "filter", "hook": "forward", "prio": 0, "policy": "drop"}}, {"rule": {"family": "inet", "table": "vpcd", "chain": "c", "handle": 5, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "th", "field": "dport"}}, "right": {"range": [20, 30]}}}, {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}}, {"return": null}]}}, {"rule": {"family": "inet", "table": "vpcd", "chain": "forward", "handle": 7, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "p-*"}}, {"match": {"op": "!=", "left": {"meta": {"key": "oifname"}}, "right": "e-*"}}, {"counter": {"packets": 0, "bytes": 0}}, {"drop": null}]}}, {"rule": {"family": "inet", "table": "vpcd", "chain": "forward", "handle": 8, "expr": [{"match": {"op": "!=", "left": {"concat": [{"meta": {"key": "iifname"}}, {"payload": {"protocol": "ip", "field": "saddr"}}]}, "right": "@eni_addr4"}}, {"log": {"prefix": "sg:in:x", "group": 100}}, {"counter": {"packets": 0, "bytes": 0}}, {"drop": null}]}}, {"rule": {"family": "inet", "table": "vpcd", "chain": "forward", "handle": 10, "expr": [{"vmap": {"key": {"meta": {"key": "iifname"}}, "data": {"set": [["e-1", {"goto": {"target": "c"}}], ["e-2", {"jump": {"target": "c"}}]]}}}]}}, {"rule": {"family": "inet", "table": "vpcd", "chain": "forward", "handle": 11, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "icmp", "field": "type"}}, "right": "echo-request"}}, {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "@pl4"}}, {"accept": null}]}}, {"table": {"family": "ip", "name": "vpcd_nat", "handle": 3}}, {"map": {"family": "ip", "name": "pub2priv", "table": "vpcd_nat", "type": "ipv4_addr", "handle": 1, "map": "ipv4_addr", "elem": [["203.0.113.5", "10.0.1.10"]]}}, {"chain": {"family": "ip", "table": "vpcd_nat", "name": "prerouting", "handle": 2, "type": "nat", "hook": "prerouting", "prio": -100, "policy": "accept"}}, {"rule": {"family": "ip", "table": "vpcd_nat", "chain": "prerouting", "handle": 3, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "g-*"}}, {"dnat": {"addr": {"map": {"key": {"payload": {"protocol": "ip", "field": "daddr"}}, "data": "@pub2priv"}}}}]}}, {"table": {"family": "inet", "name": "other", "handle": 9}}, {"counter": {"family": "inet", "name": "big", "table": "other", "handle": 10, "packets": 5000000000, "bytes": 9000000000000}}]}"#;

    fn wanted() -> BTreeSet<TableKey> {
        BTreeSet::from([
            ("inet".to_string(), "vpcd".to_string()),
            ("ip".to_string(), "vpcd_nat".to_string()),
        ])
    }

    #[test]
    fn a_listing_reduces_to_chains_rules_sets_and_policies() {
        let shapes = parse(LISTING, &wanted()).unwrap();
        let t = &shapes[&("inet".to_string(), "vpcd".to_string())];
        assert_eq!(
            t.sets,
            BTreeMap::from([
                ("eni_addr4".to_string(), 1),
                ("sdc_if".to_string(), 0),
                ("pl4".to_string(), 2)
            ])
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
                rules: 4,
                policy: Some("drop")
            }
        );
        let nat = &shapes[&("ip".to_string(), "vpcd_nat".to_string())];
        assert_eq!(nat.sets, BTreeMap::from([("pub2priv".to_string(), 1)]));
        assert_eq!(nat.chains["prerouting"].policy, Some("accept"));
        // Someone else's table is not read, so its counter cannot fail the parse.
        assert_eq!(shapes.len(), 2);
        assert!(parse("not json", &wanted()).is_err());
    }

    #[test]
    fn a_planned_table_the_kernel_lacks_is_missing() {
        let shapes = parse(
            r#"{"nftables": [{"metainfo": {"version": "1.0.6"}}]}"#,
            &wanted(),
        )
        .unwrap();
        assert!(shapes.is_empty());
    }

    #[test]
    fn an_object_of_a_planned_table_the_schema_cannot_read_is_an_error() {
        let bad = r#"{"nftables": [{"table": {"family": "inet", "name": "vpcd", "handle": 1}},
            {"chain": {"family": "inet", "table": "vpcd", "name": "c", "handle": 2, "policy": 7}}]}"#;
        assert!(parse(bad, &wanted()).is_err());
    }
}
