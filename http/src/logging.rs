//! How every persys service logs: `--log-format text` (for people, the default) or
//! `json` (one JSON object per line, for log pipelines). In JSON, the fields of the
//! current span are on every line, so each line logged while a request is handled
//! carries that request's `request_id` (the binaries open a `request` span with it).

use tracing_subscriber::EnvFilter;

/// The log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The logging flags every service takes.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LogFlags {
    /// Log line format: `text`, or `json` (one object per line, with the request id of
    /// the request being handled on every line). Levels come from `RUST_LOG`.
    #[arg(long = "log-format", env = "PERSYS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub format: LogFormat,
}

/// Install the process's logger: `RUST_LOG`, else `default_filter`, in `flags`' format.
pub fn init(flags: &LogFlags, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match flags.format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

/// The span a request is handled in: its id on every line logged meanwhile.
#[macro_export]
macro_rules! request_span {
    ($id:expr) => {
        ::tracing::info_span!("request", request_id = %$id)
    };
}
