//! Metered usage in etcd (`docs/metering.md`, `docs/cluster.md`).
//!
//! Keys, under the prefix `P`:
//!
//! | key                                             | value                          |
//! |-------------------------------------------------|--------------------------------|
//! | `P/usage/<hour>/<account>/<kind>/<vpc>/<resource>/<region>/<az>/<peer region>/<peer az>` | the hourly sum, a `Usage` in JSON |
//! | `P/meter/<namespace>/<counter>`                 | a counter's baseline, `[bytes, packets]` |
//! | `P/meter-writer/<writer>`                       | the last record of one meter   |
//!
//! `<hour>` is the hour's start in milliseconds, 16 digits, so a range of
//! hours is a range of keys. Several agents add to the same sums (each host
//! meters the routers it holds), and etcd has no increment: one record is a
//! read of the sums it touches and then one transaction that writes the new
//! sums and the baselines only if none of those sums changed since the read
//! (their `mod_revision`s); a meter that lost the race reads again. The
//! transaction also writes a token under the meter's own key, so a retry
//! after a lost answer finds out whether the first attempt landed and never
//! adds the same usage twice.

use super::{block, commit_token, etcd_error, range_end, EtcdStore, CALL_TIMEOUT, RETRIES};
use crate::{CounterId, CounterValue, Result, StoreError};
use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp, TxnOpResponse};
use std::collections::BTreeMap;
use std::time::Duration;
use vpc_model::usage::{Usage, UsageKey};
use vpc_model::Timestamp;

fn hour_key(prefix: &str, hour: Timestamp) -> String {
    format!("{prefix}/usage/{:016}", hour.0.max(0))
}

fn usage_key(prefix: &str, hour: Timestamp, k: &UsageKey) -> String {
    format!(
        "{}/{}/{}/{}/{}/{}/{}/{}/{}",
        hour_key(prefix, hour),
        k.account,
        k.kind.name(),
        k.vpc_id,
        k.resource_id,
        k.region,
        k.az,
        k.peer_region,
        k.peer_az
    )
}

fn baseline_key(prefix: &str, (ns, counter): &CounterId) -> String {
    format!("{prefix}/meter/{ns}/{counter}")
}

/// Sums the usage of one record by key and hour (a poll may hold several
/// counters that measure the same thing).
fn merged(usage: &[Usage]) -> BTreeMap<(Timestamp, UsageKey), (u64, u64)> {
    let mut out: BTreeMap<(Timestamp, UsageKey), (u64, u64)> = BTreeMap::new();
    for u in usage.iter().filter(|u| u.bytes > 0 || u.packets > 0) {
        let e = out.entry((u.hour, u.key.clone())).or_default();
        e.0 = e.0.saturating_add(u.bytes);
        e.1 = e.1.saturating_add(u.packets);
    }
    out
}

