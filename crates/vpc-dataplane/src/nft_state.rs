//! What the kernel holds of vpcd's nftables tables, read back as JSON
//! (`nft -j list ruleset`): every object of a planned table is deserialized
//! into the `nftables` crate's schema (`NfListObject`: tables, chains,
//! rules with their statements, sets and maps with their elements) and
//! reduced to each table's [`NftShape`], which the periodic pass compares
//! with the plan's. Objects of other tables (the meter's, whose named
//! counters may exceed the crate's 32-bit counter fields, or anyone else's)
//! are not deserialized.
//!
//! The listing costs an `nft` process per namespace, so the periodic pass
//! first asks the kernel for the namespace's ruleset generation (one
//! `NFT_MSG_GETGEN` request over netfilter netlink, [`generation_here`]):
//! the kernel bumps it on every committed nft transaction in that
//! namespace, by anyone. When it is still the generation seen just before
//! a listing that matched the plan ([`Verified`]), nothing has changed
//! since and the listing is skipped.

use crate::error::CommandError;
use crate::kernel::Runner;
use crate::plan::{family_name, ChainShape, NftShape, NsPlan};
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};
use nftables::schema::NfListObject;
use nftables::types::NfChainPolicy;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::sync::Mutex;

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

/// A namespace's nftables ruleset generation: which namespace (the inode
/// of its nsfs file, so one made again under the same name is another) and
/// the kernel's generation counter there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Generation {
    namespace: u64,
    id: u32,
}

impl Generation {
    /// Whether this is the generation right after `before` in the same
    /// namespace: exactly one transaction came between (the kernel skips 0
    /// when the counter wraps).
    pub fn follows(&self, before: Generation) -> bool {
        let next = match before.id.wrapping_add(1) {
            0 => 1,
            n => n,
        };
        self.namespace == before.namespace && self.id == next
    }
}

/// `NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETGEN`, and the answer's type.
const NFT_GETGEN: u16 = (10 << 8) | 16;
const NFT_NEWGEN: u16 = (10 << 8) | 15;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
/// `NFTA_GEN_ID`: the generation, a big-endian u32.
const NFTA_GEN_ID: u16 = 1;

/// The nftables ruleset generation of the calling thread's namespace (call
/// it inside `netns::within`).
pub(crate) fn generation_here() -> io::Result<Generation> {
    let namespace = std::fs::metadata("/proc/thread-self/ns/net")?.ino();
    let mut socket = Socket::new(NETLINK_NETFILTER)?;
    socket.bind(&SocketAddr::new(0, 0))?;
    // nlmsghdr (length, type, flags, sequence, port) + nfgenmsg (family
    // AF_UNSPEC, version 0, resource 0).
    let mut request = Vec::with_capacity(20);
    request.extend_from_slice(&20u32.to_ne_bytes());
    request.extend_from_slice(&NFT_GETGEN.to_ne_bytes());
    request.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    request.extend_from_slice(&1u32.to_ne_bytes());
    request.extend_from_slice(&0u32.to_ne_bytes());
    request.extend_from_slice(&[0, 0, 0, 0]);
    socket.send(&request, 0)?;
    let (answer, _) = socket.recv_from_full()?;
    let id = parse_generation(&answer).map_err(io::Error::other)??;
    Ok(Generation { namespace, id })
}

/// The generation in an `NFT_MSG_NEWGEN` answer, or the kernel's error.
fn parse_generation(buf: &[u8]) -> Result<io::Result<u32>, String> {
    let u16_at = |i: usize| buf.get(i..i + 2).map(|b| u16::from_ne_bytes([b[0], b[1]]));
    let u32_at = |i: usize| {
        buf.get(i..i + 4)
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    };
    let len = u32_at(0).ok_or("a truncated answer")? as usize;
    let kind = u16_at(4).ok_or("a truncated answer")?;
    if len > buf.len() || len < 16 {
        return Err(format!("an answer of {len} bytes in {}", buf.len()));
    }
    match kind {
        NLMSG_ERROR => {
            let errno = u32_at(16).ok_or("a truncated error")? as i32;
            Ok(Err(io::Error::from_raw_os_error(-errno)))
        }
        NFT_NEWGEN => {
            // Attributes after the nfgenmsg: length, type, value padded to 4.
            let mut at = 20;
            while at + 4 <= len {
                let alen = u16_at(at).ok_or("a truncated attribute")? as usize;
                let atype = u16_at(at + 2).ok_or("a truncated attribute")? & 0x3fff;
                if alen < 4 {
                    return Err(format!("an attribute of {alen} bytes"));
                }
                if atype == NFTA_GEN_ID && alen >= 8 {
                    let v = buf.get(at + 4..at + 8).ok_or("a truncated generation")?;
                    return Ok(Ok(u32::from_be_bytes([v[0], v[1], v[2], v[3]])));
                }
                at += (alen + 3) & !3;
            }
            Err("no generation in the answer".into())
        }
        other => Err(format!("an answer of type {other:#x}")),
    }
}

