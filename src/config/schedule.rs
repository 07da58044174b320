//! When a monitor runs and when its alerts may go out: a cron schedule read in the monitor's
//! `timezone` (IANA; a daily 09:00 stays 09:00 local across a DST change), and `quiet_hours`,
//! local windows in which runs go on but alerts are held to the window's end or dropped.
//! Pure: every function takes the time it is asked about.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use serde::Serialize;

use super::ctx::{Ctx, Fields};
use super::monitor::{choice, required};
use super::node::{Node, Value};
use super::values::{list, text};

/// What each cron field takes, for an error.
const FIELDS: &str = "(fields: [second 0-59] minute 0-59, hour 0-23, day of month 1-31, month 1-12 or JAN-DEC, \
day of week 0-7 or SUN-SAT)";

/// A cron schedule, validated; always kept in the 6-field form (seconds first), read in `tz`.
#[derive(Debug, Clone, Serialize)]
pub struct Schedule {
    /// As written in the file.
    pub source: String,
    /// Normalised to 6 fields for tokio-cron-scheduler.
    pub six_fields: String,
    #[serde(skip)]
    pub cron: croner::Cron,
    /// The zone its fields are read in (the monitor's `timezone`; UTC by default).
    #[serde(skip)]
    pub tz: Tz,
}

impl Schedule {
    pub fn parse(source: &str) -> Result<Self, String> {
        let source = source.trim();
        let fields: Vec<&str> = source.split_whitespace().collect();
        let six_fields = match fields.len() {
            5 => format!("0 {}", fields.join(" ")),
            6 => fields.join(" "),
            1 if source.starts_with('@') => source.to_owned(),
            n => {
                return Err(format!(
                    "expected a cron expression of 5 fields (minute hour day month weekday) or 6 (seconds first), got {n} field{}",
                    if n == 1 { "" } else { "s" }
                ));
            }
        };
        let parser = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Optional)
            .year(croner::parser::Year::Disallowed)
            .build();
        let cron = parser
            .parse(&six_fields)
            .map_err(|e| format!("invalid cron expression \"{source}\": {e} {FIELDS}"))?;
        // A date that does not exist (31 February) is valid cron: the monitor would never run.
        let since = DateTime::<Utc>::from_timestamp(946_684_800, 0).expect("2000-01-01");
        if cron.find_next_occurrence(&since, false).is_err() {
            return Err(format!("the schedule \"{source}\" never fires (no date matches it)"));
        }
        Ok(Self { source: source.to_owned(), six_fields, cron, tz: Tz::UTC })
    }

    /// The same schedule read in `tz`.
    pub fn in_zone(self, tz: Tz) -> Self {
        Self { tz, ..self }
    }

    /// What identifies the schedule's firing times: its fields and its zone.
    pub fn key(&self) -> String {
        format!("{} ({})", self.source, self.tz.name())
    }

    /// The latest fire time at or before `at`: the schedule's own instant, to the second. (The
    /// search keeps the sub-second part of a time within a matching second; a tick recorded
    /// with it would not collide with the same tick recorded by another replica.)
    pub fn previous_fire(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        use chrono::DurationRound;
        let at = at.duration_trunc(TimeDelta::seconds(1)).ok()?.with_timezone(&self.tz);
        self.cron.find_previous_occurrence(&at, true).ok().map(|t| t.with_timezone(&Utc))
    }

    /// The next `n` fire times strictly after `after`.
    pub fn next_fires(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        self.cron
            .clone()
            .iter_after(after.with_timezone(&self.tz))
            .take(n)
            .map(|t| t.with_timezone(&Utc))
            .collect()
    }
}

/// What a quiet window does to the alerts that fall in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QuietAction {
    /// Sent when the window ends.
    Hold,
    /// Not sent (the run and its verdict stay; a recovery is still sent, as under a mute).
    Skip,
}

/// A local window, e.g. 22:00–07:00 (it may run past midnight), on the days it starts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuietWindow {
    pub from: NaiveTime,
    pub to: NaiveTime,
    /// The days the window starts on; every day when empty.
    pub days: Vec<Weekday>,
    pub alerts: QuietAction,
}

