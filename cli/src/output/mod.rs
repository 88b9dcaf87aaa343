//! What the CLI prints: aligned tables and descriptions for people, pure JSON or YAML
//! on stdout for scripts (`-o json|yaml`).
//!
//! - [`table`]: tables, ages, colour;
//! - [`workload`], [`node`], [`placement`], [`metrics`], [`event`]: how each kind of
//!   thing looks.

pub mod event;
pub mod metrics;
pub mod node;
pub mod placement;
pub mod table;
pub mod workload;

pub use node::{describe_node, node_rows, NODE_HEADERS, NODE_STATUS_COLUMN};
pub use placement::explain_placement;
pub use table::{age, labels, status_colour, stdout_colour, table, table_styled, Colour};
pub use workload::{
    describe_workload, workload_rows, workload_rows_wide, WORKLOAD_HEADERS, WORKLOAD_STATUS_COLUMN,
    WORKLOAD_WIDE_HEADERS,
};

use std::io::Write;

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns or `key: value` lines, for people.
    #[default]
    Table,
    /// Like `table`, with more columns where there are more to show.
    Wide,
    /// The server's JSON, pretty-printed, nothing else on stdout.
    Json,
    /// The server's answer as YAML, nothing else on stdout.
    Yaml,
}

impl Format {
    /// Whether this format is for scripts (the data itself, nothing for people).
    pub fn is_data(self) -> bool {
        matches!(self, Self::Json | Self::Yaml)
    }
}

/// A table whose status column is coloured when `colour` is on.
pub fn status_table(
    headers: &[&str],
    rows: &[Vec<String>],
    status_column: usize,
    colour: bool,
) -> String {
    if !colour {
        return table(headers, rows);
    }
    table_styled(headers, rows, &|col, cell| {
        (col == status_column)
            .then(|| status_colour(cell))
            .flatten()
    })
}

/// Print data for scripts: pretty JSON, or YAML for [`Format::Yaml`].
pub fn print_data(format: Format, value: &serde_json::Value) {
    match format {
        Format::Yaml => print_text(&to_yaml(value)),
        _ => print_json(value),
    }
}

/// YAML of a JSON value (falls back to JSON, which is valid YAML, if that fails).
pub fn to_yaml(value: &serde_json::Value) -> String {
    serde_yaml_ng::to_string(value).unwrap_or_else(|_| format!("{value}\n"))
}

/// Print JSON, pretty, followed by a newline. Write errors (a closed pipe) are ignored:
/// the reader is gone and has nobody to tell.
pub fn print_json(value: &serde_json::Value) {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    print_text(&format!("{text}\n"));
}

/// Print text to stdout, ignoring a closed pipe (`persys workload list | head -1`).
pub fn print_text(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// Write text to stdout and flush, reporting a closed pipe to callers that must stop
/// (a stream that would otherwise run forever into nowhere).
pub fn write_stdout(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// Print a line to stderr (progress, errors), ignoring a closed stderr: unlike
/// `eprintln!`, which panics then.
pub fn say(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_output_is_the_same_data() {
        let v = serde_json::json!({"id": "w1", "labels": {"a": "1"}, "ports": ["80:80"]});
        let back: serde_json::Value =
            serde_yaml_ng::from_str(&to_yaml(&v)).expect("YAML parses back");
        assert_eq!(back, v);
    }

    #[test]
    fn only_json_and_yaml_are_data_formats() {
        assert!(Format::Json.is_data() && Format::Yaml.is_data());
        assert!(!Format::Table.is_data() && !Format::Wide.is_data());
    }

    #[test]
    fn status_table_without_colour_is_the_plain_table() {
        let rows = vec![vec!["a".to_string(), "Running".to_string()]];
        assert_eq!(
            status_table(&["X", "STATUS"], &rows, 1, false),
            table(&["X", "STATUS"], &rows)
        );
        assert!(status_table(&["X", "STATUS"], &rows, 1, true).contains("\x1b[32m"));
    }
}
