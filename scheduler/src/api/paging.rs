//! `?limit=N&continue=TOKEN` of the list routes (kube-style chunking). Without `limit`
//! a list answers as it always did (the original client reads a bare array); with it,
//! one page `{"items": [...], "continue": "<token>"}`, the token absent on the last.

use super::error::AppError;
use serde::Serialize;
use std::collections::HashMap;

/// Largest page a client may ask for.
pub const MAX_LIMIT: usize = 10_000;

/// One page of a list.
#[derive(Debug, Serialize)]
pub struct Page<T> {
    /// The records.
    pub items: Vec<T>,
    /// Pass as `continue` for the next page; absent on the last one.
    #[serde(rename = "continue", skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// `limit`, if given: 1..=[`MAX_LIMIT`].
pub fn limit(q: &HashMap<String, String>) -> Result<Option<usize>, AppError> {
    let Some(raw) = q.get("limit").filter(|s| !s.is_empty()) else {
        if token(q).is_some() {
            return Err(AppError::invalid_field(
                "continue",
                "a continue token needs the limit it was given with",
            ));
        }
        return Ok(None);
    };
    match raw.parse::<usize>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(Some(n)),
        _ => Err(AppError::invalid_field(
            "limit",
            format!("{raw:?} is not a page size from 1 to {MAX_LIMIT}"),
        )),
    }
}

/// `continue`, if given.
pub fn token(q: &HashMap<String, String>) -> Option<&str> {
    q.get("continue")
        .map(String::as_str)
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn limit_is_optional_and_bounded() {
        assert_eq!(limit(&q(&[])).ok(), Some(None));
        assert_eq!(limit(&q(&[("limit", "500")])).ok(), Some(Some(500)));
        for bad in ["0", "-1", "ten", "10001"] {
            let e = limit(&q(&[("limit", bad)])).expect_err(bad);
            assert!(e.message.starts_with("limit:"), "{}", e.message);
        }
        let e = limit(&q(&[("continue", "abc")])).expect_err("token without limit");
        assert!(e.message.starts_with("continue:"), "{}", e.message);
    }

    #[test]
    fn the_last_page_has_no_token() {
        let last = serde_json::to_value(Page::<u8> {
            items: vec![1],
            next: None,
        })
        .expect("json");
        assert_eq!(last, serde_json::json!({"items": [1]}));
        let more = serde_json::to_value(Page::<u8> {
            items: vec![],
            next: Some("t".into()),
        })
        .expect("json");
        assert_eq!(more, serde_json::json!({"items": [], "continue": "t"}));
    }
}
