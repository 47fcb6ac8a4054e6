//! `vpcd cost`: metered data transfer and what it costs, per peering (and
//! gateway), as a table or CSV, read from a data directory's store or a
//! cluster's (`--store etcd://…`, where the hosts' agents record it).

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use vpc_model::ops::cost::{self, CostRow, RateTable};
use vpc_model::usage::{Date, TransferKind};

#[derive(clap::Args, Debug)]
pub struct CostArgs {
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Only this account's side (default: every account, each its own side).
    #[arg(long)]
    pub account: Option<String>,
    /// First day, YYYY-MM-DD (default: the first of this month).
    #[arg(long)]
    pub start: Option<String>,
    /// Day after the last, YYYY-MM-DD (default: tomorrow).
    #[arg(long)]
    pub end: Option<String>,
    /// The rate table to price with (default: the one vpcd ships).
    #[arg(long)]
    pub rates: Option<PathBuf>,
    /// Comma-separated values instead of a table.
    #[arg(long)]
    pub csv: bool,
    #[command(flatten)]
    pub store: crate::store_args::StoreArgs,
}

/// The rate table in `path`, or the one in the repository.
pub fn load_rates(path: Option<&Path>) -> Result<RateTable> {
    let text = match path {
        Some(p) => {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?
        }
        None => cost::DEFAULT_RATES.to_string(),
    };
    RateTable::parse(&text).map_err(|e| {
        anyhow::anyhow!(
            "rate table {}: {e}",
            path.map_or("(built in)".into(), |p| p.display().to_string())
        )
    })
}

fn day(s: Option<&str>, default: Date, what: &str) -> Result<Date> {
    match s {
        None => Ok(default),
        Some(s) => match Date::parse(s) {
            Some(d) => Ok(d),
            None => bail!("--{what} {s:?} is not a date (YYYY-MM-DD)"),
        },
    }
}

fn direction(r: &CostRow) -> String {
    let k = &r.key;
    match k.kind {
        TransferKind::PeeringOut => format!("{} -> {} {}", k.az, k.peer_region, k.peer_az),
        TransferKind::PeeringIn => format!("{} <- {} {}", k.az, k.peer_region, k.peer_az),
        TransferKind::InternetOut => "to the internet".into(),
        TransferKind::InternetIn => "from the internet".into(),
        TransferKind::NatProcessed => "processed".into(),
    }
}

pub fn run(a: CostArgs, dir: &Path) -> Result<()> {
    let rates = load_rates(a.rates.as_deref())?;
    let mut store = a.store.open_reader(dir)?;
    let today = Date::of(crate::store_args::store_now(store.as_mut())?);
    let start = day(a.start.as_deref(), Date { day: 1, ..today }, "start")?;
    let end = day(a.end.as_deref(), today.next_day(), "end")?;
    if start >= end {
        bail!("--start {start} must be before --end {end}");
    }
    let usage = store.usage(a.account.as_deref(), start.start(), end.start())?;
    let rows = cost::summarize(&usage, start.start(), end.start(), &rates);
    let header = [
        "account",
        "resource",
        "vpc",
        "kind",
        "zones",
        "bytes",
        "packets",
        "usage_type",
        "rate_per_gb",
        "cost_usd",
    ];
    let cells = |r: &CostRow| -> Vec<String> {
        vec![
            r.key.account.clone(),
            r.key.resource_id.clone(),
            r.key.vpc_id.clone(),
            r.key.kind.name().to_string(),
            direction(r),
            r.bytes.to_string(),
            r.packets.to_string(),
            r.charge
                .usage_type
                .clone()
                .unwrap_or_else(|| "(same zone: free)".into()),
            cost::format_amount(r.charge.rate),
            format!("{:.6}", r.charge.cost),
        ]
    };
    if a.csv {
        println!("{}", header.join(","));
        for r in &rows {
            let line: Vec<String> = cells(r)
                .into_iter()
                .map(|c| {
                    if c.contains([',', '"']) {
                        format!("\"{}\"", c.replace('"', "\"\""))
                    } else {
                        c
                    }
                })
                .collect();
            println!("{}", line.join(","));
        }
        return Ok(());
    }
    println!(
        "data transfer {start} to {end} (end exclusive), {}",
        rates.currency
    );
    if rows.is_empty() {
        println!("no metered traffic in this period");
        return Ok(());
    }
    let table: Vec<Vec<String>> =
        std::iter::once(header.iter().map(|h| h.to_uppercase()).collect())
            .chain(rows.iter().map(cells))
            .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| table.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    for r in &table {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, w))| {
                if (5..=6).contains(&i) || i >= 8 {
                    format!("{c:>w$}")
                } else {
                    format!("{c:<w$}")
                }
            })
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
    let mut totals: std::collections::BTreeMap<&str, f64> = std::collections::BTreeMap::new();
    for r in &rows {
        *totals.entry(r.key.account.as_str()).or_default() += r.charge.cost;
    }
    for (acct, total) in totals {
        println!("total for {acct}: {total:.6} {}", rates.currency);
    }
    Ok(())
}
