//! The schedule of a scheduled service (a cron job): when its runs are due. Cron
//! expressions take 5 fields (minute precision, as crontab) or 6 with seconds first;
//! times are UTC.

use chrono::{DateTime, Utc};
use std::str::FromStr;

/// Most due times looked through when catching up after an outage; more missed runs
/// than this still start only one.
const MAX_CATCH_UP: usize = 100_000;

/// A parsed schedule.
#[derive(Debug, Clone)]
pub struct CronSchedule(cron::Schedule);

impl CronSchedule {
    /// Parse `expr` (5 or 6 fields); the error says why.
    pub fn parse(expr: &str) -> Result<Self, String> {
        let fields = expr.split_whitespace().count();
        let full = match fields {
            5 => format!("0 {expr}"),
            6 => expr.to_string(),
            n => {
                return Err(format!(
                    "{expr:?} has {n} fields; give 5 (minute hour day month weekday) or 6 (seconds first)"
                ))
            }
        };
        cron::Schedule::from_str(&full)
            .map(Self)
            .map_err(|e| format!("{expr:?} is not a cron expression: {e}"))
    }

    /// The latest due time in `(since, now]`, if any (several missed ones count as
    /// one), and the next due time after `now`.
    pub fn due(
        &self,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
        let mut latest = None;
        for t in self.0.after(&since).take(MAX_CATCH_UP) {
            if t > now {
                return (latest, Some(t));
            }
            latest = Some(t);
        }
        (latest, self.0.after(&now).next())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, h, m, s)
            .single()
            .expect("valid time")
    }

    #[test]
    fn five_fields_are_crontab_and_six_have_seconds() {
        let nightly = CronSchedule::parse("0 2 * * *").expect("crontab");
        assert_eq!(
            nightly.due(at(1, 0, 0), at(1, 30, 0)),
            (None, Some(at(2, 0, 0)))
        );
        let every_2s = CronSchedule::parse("*/2 * * * * *").expect("seconds");
        assert_eq!(
            every_2s.due(at(1, 0, 0), at(1, 0, 3)),
            (Some(at(1, 0, 2)), Some(at(1, 0, 4)))
        );
        assert!(CronSchedule::parse("* * *")
            .unwrap_err()
            .contains("3 fields"));
        assert!(CronSchedule::parse("61 * * * *").is_err());
    }

    #[test]
    fn runs_missed_during_an_outage_are_one_run() {
        let hourly = CronSchedule::parse("0 * * * *").expect("hourly");
        // Down from 01:30 to 05:10: 02:00, 03:00, 04:00 and 05:00 were missed.
        let (due, next) = hourly.due(at(1, 30, 0), at(5, 10, 0));
        assert_eq!(due, Some(at(5, 0, 0)), "only the latest runs");
        assert_eq!(next, Some(at(6, 0, 0)));
    }
}