impl EtcdStore {
    pub(super) fn record_usage_inner(
        &self,
        usage: &[Usage],
        baselines: &BTreeMap<CounterId, CounterValue>,
        forget: &[CounterId],
    ) -> Result<()> {
        let sums = merged(usage);
        let keys: Vec<String> = sums
            .keys()
            .map(|(h, k)| usage_key(&self.prefix, *h, k))
            .collect();
        let mut fixed: Vec<TxnOp> = Vec::new();
        for (id, (b, p)) in baselines {
            let body = serde_json::to_string(&[b, p]).expect("numbers serialise");
            fixed.push(TxnOp::put(baseline_key(&self.prefix, id), body, None));
        }
        for id in forget {
            fixed.push(TxnOp::delete(baseline_key(&self.prefix, id), None));
        }
        let token = commit_token();
        let writer_key = format!("{}/meter-writer/{}", self.prefix, self.writer);
        fixed.push(TxnOp::put(writer_key.clone(), token.clone(), None));
        let c = self.client.clone();
        let sums: Vec<((Timestamp, UsageKey), (u64, u64))> = sums.into_iter().collect();
        block(CALL_TIMEOUT * 3, async move {
            let mut attempt = 0u32;
            let mut sent = false;
            loop {
                let round = async {
                    let mut c = c.clone();
                    if sent {
                        // An earlier attempt may have landed before its
                        // answer was lost: its token says so.
                        let w = c.get(writer_key.clone(), None).await.map_err(etcd_error)?;
                        if w.kvs()
                            .first()
                            .is_some_and(|kv| kv.value() == token.as_bytes())
                        {
                            return Ok(true);
                        }
                    }
                    // Read the sums this record adds to.
                    let read = Txn::new().and_then(
                        keys.iter()
                            .map(|k| TxnOp::get(k.clone(), None))
                            .collect::<Vec<_>>(),
                    );
                    let answers = c.txn(read).await.map_err(etcd_error)?;
                    let mut compares = Vec::new();
                    let mut ops = fixed.clone();
                    for ((((hour, key), (bytes, packets)), k), answer) in
                        sums.iter().zip(&keys).zip(answers.op_responses())
                    {
                        let TxnOpResponse::Get(got) = answer else {
                            return Err(StoreError::Etcd("a read answered as a write".into()));
                        };
                        let (had, revision) = match got.kvs().first() {
                            Some(kv) => (
                                serde_json::from_slice::<Usage>(kv.value()).map_err(|e| {
                                    StoreError::Invalid(format!("unreadable usage at {k}: {e}"))
                                })?,
                                kv.mod_revision(),
                            ),
                            None => (
                                Usage {
                                    key: key.clone(),
                                    hour: *hour,
                                    bytes: 0,
                                    packets: 0,
                                },
                                0,
                            ),
                        };
                        compares.push(Compare::mod_revision(k.clone(), CompareOp::Equal, revision));
                        let sum = Usage {
                            bytes: had.bytes.saturating_add(*bytes),
                            packets: had.packets.saturating_add(*packets),
                            ..had
                        };
                        let body = serde_json::to_string(&sum).expect("usage serialises");
                        ops.push(TxnOp::put(k.clone(), body, None));
                    }
                    sent = true;
                    let r = c
                        .txn(Txn::new().when(compares).and_then(ops))
                        .await
                        .map_err(etcd_error)?;
                    Ok(r.succeeded())
                };
                match round.await {
                    Ok(true) => return Ok(()),
                    // Another meter added to one of the sums: read again.
                    Ok(false) | Err(StoreError::Etcd(_)) if attempt < RETRIES => {
                        attempt += 1;
                        tokio::time::sleep(Duration::from_millis(
                            (20 * u64::from(attempt)).min(300),
                        ))
                        .await;
                    }
                    Ok(false) => {
                        return Err(StoreError::Etcd(
                            "the usage sums kept changing; not recorded".into(),
                        ))
                    }
                    Err(e) => return Err(e),
                }
            }
        })
    }

    pub(super) fn meter_baselines_inner(
        &self,
        namespace_prefix: &str,
    ) -> Result<BTreeMap<CounterId, CounterValue>> {
        let base = format!("{}/meter/", self.prefix);
        let start = format!("{base}{namespace_prefix}");
        let c = self.client.clone();
        block(CALL_TIMEOUT, async move {
            let end = range_end(&start);
            let r = super::get_retrying(&c, start, Some(GetOptions::new().with_range(end))).await?;
            let mut out = BTreeMap::new();
            for kv in r.kvs() {
                let key = String::from_utf8_lossy(kv.key());
                let Some((ns, counter)) = key.strip_prefix(&base).and_then(|k| k.split_once('/'))
                else {
                    continue;
                };
                let Ok([b, p]) = serde_json::from_slice::<[u64; 2]>(kv.value()) else {
                    tracing::warn!(key = %key, "unreadable meter baseline");
                    continue;
                };
                out.insert((ns.to_string(), counter.to_string()), (b, p));
            }
            Ok(out)
        })
    }

    pub(super) fn usage_inner(
        &self,
        account: Option<&str>,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<Usage>> {
        if to.0 <= from.0 {
            return Ok(Vec::new());
        }
        let (start, end) = (hour_key(&self.prefix, from), hour_key(&self.prefix, to));
        let c = self.client.clone();
        let mut out: Vec<Usage> = block(CALL_TIMEOUT, async move {
            let r = super::get_retrying(&c, start, Some(GetOptions::new().with_range(end))).await?;
            r.kvs()
                .iter()
                .map(|kv| {
                    serde_json::from_slice::<Usage>(kv.value()).map_err(|e| {
                        StoreError::Invalid(format!(
                            "unreadable usage at {}: {e}",
                            String::from_utf8_lossy(kv.key())
                        ))
                    })
                })
                .collect()
        })?;
        // `from` may fall inside an hour: only sums of hours that start in
        // the range, as the SQLite store answers.
        out.retain(|u| account.is_none_or(|a| u.key.account == a) && u.hour >= from && u.hour < to);
        out.sort_by(|a, b| {
            (
                &a.key.account,
                a.hour,
                &a.key.resource_id,
                a.key.kind,
                &a.key.az,
                &a.key.peer_region,
                &a.key.peer_az,
            )
                .cmp(&(
                    &b.key.account,
                    b.hour,
                    &b.key.resource_id,
                    b.key.kind,
                    &b.key.az,
                    &b.key.peer_region,
                    &b.key.peer_az,
                ))
        });
        Ok(out)
    }
}
