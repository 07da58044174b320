//! The table `vigil check` prints: each monitor with its next three fire times.

use std::fmt::Write;

use chrono::{DateTime, Utc};

use super::Config;

pub fn table(config: &Config, now: DateTime<Utc>) -> String {
    let header = ["NAME", "URL", "VIEWPORTS", "SCHEDULE", "THRESHOLD", "NEXT RUNS (UTC)"];
    let rows: Vec<Vec<String>> = config
        .monitors
        .iter()
        .map(|m| {
            let next = if m.enabled {
                m.schedule
                    .next_fires(now, 3)
                    .iter()
                    .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            } else {
                "disabled".to_owned()
            };
            [
                m.name.to_string(),
                m.url.to_string(),
                m.viewports.iter().map(|v| v.key()).collect::<Vec<_>>().join(","),
                match m.timezone {
                    Some(tz) => format!("{} ({})", m.schedule.source, tz.name()),
                    None => m.schedule.source.clone(),
                },
                m.threshold.to_string(),
                next,
            ]
            .into()
        })
        .collect();
    let mut out = render(&header, &rows);
    let enabled = config.monitors.iter().filter(|m| m.enabled).count();
    let _ = writeln!(
        out,
        "{} monitor{} ({} enabled); configuration is valid",
        config.monitors.len(),
        if config.monitors.len() == 1 { "" } else { "s" },
        enabled
    );
    out
}

/// Left-aligned columns two spaces apart, the last one unpadded.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let last = cells.len() - 1;
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                let _ = writeln!(out, "{cell}");
            } else {
                let _ = write!(out, "{cell:<w$}  ");
            }
        }
    };
    line(header);
    for row in rows {
        line(&row.iter().map(String::as_str).collect::<Vec<_>>());
    }
    out
}
