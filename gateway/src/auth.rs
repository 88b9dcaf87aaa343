//! Who is calling and what they may do: roles, API tokens (bearer) and client
//! certificates of the cluster CA. Pure: no I/O, the token cache is read in memory.

use crate::tokens::TokenCache;
use axum::http::HeaderValue;
use persys_certs::PeerIdentity;

/// What a credential may do (defined in `persys_proto`, which the CLI shares).
pub use persys_proto::Role;

/// How a subject proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// An API token (its id, never the secret).
    Token {
        /// Token id.
        id: String,
    },
    /// A client certificate of the cluster CA.
    Certificate,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// Token name or certificate common name.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// How it authenticated.
    pub credential: Credential,
}

impl Subject {
    /// `token` or `certificate`, for logs.
    pub fn via(&self) -> &'static str {
        match self.credential {
            Credential::Token { .. } => "token",
            Credential::Certificate => "certificate",
        }
    }

    /// Key of this caller's rate-limit bucket: one per token, one per certificate CN.
    pub fn limit_key(&self) -> String {
        match &self.credential {
            Credential::Token { id } => format!("token:{id}"),
            Credential::Certificate => format!("cert:{}", self.name),
        }
    }
}

/// Why a request is not authenticated (said in the 401 and the log, never the token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unauthenticated {
    /// Neither a bearer token nor a client certificate.
    Missing,
    /// The `Authorization` header is not `Bearer <token>`.
    Malformed,
    /// The token is unknown, revoked, or not an API token (e.g. a join token).
    Invalid,
    /// The client certificate is a cluster component's (a node, a scheduler), not a
    /// user's.
    NotAUser,
}

impl Unauthenticated {
    /// The message of the 401 answer.
    pub fn message(self) -> &'static str {
        match self {
            Self::Missing => "authentication required: send Authorization: Bearer <API token> or a client certificate of the cluster CA",
            Self::Malformed => "authorization header must be \"Bearer <API token>\"",
            Self::Invalid => "invalid or revoked API token",
            Self::NotAUser => "this client certificate belongs to a cluster component, not a user",
        }
    }

    /// Every [`Unauthenticated::reason`].
    pub const REASONS: [&'static str; 4] = [
        "missing_credential",
        "malformed_authorization",
        "invalid_token",
        "not_a_user_certificate",
    ];

    /// Short reason for logs and metrics.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Missing => "missing_credential",
            Self::Malformed => "malformed_authorization",
            Self::Invalid => "invalid_token",
            Self::NotAUser => "not_a_user_certificate",
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
pub fn bearer_token(value: &HeaderValue) -> Option<&str> {
    let s = value.to_str().ok()?;
    let (scheme, token) = s.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Authenticates a request from its `Authorization` header and the verified client
/// certificate (the TLS layer only admits certificates of the cluster CA). A bearer
/// token, when sent, decides alone: a bad token is refused even with a certificate.
pub fn authenticate(
    authorization: Option<&HeaderValue>,
    peer: Option<&PeerIdentity>,
    tokens: &TokenCache,
) -> Result<Subject, Unauthenticated> {
    if let Some(value) = authorization {
        let token = bearer_token(value).ok_or(Unauthenticated::Malformed)?;
        let record = tokens
            .lookup_secret(token)
            .ok_or(Unauthenticated::Invalid)?;
        return Ok(Subject {
            name: record.name,
            role: record.role,
            credential: Credential::Token { id: record.id },
        });
    }
    match peer {
        // Only user certificates speak for users: a node's, the scheduler's or the
        // gateway's own certificate is no user credential here.
        Some(p) if p.identity.role == persys_certs::Role::User => Ok(Subject {
            name: p.identity.name.clone(),
            role: if p.identity.is_admin() {
                Role::Admin
            } else {
                Role::Operator
            },
            credential: Credential::Certificate,
        }),
        Some(_) => Err(Unauthenticated::NotAUser),
        None => Err(Unauthenticated::Missing),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::TokenRecord;

    fn cache_with(secret: &str, role: Role) -> TokenCache {
        let cache = TokenCache::default();
        let rec = TokenRecord::api("t1", "ci", role, chrono::Utc::now());
        cache.apply_put(&crate::tokens::hash_token(secret), rec);
        cache
    }

    fn hv(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).expect("header")
    }

    #[test]
    fn every_failure_reason_is_listed_for_the_metric() {
        use Unauthenticated::*;
        let reasons: Vec<&str> = [Missing, Malformed, Invalid, NotAUser]
            .into_iter()
            .map(Unauthenticated::reason)
            .collect();
        assert_eq!(reasons, Unauthenticated::REASONS);
    }

    #[test]
    fn roles_are_ordered_viewer_operator_admin() {
        assert!(Role::Admin.allows(Role::Operator));
        assert!(Role::Operator.allows(Role::Viewer));
        assert!(!Role::Viewer.allows(Role::Operator));
        assert!(!Role::Operator.allows(Role::Admin));
        for r in [Role::Viewer, Role::Operator, Role::Admin] {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn valid_bearer_token_authenticates_as_its_name_and_role() {
        let cache = cache_with("persys_abc", Role::Viewer);
        let s = authenticate(Some(&hv("Bearer persys_abc")), None, &cache).expect("ok");
        assert_eq!(s.name, "ci");
        assert_eq!(s.role, Role::Viewer);
        assert_eq!(s.credential, Credential::Token { id: "t1".into() });
        let lower = authenticate(Some(&hv("bearer persys_abc")), None, &cache).expect("ok");
        assert_eq!(lower, s);
    }

    #[test]
    fn unknown_token_is_refused_even_with_a_certificate() {
        let cache = cache_with("persys_abc", Role::Admin);
        let peer = PeerIdentity::new(persys_certs::Identity::admin());
        assert_eq!(
            authenticate(Some(&hv("Bearer persys_nope")), Some(&peer), &cache),
            Err(Unauthenticated::Invalid)
        );
        assert_eq!(
            authenticate(Some(&hv("Basic dXNlcg==")), None, &cache),
            Err(Unauthenticated::Malformed)
        );
        assert_eq!(
            authenticate(None, None, &cache),
            Err(Unauthenticated::Missing)
        );
    }

    #[test]
    fn join_token_records_are_not_api_credentials() {
        let cache = TokenCache::default();
        cache.apply_put(
            &crate::tokens::hash_token("joinsecret"),
            TokenRecord::join(),
        );
        assert_eq!(
            authenticate(Some(&hv("Bearer joinsecret")), None, &cache),
            Err(Unauthenticated::Invalid)
        );
        assert!(cache.list().is_empty());
    }

    #[test]
    fn admin_certificate_is_admin_other_users_operators_and_components_nobody() {
        let cache = TokenCache::default();
        let admin = PeerIdentity::new(persys_certs::Identity::admin());
        let other = PeerIdentity::new(persys_certs::Identity::user("alice"));
        for component in [
            persys_certs::Identity::node("admin"),
            persys_certs::Identity::scheduler(),
            persys_certs::Identity::gateway(),
        ] {
            assert_eq!(
                authenticate(None, Some(&PeerIdentity::new(component)), &cache),
                Err(Unauthenticated::NotAUser)
            );
        }
        assert_eq!(
            authenticate(None, Some(&admin), &cache)
                .expect("admin")
                .role,
            Role::Admin
        );
        let s = authenticate(None, Some(&other), &cache).expect("other");
        assert_eq!((s.role, s.via()), (Role::Operator, "certificate"));
        assert_eq!(s.limit_key(), "cert:alice");
    }
}
