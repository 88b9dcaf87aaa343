//! Secret environment values and the one redaction every API answer goes through.
//!
//! A workload's `secretEnv` values live in its stored record and in the dispatch to
//! the node that runs it, nowhere else. [`SecretEnv`]'s `Debug` shows names only, so a
//! log line cannot print a value; API answers are [`Public`] values, which can only be
//! built by redacting.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// What answers show in place of a secret value.
pub const REDACTED: &str = "***";

/// Environment variables whose values are secret: name → value. Serialized with the
/// values (for etcd and the dispatch); `Debug` shows only the names.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretEnv(BTreeMap<String, String>);

impl SecretEnv {
    /// From name → value pairs.
    pub fn new(values: BTreeMap<String, String>) -> Self {
        Self(values)
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// Name and value pairs (for the container's environment only).
    pub fn expose(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Replace every value by [`REDACTED`].
    pub fn redact(&mut self) {
        for v in self.0.values_mut() {
            *v = REDACTED.to_string();
        }
    }
}

impl fmt::Debug for SecretEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|k| (k, REDACTED)))
            .finish()
    }
}

/// One secret value (a git token): serialized as is (for etcd and the dispatch),
/// `Debug` and `Display` show [`REDACTED`], answers carry [`REDACTED`] after
/// [`SecretString::redact`].
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    /// Wrap a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The value (for the git transport only).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Replace the value by [`REDACTED`] (an empty value stays empty).
    pub fn redact(&mut self) {
        if !self.0.is_empty() {
            self.0 = REDACTED.to_string();
        }
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// Something that may carry secret values and can drop them.
pub trait Redact {
    /// Replace every secret value by [`REDACTED`].
    fn redact(&mut self);
}

impl<T: Redact> Redact for Vec<T> {
    fn redact(&mut self) {
        for v in self {
            v.redact();
        }
    }
}

impl<T: Redact> Redact for Box<T> {
    fn redact(&mut self) {
        (**self).redact();
    }
}

/// A value fit for an API answer or an event: built only by redacting, so its
/// `Serialize` cannot carry a secret value.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Public<T>(T);

impl<T: Redact> Public<T> {
    /// Redact `value` for an answer.
    pub fn new(mut value: T) -> Self {
        value.redact();
        Self(value)
    }

    /// The redacted value.
    pub fn get(&self) -> &T {
        &self.0
    }
}

impl<T: Redact> From<T> for Public<T> {
    fn from(value: T) -> Self {
        Self::new(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> SecretEnv {
        SecretEnv::new([("DB_PASSWORD".to_string(), "hunter2".to_string())].into())
    }

    #[test]
    fn debug_shows_names_only() {
        let s = format!("{:?}", env());
        assert!(s.contains("DB_PASSWORD") && !s.contains("hunter2"), "{s}");
    }

    #[test]
    fn stored_form_keeps_values_and_redaction_replaces_them() {
        let v = serde_json::to_value(env()).expect("serializes");
        assert_eq!(v["DB_PASSWORD"], "hunter2");
        let mut e = env();
        e.redact();
        assert_eq!(e.expose().next(), Some(("DB_PASSWORD", REDACTED)));
    }
}
