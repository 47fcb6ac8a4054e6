//! Metered data transfer: what the data plane counted, attributed to the
//! account whose VPC router counted it (`docs/metering.md`).
//!
//! A [`UsageKey`] says what one kernel counter measures; a [`Usage`] is the
//! bytes and packets it counted within one hour. The data plane reads the
//! counters, the store keeps the hourly sums, and [`crate::ops::cost`] prices
//! them. Nothing here does I/O.

use crate::ctx::Timestamp;
use serde::{Deserialize, Serialize};

/// Which way traffic crossed which kind of link, seen from the counting VPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TransferKind {
    /// Left this VPC over a peering connection.
    PeeringOut,
    /// Entered this VPC over a peering connection.
    PeeringIn,
    /// Left this VPC for the internet through its internet gateway.
    InternetOut,
    /// Entered this VPC from the internet through its internet gateway.
    InternetIn,
    /// Went into a NAT gateway of this VPC (either direction: AWS charges
    /// processing on every byte the gateway handles).
    NatProcessed,
}

impl TransferKind {
    pub const ALL: [TransferKind; 5] = [
        TransferKind::PeeringOut,
        TransferKind::PeeringIn,
        TransferKind::InternetOut,
        TransferKind::InternetIn,
        TransferKind::NatProcessed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TransferKind::PeeringOut => "peering-out",
            TransferKind::PeeringIn => "peering-in",
            TransferKind::InternetOut => "internet-out",
            TransferKind::InternetIn => "internet-in",
            TransferKind::NatProcessed => "nat-processed",
        }
    }

    pub fn from_name(s: &str) -> Option<TransferKind> {
        Self::ALL.into_iter().find(|k| k.name() == s)
    }

    pub fn is_peering(self) -> bool {
        matches!(self, TransferKind::PeeringOut | TransferKind::PeeringIn)
    }
}

/// What one counter measures. The account is the owner of the VPC whose
/// router counted: each side of a peering counts (and pays for) its own side.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct UsageKey {
    pub account: String,
    /// The counting VPC's region.
    pub region: String,
    pub vpc_id: String,
    /// The peering connection, internet gateway or NAT gateway crossed.
    pub resource_id: String,
    pub kind: TransferKind,
    /// The zone of this VPC's end of the traffic (its subnet's zone); empty
    /// for internet-gateway and NAT-gateway traffic.
    pub az: String,
    /// For peering traffic: the other VPC's region and the zone of its end.
    pub peer_region: String,
    pub peer_az: String,
}

/// Bytes and packets one counter counted within one hour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub key: UsageKey,
    /// The start of the hour (UTC, on the simulated clock).
    pub hour: Timestamp,
    pub bytes: u64,
    pub packets: u64,
}

/// The start of the hour holding `t`.
pub fn hour_of(t: Timestamp) -> Timestamp {
    Timestamp(t.0.div_euclid(Timestamp::HOUR) * Timestamp::HOUR)
}

/// A calendar date (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    pub year: i64,
    pub month: u32,
    pub day: u32,
}

impl Date {
    /// Parses `YYYY-MM-DD`.
    pub fn parse(s: &str) -> Option<Date> {
        let b = s.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return None;
        }
        let num = |r: std::ops::Range<usize>| -> Option<i64> {
            let part = &s[r];
            part.bytes()
                .all(|c| c.is_ascii_digit())
                .then(|| part.parse().ok())
                .flatten()
        };
        let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let month = u32::try_from(month).ok()?;
        let day = u32::try_from(day).ok()?;
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        Some(Date { year, month, day })
    }

    /// Midnight UTC of this date.
    pub fn start(self) -> Timestamp {
        Timestamp(days_from_civil(self.year, self.month, self.day) * Timestamp::DAY)
    }

    /// The date holding `t`.
    pub fn of(t: Timestamp) -> Date {
        let (year, month, day) = civil_from_days(t.0.div_euclid(Timestamp::DAY));
        Date { year, month, day }
    }

    pub fn next_day(self) -> Date {
        Date::of(Timestamp(self.start().0 + Timestamp::DAY))
    }

    /// The first day of the next month.
    pub fn next_month(self) -> Date {
        if self.month == 12 {
            Date {
                year: self.year + 1,
                month: 1,
                day: 1,
            }
        } else {
            Date {
                year: self.year,
                month: self.month + 1,
                day: 1,
            }
        }
    }
}

impl std::fmt::Display for Date {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (proleptic Gregorian).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_through_timestamps() {
        for s in ["1970-01-01", "2000-02-29", "2024-12-31", "2026-03-01"] {
            let d = Date::parse(s).unwrap();
            assert_eq!(d.to_string(), s);
            assert_eq!(Date::of(d.start()), d);
            assert_eq!(Date::of(Timestamp(d.start().0 + Timestamp::DAY - 1)), d);
        }
        assert_eq!(
            Date::parse("2026-12-04").unwrap().start().0,
            1_796_342_400_000
        );
        assert_eq!(
            Date::parse("2024-02-28").unwrap().next_day().to_string(),
            "2024-02-29"
        );
        assert_eq!(
            Date::parse("2024-12-15").unwrap().next_month().to_string(),
            "2025-01-01"
        );
    }

    #[test]
    fn malformed_dates_are_refused() {
        for s in [
            "2023-02-29",
            "2024-13-01",
            "2024-1-01",
            "24-01-01x",
            "2024-00-10",
            "",
        ] {
            assert!(Date::parse(s).is_none(), "{s}");
        }
    }

    #[test]
    fn the_hour_of_a_time_is_its_start() {
        assert_eq!(
            hour_of(Timestamp(3_600_000 * 5 + 17)),
            Timestamp(3_600_000 * 5)
        );
    }
}