/// The generation each namespace's ruleset had just before it was last
/// listed and found to match the plan.
#[derive(Debug, Default)]
pub(crate) struct Verified(Mutex<HashMap<String, Generation>>);

impl Verified {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Generation>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the namespace's ruleset is still the one that matched.
    pub fn unchanged(&self, ns: &str, now: Generation) -> bool {
        self.map().get(ns) == Some(&now)
    }

    /// The listing made after generation `seen` matched the plan.
    pub fn matched(&self, ns: &str, seen: Generation) {
        self.map().insert(ns.to_string(), seen);
    }

    /// The namespace's tables are being replaced (or it is gone).
    pub fn forget(&self, ns: &str) {
        self.map().remove(ns);
    }
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

    /// An `NFT_MSG_NEWGEN` answer as the kernel sends it (6.1: generation,
    /// then the last committer's pid and name).
    fn newgen(id: u32) -> Vec<u8> {
        let mut attrs = Vec::new();
        for (t, v) in [(1u16, id.to_be_bytes()), (2, 77u32.to_be_bytes())] {
            attrs.extend_from_slice(&8u16.to_ne_bytes());
            attrs.extend_from_slice(&t.to_ne_bytes());
            attrs.extend_from_slice(&v);
        }
        let mut m = Vec::new();
        m.extend_from_slice(&((20 + attrs.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&NFT_NEWGEN.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&[0, 0, 0, 9]);
        m.extend_from_slice(&attrs);
        m
    }

    #[test]
    fn a_generation_answer_gives_its_id_and_an_error_answer_its_errno() {
        assert_eq!(
            parse_generation(&newgen(0x0102_0304)).unwrap().unwrap(),
            0x0102_0304
        );
        let mut err = Vec::new();
        err.extend_from_slice(&36u32.to_ne_bytes());
        err.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        err.extend_from_slice(&[0; 10]);
        err.extend_from_slice(&(-1i32).to_ne_bytes());
        err.extend_from_slice(&[0; 16]);
        let e = parse_generation(&err).unwrap().unwrap_err();
        assert_eq!(e.raw_os_error(), Some(1));
        assert!(parse_generation(&newgen(1)[..10]).is_err());
        let mut no_id = newgen(1);
        no_id.truncate(20);
        no_id[0..4].copy_from_slice(&20u32.to_ne_bytes());
        assert!(parse_generation(&no_id).is_err());
    }

    #[test]
    fn a_remembered_generation_vouches_only_for_its_namespace_and_count() {
        let v = Verified::default();
        let g = |namespace, id| Generation { namespace, id };
        v.matched("r", g(5, 7));
        assert!(v.unchanged("r", g(5, 7)));
        assert!(!v.unchanged("r", g(5, 8)), "a transaction since");
        assert!(!v.unchanged("r", g(6, 7)), "another namespace of that name");
        assert!(!v.unchanged("s", g(5, 7)));
        v.forget("r");
        assert!(!v.unchanged("r", g(5, 7)));
        // One transaction after another, in the same namespace only.
        assert!(g(5, 8).follows(g(5, 7)));
        assert!(!g(5, 9).follows(g(5, 7)), "two transactions");
        assert!(!g(6, 8).follows(g(5, 7)));
        assert!(g(5, 1).follows(g(5, u32::MAX)), "0 is skipped");
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