/// The quiet window that `at` falls in: when it ends and what it does. Of overlapping windows,
/// the one that ends last decides the end; any `skip` among them drops.
pub fn quiet_at(windows: &[QuietWindow], tz: Tz, at: DateTime<Utc>) -> Option<(DateTime<Utc>, QuietAction)> {
    let local = at.with_timezone(&tz).naive_local();
    let mut found: Option<(NaiveDateTime, QuietAction)> = None;
    for w in windows {
        for back in [1, 0] {
            let day: NaiveDate = local.date() - TimeDelta::days(back);
            if !w.days.is_empty() && !w.days.contains(&day.weekday()) {
                continue;
            }
            let start = day.and_time(w.from);
            let end =
                if w.to <= w.from { (day + TimeDelta::days(1)).and_time(w.to) } else { day.and_time(w.to) };
            if start <= local && local < end {
                let action = match found {
                    Some((_, QuietAction::Skip)) => QuietAction::Skip,
                    _ => w.alerts,
                };
                let end = found.map_or(end, |(e, _)| e.max(end));
                found = Some((end, action));
            }
        }
    }
    let (end, action) = found?;
    // A wall time that does not exist (the spring change skips it) ends the window an hour on.
    let utc = tz
        .from_local_datetime(&end)
        .earliest()
        .or_else(|| tz.from_local_datetime(&(end + TimeDelta::hours(1))).earliest())?
        .with_timezone(&Utc);
    Some((utc, action))
}

