//! A workload's health check: what the agent probes, how often, and when a container
//! counts as unhealthy. HTTP and TCP checks are made by the agent itself against the
//! container's address; `exec` runs a command in the container through the engine.
//! The agent keeps the check on the container as the [`crate::labels::HEALTH_CHECK`]
//! label, so a restarted agent resumes probing what it already runs.

use serde::{Deserialize, Serialize};

/// Default pause between probes.
pub const DEFAULT_INTERVAL_SECONDS: u32 = 10;
/// Default time one probe may take.
pub const DEFAULT_TIMEOUT_SECONDS: u32 = 2;
/// Default consecutive failures before a container is unhealthy.
pub const DEFAULT_RETRIES: u32 = 3;
/// Longest interval, timeout or start period accepted (an hour).
pub const MAX_SECONDS: u32 = 3600;
/// Most consecutive failures accepted before unhealthy.
pub const MAX_RETRIES: u32 = 100;
/// Longest failure output kept (the tail of an exec's output, an HTTP error).
pub const MAX_OUTPUT: usize = 512;

/// `healthCheck` of a workload: exactly one of `http`, `tcp` or `exec`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    /// An HTTP GET that must answer 2xx or 3xx.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpCheck>,
    /// A TCP port that must accept a connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpCheck>,
    /// A command run in the container that must exit 0 (argv, no shell).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<Vec<String>>,
    /// Seconds between probes.
    #[serde(default = "default_interval")]
    pub interval_seconds: u32,
    /// Seconds one probe may take.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u32,
    /// Consecutive failures that make the container unhealthy (then it is restarted).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Seconds after a start during which failures do not count (a pass still does).
    #[serde(default)]
    pub start_period_seconds: u32,
}

fn default_interval() -> u32 {
    DEFAULT_INTERVAL_SECONDS
}
fn default_timeout() -> u32 {
    DEFAULT_TIMEOUT_SECONDS
}
fn default_retries() -> u32 {
    DEFAULT_RETRIES
}

/// An HTTP probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct HttpCheck {
    /// Path requested (default `/`).
    #[serde(default = "root_path")]
    pub path: String,
    /// Container port.
    pub port: u16,
}

fn root_path() -> String {
    "/".to_string()
}

/// A TCP probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct TcpCheck {
    /// Container port.
    pub port: u16,
}

/// What one probe does (the check's one kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe<'a> {
    /// GET `path` on `port`.
    Http {
        /// Path.
        path: &'a str,
        /// Port.
        port: u16,
    },
    /// Connect to `port`.
    Tcp {
        /// Port.
        port: u16,
    },
    /// Run argv.
    Exec(&'a [String]),
}

impl HealthCheck {
    /// The probe of a valid check (`None` only for one [`HealthCheck::validate`] refuses).
    pub fn probe(&self) -> Option<Probe<'_>> {
        match (&self.http, &self.tcp, &self.exec) {
            (Some(h), None, None) => Some(Probe::Http {
                path: &h.path,
                port: h.port,
            }),
            (None, Some(t), None) => Some(Probe::Tcp { port: t.port }),
            (None, None, Some(argv)) if !argv.is_empty() => Some(Probe::Exec(argv)),
            _ => None,
        }
    }

    /// `Err((field, message))` naming what is wrong, field relative to `healthCheck`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let kinds = [self.http.is_some(), self.tcp.is_some(), self.exec.is_some()];
        if kinds.iter().filter(|k| **k).count() != 1 {
            return Err((
                String::new(),
                "give exactly one of http, tcp or exec".to_string(),
            ));
        }
        if let Some(h) = &self.http {
            if h.port == 0 {
                return Err(("http.port".into(), "must be 1-65535".into()));
            }
            if !h.path.starts_with('/')
                || h.path.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err((
                    "http.path".into(),
                    format!("{:?} must start with '/' and hold no spaces", h.path),
                ));
            }
        }
        if let Some(t) = &self.tcp {
            if t.port == 0 {
                return Err(("tcp.port".into(), "must be 1-65535".into()));
            }
        }
        if let Some(argv) = &self.exec {
            if argv.is_empty() || argv[0].trim().is_empty() {
                return Err(("exec".into(), "must name a command".into()));
            }
        }
        for (field, value, min) in [
            ("intervalSeconds", self.interval_seconds, 1),
            ("timeoutSeconds", self.timeout_seconds, 1),
            ("startPeriodSeconds", self.start_period_seconds, 0),
        ] {
            if value < min || value > MAX_SECONDS {
                return Err((field.into(), format!("must be {min}-{MAX_SECONDS}")));
            }
        }
        if self.retries == 0 || self.retries > MAX_RETRIES {
            return Err(("retries".into(), format!("must be 1-{MAX_RETRIES}")));
        }
        Ok(())
    }
}

/// The last `MAX_OUTPUT` bytes of `s` (on a character boundary), trimmed.
pub fn clip_output(s: &str) -> String {
    let s = s.trim();
    if s.len() <= MAX_OUTPUT {
        return s.to_string();
    }
    let mut start = s.len() - MAX_OUTPUT;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s[start..].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: &str) -> HealthCheck {
        serde_json::from_str(json).expect("parses")
    }

    #[test]
    fn defaults_fill_what_is_left_out() {
        let c = check(r#"{"http": {"port": 8080}}"#);
        assert_eq!(c.interval_seconds, DEFAULT_INTERVAL_SECONDS);
        assert_eq!(c.timeout_seconds, DEFAULT_TIMEOUT_SECONDS);
        assert_eq!(c.retries, DEFAULT_RETRIES);
        assert_eq!(c.start_period_seconds, 0);
        assert_eq!(
            c.probe(),
            Some(Probe::Http {
                path: "/",
                port: 8080
            })
        );
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn exactly_one_kind_is_required() {
        let none = check(r#"{"intervalSeconds": 1}"#);
        assert!(none.validate().unwrap_err().1.contains("exactly one"));
        let two = check(r#"{"tcp": {"port": 1}, "exec": ["true"]}"#);
        assert!(two.validate().unwrap_err().1.contains("exactly one"));
        assert_eq!(two.probe(), None);
    }

    #[test]
    fn bad_fields_are_named() {
        assert_eq!(
            check(r#"{"tcp": {"port": 0}}"#).validate().unwrap_err().0,
            "tcp.port"
        );
        assert_eq!(
            check(r#"{"http": {"port": 80, "path": "health"}}"#)
                .validate()
                .unwrap_err()
                .0,
            "http.path"
        );
        assert_eq!(check(r#"{"exec": []}"#).validate().unwrap_err().0, "exec");
        assert_eq!(
            check(r#"{"exec": ["true"], "intervalSeconds": 0}"#)
                .validate()
                .unwrap_err()
                .0,
            "intervalSeconds"
        );
        assert_eq!(
            check(r#"{"exec": ["true"], "retries": 0}"#)
                .validate()
                .unwrap_err()
                .0,
            "retries"
        );
        assert!(serde_json::from_str::<HealthCheck>(r#"{"tcp": {"port": 70000}}"#).is_err());
    }

    #[test]
    fn output_keeps_its_tail_on_a_character_boundary() {
        let long = format!("{}é{}", "a".repeat(600), "z".repeat(100));
        let clipped = clip_output(&long);
        assert!(clipped.len() <= MAX_OUTPUT);
        assert!(clipped.ends_with('z'));
        assert_eq!(clip_output("  short \n"), "short");
    }
}
