//! Why a Compose file was refused: the key that is wrong and what is wrong with it.

use std::fmt;

/// A Compose key that failed (`key` is its path, e.g. `services.web.depends_on`;
/// empty for the file as a whole).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ComposeError {
    /// Dotted path of the key.
    pub key: String,
    /// What is wrong with it.
    pub message: String,
}

impl ComposeError {
    /// An error at `key`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ComposeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}