/// `timezone: Europe/Berlin`.
pub(crate) fn timezone(ctx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<Tz> {
    let s = text(ctx, node, path)?;
    match s.trim().parse::<Tz>() {
        Ok(tz) => Some(tz),
        Err(_) => {
            ctx.expected(node, path, "an IANA time zone name like \"Europe/Berlin\" or \"UTC\"");
            None
        }
    }
}

/// `quiet_hours: {from: "22:00", to: "07:00", days: [mon, …], alerts: hold|skip}`, or a list
/// of them.
pub(crate) fn quiet_hours(ctx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<Vec<QuietWindow>> {
    let items: Vec<(&Node, String)> = match &node.value {
        Value::Map(_) => vec![(node, path.to_owned())],
        _ => list(ctx, node, path, "quiet windows {from, to, days, alerts}")?
            .iter()
            .enumerate()
            .map(|(i, n)| (n, format!("{path}[{i}]")))
            .collect(),
    };
    let windows: Vec<Option<QuietWindow>> = items.into_iter().map(|(n, p)| window(ctx, n, &p)).collect();
    windows.into_iter().collect()
}

fn window(ctx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<QuietWindow> {
    let mut f = Fields::of(ctx, node, path)?;
    let time = |ctx: &mut Ctx<'_>, f: &mut Fields<'_>, key: &str| {
        let (n, p) = required(ctx, f, node.pos, key, "a local time like \"22:00\"")?;
        let s = text(ctx, n, &p)?;
        NaiveTime::parse_from_str(s.trim(), "%H:%M")
            .map_err(|_| ctx.expected(n, &p, "a local time like \"22:00\" (24-hour, HH:MM)"))
            .ok()
    };
    let from = time(ctx, &mut f, "from");
    let to = time(ctx, &mut f, "to");
    let days = match f.opt("days") {
        Some(n) => weekdays(ctx, n, &f.path("days")),
        None => Some(Vec::new()),
    };
    let alerts = match f.opt("alerts") {
        Some(n) => {
            choice(ctx, n, &f.path("alerts"), &[("hold", QuietAction::Hold), ("skip", QuietAction::Skip)])
        }
        None => Some(QuietAction::Hold),
    };
    f.finish(ctx, &["from", "to", "days", "alerts"]);
    let (from, to) = (from?, to?);
    if from == to {
        ctx.error(node.pos, path, "from and to are the same time: the window would be empty");
        return None;
    }
    Some(QuietWindow { from, to, days: days?, alerts: alerts? })
}

fn weekdays(ctx: &mut Ctx<'_>, node: &Node, path: &str) -> Option<Vec<Weekday>> {
    let items = list(ctx, node, path, "days like mon, tue … sun")?;
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let day = text(ctx, item, &p).and_then(|s| match s.trim().parse::<Weekday>() {
            Ok(d) => Some(d),
            Err(_) => {
                ctx.expected(item, &p, "a day: mon, tue, wed, thu, fri, sat or sun");
                None
            }
        });
        out.push(day?);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn hm(s: &str) -> NaiveTime {
        NaiveTime::parse_from_str(s, "%H:%M").unwrap()
    }

    #[test]
    fn schedules_accept_five_and_six_fields() {
        let five = Schedule::parse("*/5 * * * *").unwrap();
        assert_eq!(five.six_fields, "0 */5 * * * *");
        let six = Schedule::parse("30 0 9 * * MON-FRI").unwrap();
        assert_eq!(six.six_fields, "30 0 9 * * MON-FRI");
        let start = at("2026-01-01T00:01:00Z");
        let fires = five.next_fires(start, 3);
        let fmt: Vec<String> = fires.iter().map(|t| t.format("%H:%M:%S").to_string()).collect();
        assert_eq!(fmt, ["00:05:00", "00:10:00", "00:15:00"]);
        assert!(Schedule::parse("61 * * * *").is_err());
        assert!(Schedule::parse("* * *").is_err());
    }

    /// A restart at …:00.754 must record the tick of …:00.000, the one the other replicas wrote
    /// (issue 14): the schedule's own instant, never the moment of the search.
    #[test]
    fn the_previous_fire_is_the_schedules_own_instant() {
        let every_minute = Schedule::parse("* * * * *").unwrap();
        for now in ["2026-01-01T12:00:00.754Z", "2026-01-01T12:00:59.999Z", "2026-01-01T12:00:00Z"] {
            assert_eq!(every_minute.previous_fire(at(now)), Some(at("2026-01-01T12:00:00Z")), "{now}");
        }
        let every_second = Schedule::parse("* * * * * *").unwrap();
        assert_eq!(
            every_second.previous_fire(at("2026-01-01T12:00:07.5Z")),
            Some(at("2026-01-01T12:00:07Z"))
        );
    }

    /// A daily 09:00 in Berlin is 08:00 UTC in winter and 07:00 UTC in summer, on each side of
    /// both changes (29 March and 25 October 2026).
    #[test]
    fn a_local_schedule_keeps_its_wall_time_across_dst() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let daily = Schedule::parse("0 9 * * *").unwrap().in_zone(berlin);
        let fires = daily.next_fires(at("2026-03-27T12:00:00Z"), 4);
        let utc: Vec<String> = fires.iter().map(|t| t.format("%m-%d %H:%M").to_string()).collect();
        assert_eq!(utc, ["03-28 08:00", "03-29 07:00", "03-30 07:00", "03-31 07:00"]);
        let fires = daily.next_fires(at("2026-10-24T00:00:00Z"), 3);
        let utc: Vec<String> = fires.iter().map(|t| t.format("%m-%d %H:%M").to_string()).collect();
        assert_eq!(utc, ["10-24 07:00", "10-25 08:00", "10-26 08:00"]);
        assert_eq!(daily.previous_fire(at("2026-03-29T07:30:00Z")), Some(at("2026-03-29T07:00:00Z")));
        assert_eq!(daily.key(), "0 9 * * * (Europe/Berlin)");
        // A time the spring change skips (02:30 on 29 March) still fires once that day.
        let skipped = Schedule::parse("30 2 * * *").unwrap().in_zone(berlin);
        let day: Vec<_> = skipped
            .next_fires(at("2026-03-28T12:00:00Z"), 3)
            .into_iter()
            .filter(|t| {
                t.with_timezone(&berlin).date_naive() == NaiveDate::from_ymd_opt(2026, 3, 29).unwrap()
            })
            .collect();
        assert_eq!(day.len(), 1, "{day:?}");
    }

    #[test]
    fn quiet_windows_run_past_midnight_on_their_days_in_local_time() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let night =
            QuietWindow { from: hm("22:00"), to: hm("07:00"), days: vec![], alerts: QuietAction::Hold };
        let w = std::slice::from_ref(&night);
        // 23:30 Berlin summer time (21:30 UTC): quiet until 07:00 Berlin, 05:00 UTC.
        assert_eq!(
            quiet_at(w, berlin, at("2026-07-01T21:30:00Z")),
            Some((at("2026-07-02T05:00:00Z"), QuietAction::Hold))
        );
        // 03:00 Berlin: the window that began yesterday.
        assert_eq!(
            quiet_at(w, berlin, at("2026-07-02T01:00:00Z")).map(|q| q.0),
            Some(at("2026-07-02T05:00:00Z"))
        );
        assert_eq!(quiet_at(w, berlin, at("2026-07-02T05:00:00Z")), None);
        assert_eq!(quiet_at(w, berlin, at("2026-07-02T12:00:00Z")), None);
        // The night of the autumn change is an hour longer: it ends at 07:00 winter time.
        assert_eq!(
            quiet_at(w, berlin, at("2026-10-24T21:00:00Z")).map(|q| q.0),
            Some(at("2026-10-25T06:00:00Z"))
        );
        // Weekends only, starting Saturday 00:00 for two days; skip.
        let weekend = QuietWindow {
            from: hm("00:00"),
            to: hm("23:59"),
            days: vec![Weekday::Sat, Weekday::Sun],
            alerts: QuietAction::Skip,
        };
        let both = [night.clone(), weekend];
        // Saturday 4 July 2026, 10:00 UTC (12:00 Berlin).
        assert_eq!(quiet_at(&both, berlin, at("2026-07-04T10:00:00Z")).map(|q| q.1), Some(QuietAction::Skip));
        // Friday noon: neither.
        assert_eq!(quiet_at(&both, berlin, at("2026-07-03T10:00:00Z")), None);
        // Saturday 23:00 Berlin: both; the night ends later and the weekend window skips.
        assert_eq!(
            quiet_at(&both, berlin, at("2026-07-04T21:00:00Z")),
            Some((at("2026-07-05T05:00:00Z"), QuietAction::Skip))
        );
    }
}
