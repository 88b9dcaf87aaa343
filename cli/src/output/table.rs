//! Aligned tables, relative ages and terminal colour.

use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::IsTerminal;

/// Gap between table columns.
const GAP: &str = "   ";

/// A colour for a cell (only used when colour is enabled).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Colour {
    /// Healthy: Running, Active.
    Green,
    /// In progress or held back: Pending, Scheduled, Cordoned, ...
    Yellow,
    /// Broken: Failed, ImagePullBackOff, Inactive, ...
    Red,
}

impl Colour {
    fn code(self) -> &'static str {
        match self {
            Self::Green => "32",
            Self::Yellow => "33",
            Self::Red => "31",
        }
    }
}

/// Wrap `text` in the ANSI sequence of `colour`.
pub fn paint(colour: Colour, text: &str) -> String {
    format!("\x1b[{}m{text}\x1b[0m", colour.code())
}

/// Whether to colour: only for a terminal, and never when `NO_COLOR` is set to
/// anything but the empty string (<https://no-color.org>).
pub fn colour_wanted(is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Whether stdout gets colour in this process.
pub fn stdout_colour() -> bool {
    colour_wanted(
        std::io::stdout().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    )
}

/// The colour of a workload or node status name, if it has one.
pub fn status_colour(status: &str) -> Option<Colour> {
    match status {
        "Running" | "Active" => Some(Colour::Green),
        "Pending" | "Scheduled" | "Pulling" | "ContainerCreating" | "Restarting" | "Stopping"
        | "Cordoned" | "Draining" => Some(Colour::Yellow),
        "Failed" | "ImagePullBackOff" | "Missing" | "Unknown" | "Inactive" => Some(Colour::Red),
        _ => None,
    }
}

/// Render rows under headers, each column as wide as its widest cell. The last
/// column is not padded, so lines carry no trailing spaces.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    table_styled(headers, rows, &|_, _| None)
}

/// [`table`], with `style(column, cell)` choosing a colour per body cell. Widths are
/// measured on the plain text, so coloured columns stay aligned.
pub fn table_styled(
    headers: &[&str],
    rows: &[Vec<String>],
    style: &dyn Fn(usize, &str) -> Option<Colour>,
) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let header_row: Vec<String> = headers.iter().map(|h| (*h).to_string()).collect();
    for (r, row) in std::iter::once(&header_row).chain(rows).enumerate() {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str(GAP);
            }
            match style(i, cell).filter(|_| r > 0) {
                Some(c) => line.push_str(&paint(c, cell)),
                None => line.push_str(cell),
            }
            if i + 1 < row.len() {
                let pad = widths.get(i).copied().unwrap_or(0) - cell.chars().count();
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A short age: `42s`, `5m`, `3h`, `2d`. Times in the future (clock skew) are `0s`.
pub fn age(now: DateTime<Utc>, then: DateTime<Utc>) -> String {
    let secs = (now - then).num_seconds().max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// `k=v,k=v`, or `-` when empty.
pub fn labels(map: &BTreeMap<String, String>) -> String {
    if map.is_empty() {
        return "-".into();
    }
    map.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Cores with at most two decimals and no trailing zeros: `4`, `0.25`, `1.5`.
pub fn cores(c: f64) -> String {
    let s = format!("{c:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// `key: value` lines, the values aligned after the longest key.
pub fn key_values(lines: &[(&str, String)]) -> String {
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    lines
        .iter()
        .map(|(k, v)| format!("{:<width$} {v}\n", format!("{k}:")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_700_000_000 + secs, 0)
            .single()
            .expect("valid time")
    }

    #[test]
    fn table_aligns_columns_to_the_widest_cell() {
        let out = table(
            &["ID", "NAME"],
            &[
                vec!["a".into(), "web".into()],
                vec!["long-id".into(), "x".into()],
            ],
        );
        assert_eq!(out, "ID        NAME\na         web\nlong-id   x\n");
    }

    #[test]
    fn table_lines_have_no_trailing_spaces() {
        let out = table(&["A", "B"], &[vec!["1".into(), String::new()]]);
        assert!(out.lines().all(|l| !l.ends_with(' ')), "{out:?}");
    }

    #[test]
    fn coloured_cells_keep_the_columns_aligned() {
        let rows = vec![
            vec!["Running".to_string(), "a".into()],
            vec!["Failed".to_string(), "b".into()],
        ];
        let out = table_styled(&["STATUS", "X"], &rows, &|col, cell| {
            (col == 0).then(|| status_colour(cell)).flatten()
        });
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "STATUS    X", "header is never coloured");
        assert_eq!(lines[1], "\x1b[32mRunning\x1b[0m   a");
        assert_eq!(lines[2], "\x1b[31mFailed\x1b[0m    b");
    }

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour_wanted(true, None));
        assert!(colour_wanted(true, Some(OsStr::new(""))));
        assert!(!colour_wanted(true, Some(OsStr::new("1"))));
        assert!(!colour_wanted(false, None));
    }

    #[test]
    fn statuses_get_traffic_light_colours() {
        assert_eq!(status_colour("Running"), Some(Colour::Green));
        assert_eq!(status_colour("Pending"), Some(Colour::Yellow));
        assert_eq!(status_colour("ImagePullBackOff"), Some(Colour::Red));
        assert_eq!(status_colour("Exited"), None);
    }

    #[test]
    fn age_picks_the_largest_readable_unit() {
        assert_eq!(age(t(42), t(0)), "42s");
        assert_eq!(age(t(300), t(0)), "5m");
        assert_eq!(age(t(3 * 3600), t(0)), "3h");
        assert_eq!(age(t(3 * 86400), t(0)), "3d");
        assert_eq!(age(t(0), t(10)), "0s");
    }

    #[test]
    fn cores_drop_trailing_zeros() {
        assert_eq!(cores(4.0), "4");
        assert_eq!(cores(0.25), "0.25");
        assert_eq!(cores(1.5), "1.5");
    }
}
