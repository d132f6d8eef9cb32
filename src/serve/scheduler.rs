//! `chunkdump serve --schedule EXPR`: EventBridge Scheduler's expressions, run in the
//! server process. Each tick goes through [`crate::service::schedule::run_tick`], exactly
//! what the scheduler's target runs in AWS.
//!
//! Expressions (UTC, as EventBridge Scheduler reads them):
//! - `rate(N minute|minutes|hour|hours|day|days)`: every N units, first tick one period
//!   after the server starts;
//! - `cron(minutes hours day-of-month month day-of-week year)`: fields as in
//!   EventBridge (`?` for "any", days of week 1-7 = SUN-SAT or names), e.g.
//!   `cron(15 3 * * ? *)` every day at 03:15.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::drill::auto::{drill_latest, DrillPorts, LatestScope};
use crate::drill::DrillSettings;
use crate::service::schedule::{run_tick, ScheduledStart};
use crate::service::Service;

/// A parsed schedule expression.
#[derive(Debug, Clone)]
pub enum ScheduleExpr {
    Rate(Duration),
    Cron(Box<cron::Schedule>),
}

impl FromStr for ScheduleExpr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Some(body) = s.strip_prefix("rate(").and_then(|r| r.strip_suffix(')')) {
            let (n, unit) = body
                .trim()
                .split_once(' ')
                .ok_or_else(|| format!("{s}: expected rate(N unit)"))?;
            let n: u64 = n
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{s}: N must be a positive whole number"))?;
            let unit = match unit.trim() {
                "minute" | "minutes" => 60,
                "hour" | "hours" => 3600,
                "day" | "days" => 86_400,
                other => {
                    return Err(format!(
                        "{s}: unknown unit {other:?} (minutes, hours or days)"
                    ))
                }
            };
            return Ok(ScheduleExpr::Rate(Duration::from_secs(n * unit)));
        }
        if let Some(body) = s.strip_prefix("cron(").and_then(|r| r.strip_suffix(')')) {
            let fields: Vec<&str> = body.split_whitespace().collect();
            if fields.len() != 6 {
                return Err(format!(
                    "{s}: cron needs 6 fields (minutes hours day-of-month month day-of-week year)"
                ));
            }
            // The cron crate wants seconds first and `*` where EventBridge writes `?`.
            let converted = std::iter::once("0")
                .chain(fields.iter().map(|f| if *f == "?" { "*" } else { f }))
                .collect::<Vec<_>>()
                .join(" ");
            let schedule = cron::Schedule::from_str(&converted).map_err(|e| format!("{s}: {e}"))?;
            return Ok(ScheduleExpr::Cron(Box::new(schedule)));
        }
        Err(format!(
            "{s:?}: expected rate(N unit) or cron(m h dom mon dow year)"
        ))
    }
}

impl ScheduleExpr {
    /// The first tick strictly after `after` (`started` anchors rates); `None` if a cron
    /// expression never fires again.
    pub fn next_after(
        &self,
        after: DateTime<Utc>,
        started: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        match self {
            ScheduleExpr::Rate(period) => {
                let period = chrono::Duration::from_std(*period).ok()?;
                let elapsed = after.signed_duration_since(started);
                let periods = elapsed
                    .num_milliseconds()
                    .div_euclid(period.num_milliseconds().max(1))
                    + 1;
                Some(started + period * periods as i32)
            }
            ScheduleExpr::Cron(schedule) => schedule.after(&after).next(),
        }
    }
}

/// Runs `tick` on `expr` until the process ends. With `"drillLatestEveryHours": N`,
/// each tick first drills the latest completed dump of each of the schedule's databases
/// whose last drill is N hours old or more (see [`crate::drill::auto::drill_latest`]).
pub async fn run_schedule(
    state: Service,
    expr: ScheduleExpr,
    tick: ScheduledStart,
    drills: DrillSettings,
) {
    let started = Utc::now();
    let mut last = started;
    while let Some(next) = expr.next_after(last, started) {
        tracing::info!(schedule = %tick.name, next = %next.to_rfc3339(), "next scheduled dump");
        let wait = next
            .signed_duration_since(Utc::now())
            .to_std()
            .unwrap_or_default();
        tokio::time::sleep(wait).await;
        if let Some(every) = tick.drill_latest_every() {
            drill_latest_of(&state, &tick.name, every, &drills).await;
        }
        run_tick(&state, tick.clone()).await;
        last = next;
    }
    tracing::warn!(schedule = %tick.name, "the schedule never fires again");
}

/// Drills the latest dump of each database schedule `name` dumps, if due `every`.
pub async fn drill_latest_of(
    state: &Service,
    name: &str,
    every: std::time::Duration,
    drills: &DrillSettings,
) -> Vec<crate::drill::DrillReport> {
    let ports = DrillPorts {
        objects: state.objects.as_ref(),
        progress: state.progress.as_ref(),
        callbacks: state
            .settings
            .notifier
            .as_ref()
            .map(|n| n as &dyn crate::ports::CallbackSender),
    };
    let scope = LatestScope {
        schedule: Some(name.to_string()),
    };
    match drill_latest(ports, &scope, every, drills).await {
        Ok(reports) => reports,
        Err(e) => {
            tracing::warn!(schedule = %name, error = %e, "scheduled drills could not run");
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn rates_and_eventbridge_crons() {
        let t0 = Utc.with_ymd_and_hms(2026, 11, 24, 10, 0, 0).unwrap();
        let rate: ScheduleExpr = "rate(5 minutes)".parse().unwrap();
        assert_eq!(
            rate.next_after(t0, t0),
            Some(t0 + chrono::Duration::minutes(5))
        );
        assert_eq!(
            rate.next_after(t0 + chrono::Duration::minutes(7), t0),
            Some(t0 + chrono::Duration::minutes(10))
        );
        let daily: ScheduleExpr = "cron(15 3 * * ? *)".parse().unwrap();
        assert_eq!(
            daily.next_after(t0, t0),
            Some(Utc.with_ymd_and_hms(2026, 11, 25, 3, 15, 0).unwrap())
        );
        // Day of week 2 is Monday in EventBridge (1 = SUN); 2026-11-24 is a Tuesday.
        let mondays: ScheduleExpr = "cron(0 4 ? * 2 *)".parse().unwrap();
        assert_eq!(
            mondays.next_after(t0, t0),
            Some(Utc.with_ymd_and_hms(2026, 11, 30, 4, 0, 0).unwrap())
        );
        let weekdays: ScheduleExpr = "cron(30 1 ? * MON-FRI *)".parse().unwrap();
        assert_eq!(
            weekdays.next_after(t0, t0),
            Some(Utc.with_ymd_and_hms(2026, 11, 25, 1, 30, 0).unwrap())
        );
        for bad in [
            "rate(0 days)",
            "rate(5 weeks)",
            "cron(* * *)",
            "every day",
            "cron(61 3 * * ? *)",
        ] {
            assert!(bad.parse::<ScheduleExpr>().is_err(), "{bad} accepted");
        }
    }
}
