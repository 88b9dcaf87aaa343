//! Join tokens: `PERSYS1.<sha256 hex of the CA cert DER>.<secret>`.
//!
//! The CA hash lets a joining node authenticate the scheduler before trusting it;
//! the secret authenticates the node to the scheduler, which stores only its hash.

use crate::CertError;
use sha2::{Digest, Sha256};
use std::fmt;
use subtle::ConstantTimeEq;

/// Token format version prefix.
const PREFIX: &str = "PERSYS1";
/// Longest secret accepted (a generated one is 64 hex characters).
const MAX_SECRET_LEN: usize = 256;

/// A parsed join token.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// Lower-case hex sha256 of the CA certificate DER.
    pub ca_hash: String,
    /// The shared secret.
    pub secret: String,
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The secret must not end up in logs.
        f.debug_struct("JoinToken")
            .field("ca_hash", &self.ca_hash)
            .finish_non_exhaustive()
    }
}

impl JoinToken {
    /// A new token for the CA with this hash, with 32 random bytes of secret (hex).
    pub fn generate(ca_hash: &str) -> Self {
        let bytes: [u8; 32] = rand::random();
        Self {
            ca_hash: ca_hash.to_ascii_lowercase(),
            secret: hex::encode(bytes),
        }
    }

    /// Parses `PERSYS1.<64 hex>.<secret>` (surrounding whitespace ignored, so a
    /// token read from a file with its newline parses).
    pub fn parse(s: &str) -> Result<Self, CertError> {
        let s = s.trim();
        let mut parts = s.splitn(3, '.');
        let (prefix, hash, secret) = match (parts.next(), parts.next(), parts.next()) {
            (Some(p), Some(h), Some(s)) => (p, h, s),
            _ => {
                return Err(invalid(
                    "expected PERSYS1.<ca hash>.<secret> (three parts separated by '.')",
                ))
            }
        };
        if prefix != PREFIX {
            return Err(invalid(&format!(
                "unknown prefix {prefix:?}, expected {PREFIX:?}"
            )));
        }
        let ca_hash = validate_ca_hash(hash)?;
        if secret.is_empty() {
            return Err(invalid("empty secret"));
        }
        if secret.len() > MAX_SECRET_LEN {
            return Err(invalid(&format!(
                "secret longer than {MAX_SECRET_LEN} characters"
            )));
        }
        if !secret
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(invalid(
                "secret may contain only letters, digits, '-' and '_'",
            ));
        }
        Ok(Self {
            ca_hash,
            secret: secret.to_owned(),
        })
    }

    /// Hex sha256 of the secret (what the scheduler stores).
    pub fn secret_hash(&self) -> String {
        hash_secret(&self.secret)
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}.{}.{}", self.ca_hash, self.secret)
    }
}

impl std::str::FromStr for JoinToken {
    type Err = CertError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Checks a CA hash is 64 hex characters; returns it lower-cased.
pub fn validate_ca_hash(hash: &str) -> Result<String, CertError> {
    if hash.len() != 64 || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(invalid(&format!(
            "CA hash must be 64 hex characters (sha256), got {} characters",
            hash.len()
        )));
    }
    Ok(hash.to_ascii_lowercase())
}

/// Hex sha256 of a secret.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Compares two byte strings in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

fn invalid(reason: &str) -> CertError {
    CertError::InvalidToken(reason.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn generated_token_round_trips_through_display_and_parse() {
        let token = JoinToken::generate(HASH);
        assert_eq!(token.secret.len(), 64);
        let text = token.to_string();
        assert!(text.starts_with("PERSYS1."));
        assert_eq!(JoinToken::parse(&text).expect("parse"), token);
        assert_eq!(
            JoinToken::parse(&format!("{text}\n")).expect("trailing newline"),
            token
        );
    }

    #[test]
    fn parse_normalises_hash_case() {
        let token =
            JoinToken::parse(&format!("PERSYS1.{}.s3cret", HASH.to_uppercase())).expect("parse");
        assert_eq!(token.ca_hash, HASH);
    }

    #[test]
    fn malformed_tokens_are_rejected_with_a_reason() {
        let cases = [
            ("", "three parts"),
            ("PERSYS1", "three parts"),
            ("PERSYS1.abc", "three parts"),
            (&format!("PERSYS2.{HASH}.x"), "unknown prefix"),
            ("PERSYS1.abcd.secret", "64 hex"),
            (&format!("PERSYS1.{}.x", "g".repeat(64)), "64 hex"),
            (&format!("PERSYS1.{HASH}."), "empty secret"),
            (&format!("PERSYS1.{HASH}.a.b"), "only letters"),
            (&format!("PERSYS1.{HASH}.a b"), "only letters"),
        ];
        for (input, reason) in cases {
            match JoinToken::parse(input) {
                Err(CertError::InvalidToken(msg)) => {
                    assert!(msg.contains(reason), "{input:?}: {msg:?} lacks {reason:?}")
                }
                other => panic!("{input:?} parsed: {other:?}"),
            }
        }
    }

    #[test]
    fn secret_hash_is_sha256_hex_of_secret() {
        let token = JoinToken::parse(&format!("PERSYS1.{HASH}.abc")).expect("parse");
        assert_eq!(
            token.secret_hash(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn debug_hides_the_secret() {
        let token = JoinToken::generate(HASH);
        assert!(!format!("{token:?}").contains(&token.secret));
    }

    #[test]
    fn constant_time_eq_compares_content_and_length() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
