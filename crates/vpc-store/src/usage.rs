//! Metered data transfer: hourly sums per counter key, and the last kernel
//! counter values they were computed from (so a restart resumes from them).

use crate::{Result, Store};
use rusqlite::params;
use std::collections::BTreeMap;
use vpc_model::usage::{TransferKind, Usage, UsageKey};
use vpc_model::Timestamp;

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS usage (
    account     TEXT NOT NULL,
    hour        INTEGER NOT NULL,
    region      TEXT NOT NULL,
    vpc_id      TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    kind        TEXT NOT NULL,
    az          TEXT NOT NULL,
    peer_region TEXT NOT NULL,
    peer_az     TEXT NOT NULL,
    bytes       INTEGER NOT NULL,
    packets     INTEGER NOT NULL,
    PRIMARY KEY (account, hour, region, vpc_id, resource_id, kind, az, peer_region, peer_az)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meter_baselines (
    namespace TEXT NOT NULL,
    counter   TEXT NOT NULL,
    bytes     INTEGER NOT NULL,
    packets   INTEGER NOT NULL,
    PRIMARY KEY (namespace, counter)
) WITHOUT ROWID;
";

/// A kernel counter's identity: (namespace, counter name).
pub type CounterId = (String, String);

/// A counter's last read value: (bytes, packets).
pub type CounterValue = (u64, u64);

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn uint(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl Store {
    /// Adds usage to the hourly sums and moves the counters' baselines, in one
    /// transaction: either both happen or neither, so no byte is counted twice
    /// or lost across a restart. Baselines in `forget` are removed.
    pub fn record_usage(
        &mut self,
        usage: &[Usage],
        baselines: &BTreeMap<CounterId, CounterValue>,
        forget: &[CounterId],
    ) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut add = tx.prepare_cached(
                "INSERT INTO usage (account, hour, region, vpc_id, resource_id, kind, az, peer_region, peer_az, bytes, packets)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                 ON CONFLICT DO UPDATE SET bytes = bytes + excluded.bytes, packets = packets + excluded.packets",
            )?;
            for u in usage.iter().filter(|u| u.bytes > 0 || u.packets > 0) {
                let k = &u.key;
                add.execute(params![
                    k.account,
                    u.hour.0,
                    k.region,
                    k.vpc_id,
                    k.resource_id,
                    k.kind.name(),
                    k.az,
                    k.peer_region,
                    k.peer_az,
                    int(u.bytes),
                    int(u.packets)
                ])?;
            }
            let mut set = tx.prepare_cached(
                "INSERT INTO meter_baselines (namespace, counter, bytes, packets) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (namespace, counter) DO UPDATE SET bytes = excluded.bytes, packets = excluded.packets",
            )?;
            for ((ns, c), (b, p)) in baselines {
                set.execute(params![ns, c, int(*b), int(*p)])?;
            }
            let mut del = tx.prepare_cached(
                "DELETE FROM meter_baselines WHERE namespace = ?1 AND counter = ?2",
            )?;
            for (ns, c) in forget {
                del.execute(params![ns, c])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Every counter's last recorded value.
    pub fn meter_baselines(&self) -> Result<BTreeMap<CounterId, CounterValue>> {
        let mut stmt = self
            .conn
            .prepare("SELECT namespace, counter, bytes, packets FROM meter_baselines")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                (r.get::<_, String>(0)?, r.get::<_, String>(1)?),
                (uint(r.get(2)?), uint(r.get(3)?)),
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Hourly usage within `[from, to)`: one account's, or everyone's.
    pub fn usage(
        &self,
        account: Option<&str>,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<Usage>> {
        let mut stmt = self.conn.prepare(
            "SELECT account, hour, region, vpc_id, resource_id, kind, az, peer_region, peer_az, bytes, packets
             FROM usage WHERE (?1 IS NULL OR account = ?1) AND hour >= ?2 AND hour < ?3
             ORDER BY account, hour, resource_id, kind, az, peer_region, peer_az",
        )?;
        let rows = stmt.query_map(params![account, from.0, to.0], |r| {
            let kind: String = r.get(5)?;
            Ok((
                kind,
                Usage {
                    key: UsageKey {
                        account: r.get(0)?,
                        region: r.get(2)?,
                        vpc_id: r.get(3)?,
                        resource_id: r.get(4)?,
                        kind: TransferKind::PeeringOut,
                        az: r.get(6)?,
                        peer_region: r.get(7)?,
                        peer_az: r.get(8)?,
                    },
                    hour: Timestamp(r.get(1)?),
                    bytes: uint(r.get(9)?),
                    packets: uint(r.get(10)?),
                },
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (kind, mut u) = row?;
            let Some(k) = TransferKind::from_name(&kind) else {
                return Err(crate::StoreError::Invalid(format!(
                    "unknown usage kind {kind:?}"
                )));
            };
            u.key.kind = k;
            out.push(u);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(account: &str) -> UsageKey {
        UsageKey {
            account: account.into(),
            region: "us-east-1".into(),
            vpc_id: "vpc-1".into(),
            resource_id: "pcx-1".into(),
            kind: TransferKind::PeeringOut,
            az: "us-east-1a".into(),
            peer_region: "us-east-1".into(),
            peer_az: "us-east-1b".into(),
        }
    }

    #[test]
    fn usage_adds_up_and_baselines_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        let u = |account: &str, hour: i64, bytes| Usage {
            key: key(account),
            hour: Timestamp(hour * Timestamp::HOUR),
            bytes,
            packets: 1,
        };
        let mut base = BTreeMap::new();
        base.insert(("ns".to_string(), "c1".to_string()), (100, 1));
        base.insert(("ns".to_string(), "c2".to_string()), (7, 7));
        s.record_usage(
            &[u("111111111111", 1, 100), u("222222222222", 1, 5)],
            &base,
            &[],
        )
        .unwrap();
        base.insert(("ns".to_string(), "c1".to_string()), (150, 2));
        base.remove(&("ns".to_string(), "c2".to_string()));
        s.record_usage(
            &[u("111111111111", 1, 50), u("111111111111", 2, 9)],
            &base,
            &[("ns".into(), "c2".into())],
        )
        .unwrap();
        drop(s);
        let s = Store::open(dir.path()).unwrap();
        let mine = s
            .usage(
                Some("111111111111"),
                Timestamp(0),
                Timestamp(10 * Timestamp::HOUR),
            )
            .unwrap();
        assert_eq!(mine.len(), 2);
        assert_eq!((mine[0].bytes, mine[0].packets), (150, 2));
        assert!(mine.iter().all(|u| u.key.account == "111111111111"));
        let first_hour = s
            .usage(None, Timestamp(0), Timestamp(2 * Timestamp::HOUR))
            .unwrap();
        assert_eq!(first_hour.len(), 2, "both accounts, first hour only");
        let b = s.meter_baselines().unwrap();
        assert_eq!(b.len(), 1);
        assert_eq!(b[&("ns".to_string(), "c1".to_string())], (150, 2));
    }
}
