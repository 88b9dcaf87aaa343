//! Turning what a user typed (an id, a unique id prefix, or a unique name) into an id.

use crate::client::ApiClient;
use crate::error::Failure;

/// Why a reference did not resolve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// No workload has this id, id prefix or name.
    #[error("no workload matches {0:?}")]
    NoMatch(String),
    /// Several do; the user must be more precise.
    #[error("{reference:?} matches several workloads: {ids}; use a full id")]
    Ambiguous {
        /// What the user typed.
        reference: String,
        /// The matching ids, comma separated.
        ids: String,
    },
}

/// Whether `s` has the shape of a full workload id (a UUID), which needs no lookup.
pub fn is_full_id(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// Pick the one workload `reference` names among `(id, name)` pairs: an exact id wins,
/// then an exact name, then an id prefix.
pub fn pick(workloads: &[(String, String)], reference: &str) -> Result<String, ResolveError> {
    if let Some((id, _)) = workloads.iter().find(|(id, _)| id == reference) {
        return Ok(id.clone());
    }
    let by_name: Vec<&String> = workloads
        .iter()
        .filter(|(_, name)| name == reference)
        .map(|(id, _)| id)
        .collect();
    let candidates = if by_name.is_empty() {
        workloads
            .iter()
            .filter(|(id, _)| id.starts_with(reference))
            .map(|(id, _)| id)
            .collect()
    } else {
        by_name
    };
    match candidates.as_slice() {
        [] => Err(ResolveError::NoMatch(reference.to_string())),
        [one] => Ok((*one).clone()),
        many => Err(ResolveError::Ambiguous {
            reference: reference.to_string(),
            ids: many
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// Resolve a reference against the server: a full id is used as is (no request).
pub async fn workload_id(client: &ApiClient, reference: &str) -> anyhow::Result<String> {
    if is_full_id(reference) {
        return Ok(reference.to_string());
    }
    if reference.is_empty() {
        anyhow::bail!("workload id must not be empty");
    }
    let list = client.get_all("/workloads", None).await?;
    let pairs: Vec<(String, String)> = list
        .iter()
        .map(|w| {
            let s = |k: &str| {
                w.get(k)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string()
            };
            (s("id"), s("name"))
        })
        .collect();
    pick(&pairs, reference).map_err(|e| match e {
        ResolveError::NoMatch(_) => Failure::NotFound(e.to_string()).into(),
        ResolveError::Ambiguous { .. } => anyhow::Error::new(e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ws() -> Vec<(String, String)> {
        vec![
            ("1f0c2b9e-0000-4000-8000-000000000001".into(), "web".into()),
            ("1f0c2b9e-0000-4000-8000-000000000002".into(), "db".into()),
            ("7a000000-0000-4000-8000-000000000003".into(), "web2".into()),
        ]
    }

    #[test]
    fn full_uuid_needs_no_lookup() {
        assert!(is_full_id("1f0c2b9e-0000-4000-8000-000000000001"));
        assert!(!is_full_id("web"));
        assert!(!is_full_id("1f0c2b9e"));
    }

    #[test]
    fn unique_name_resolves_to_its_id() {
        assert_eq!(
            pick(&ws(), "db"),
            Ok("1f0c2b9e-0000-4000-8000-000000000002".into())
        );
    }

    #[test]
    fn unique_prefix_resolves_to_its_id() {
        assert_eq!(
            pick(&ws(), "7a"),
            Ok("7a000000-0000-4000-8000-000000000003".into())
        );
    }

    #[test]
    fn shared_prefix_is_ambiguous() {
        assert!(matches!(
            pick(&ws(), "1f0c"),
            Err(ResolveError::Ambiguous { .. })
        ));
    }

    #[test]
    fn exact_name_beats_prefix_of_another_name() {
        assert_eq!(
            pick(&ws(), "web"),
            Ok("1f0c2b9e-0000-4000-8000-000000000001".into())
        );
    }

    #[test]
    fn unknown_reference_is_no_match() {
        assert_eq!(pick(&ws(), "zzz"), Err(ResolveError::NoMatch("zzz".into())));
    }
}
