//! The one API client: HTTPS (rustls) with the cluster CA and the client certificate,
//! every non-2xx answer turned into a one-line [`ClientError`].

use crate::config::Config;
use persys_proto::ApiError;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::future::Future;
use std::path::Path;
use std::time::Duration;

/// How long an ordinary request may take (streams have no limit).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How much of a non-JSON error body is quoted in a message.
const MAX_QUOTED_BODY: usize = 200;
/// Items asked for per page of a list route.
pub const PAGE_LIMIT: usize = 500;
/// Most pages followed for one list (25 million items): a server whose tokens never end
/// cannot keep the CLI looping.
const MAX_PAGES: usize = 50_000;

/// Why a request failed. Each maps to an exit code (see [`ClientError::exit_code`]).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with a non-2xx status.
    #[error("{message}{}", request_id_suffix(.request_id))]
    Api {
        /// HTTP status.
        status: StatusCode,
        /// The server's message (`error` of its JSON body).
        message: String,
        /// Machine-readable code, if the body had one.
        code: String,
        /// Request id, if known.
        request_id: String,
    },
    /// The server could not be reached (refused, reset, TLS failure, timeout).
    #[error("cannot reach {endpoint}: {reason}")]
    Unreachable {
        /// Base URL tried.
        endpoint: String,
        /// Innermost cause.
        reason: String,
    },
    /// The TLS handshake failed on a certificate (ours refused, or theirs untrusted).
    #[error("cannot authenticate with {endpoint}: {reason}")]
    Tls {
        /// Base URL tried.
        endpoint: String,
        /// Which certificate and why.
        reason: String,
    },
    /// A file named by the config cannot be read.
    #[error("cannot read {what} {path}: {reason}")]
    ReadFile {
        /// Which file (`ca_cert_path`, ...).
        what: &'static str,
        /// Its path.
        path: String,
        /// The I/O error.
        reason: std::io::Error,
    },
    /// The TLS or HTTP client could not be set up.
    #[error("cannot set up the client: {0}")]
    Setup(String),
    /// A 2xx answer that is not what the API promises.
    #[error("unexpected answer from the server: {0}")]
    Decode(String),
}

fn request_id_suffix(id: &str) -> String {
    if id.is_empty() {
        String::new()
    } else {
        format!(" (request id {id})")
    }
}

impl ClientError {
    /// Exit code: 3 auth (401/403, TLS certificate refused), 4 not found, 5 server error or unreachable, 1 other.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Api { status, .. } => match status.as_u16() {
                401 | 403 => 3,
                404 => 4,
                s if s >= 500 => 5,
                _ => 1,
            },
            Self::Tls { .. } => 3,
            Self::Unreachable { .. } => 5,
            Self::ReadFile { .. } | Self::Setup(_) | Self::Decode(_) => 1,
        }
    }

    /// Whether this is a 404 answer.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Api { status, .. } if *status == StatusCode::NOT_FOUND)
    }
}

/// A client of the scheduler (or gateway) API.
#[derive(Debug, Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl ApiClient {
    /// Build a client from a loaded config: trust `ca_cert_path`, present
    /// `cert_path`/`key_path` when given, send `token` as a bearer token when given.
    pub fn from_config(config: &Config) -> Result<Self, ClientError> {
        let f = &config.file;
        let base = f.api_endpoint.trim().trim_end_matches('/').to_string();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("persys/", env!("CARGO_PKG_VERSION")));
        if base.starts_with("https://") {
            let ca_path = f.ca_cert_path.as_deref().ok_or_else(|| {
                ClientError::Setup(format!(
                    "config {}: ca_cert_path is required for an https endpoint",
                    config.path.display()
                ))
            })?;
            let ca = read_pem("ca_cert_path", ca_path)?;
            let identity = match (&f.cert_path, &f.key_path) {
                (Some(c), Some(k)) => Some((read_pem("cert_path", c)?, read_pem("key_path", k)?)),
                _ => None,
            };
            let tls = persys_certs::client_config(
                &ca,
                identity.as_ref().map(|(c, k)| (c.as_str(), k.as_str())),
                // The API is the gateway or a scheduler; a node's certificate, even
                // for the right address, never receives the CLI's credentials.
                persys_certs::Expected::Roles(vec![
                    persys_certs::Role::Gateway,
                    persys_certs::Role::Scheduler,
                ]),
            )
            .map_err(|e| ClientError::Setup(e.to_string()))?;
            builder = builder.use_preconfigured_tls(tls);
        }
        let http = builder
            .build()
            .map_err(|e| ClientError::Setup(innermost(&e)))?;
        Ok(Self {
            http,
            base,
            token: f.token.clone().filter(|t| !t.is_empty()),
        })
    }

    /// The endpoint this client talks to.
    pub fn endpoint(&self) -> &str {
        &self.base
    }

    /// GET a JSON answer.
    pub async fn get_json(&self, path: &str) -> Result<serde_json::Value, ClientError> {
        let bytes = self.call(Method::GET, path, None).await?;
        decode(&bytes)
    }

    /// GET a JSON answer into a type.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let bytes = self.call(Method::GET, path, None).await?;
        decode(&bytes)
    }

    /// GET every item of a list route (`/workloads?status=Running`, `/nodes`), page by
    /// page ([`PAGE_LIMIT`] at a time, following `continue`, see [`collect_pages`]).
    /// An older server that ignores `limit` answers the whole list at once: a bare
    /// array, or an object holding it under `legacy_key` (`{"nodes": [...]}`).
    pub async fn get_all(
        &self,
        path: &str,
        legacy_key: Option<&str>,
    ) -> Result<Vec<Value>, ClientError> {
        collect_pages(|token| async move {
            let answer = self.get_json(&page_path(path, token.as_deref())).await?;
            parse_page(answer, legacy_key)
        })
        .await
    }

    /// POST a JSON body (already serialized), answer as JSON (`null` when empty).
    pub async fn post_json(
        &self,
        path: &str,
        body: Vec<u8>,
    ) -> Result<serde_json::Value, ClientError> {
        let bytes = self.call(Method::POST, path, Some(body)).await?;
        decode_or_null(&bytes)
    }

    /// PUT a JSON body (already serialized), answer as JSON (`null` when empty).
    pub async fn put_json(
        &self,
        path: &str,
        body: Vec<u8>,
    ) -> Result<serde_json::Value, ClientError> {
        let bytes = self.call(Method::PUT, path, Some(body)).await?;
        decode_or_null(&bytes)
    }

    /// DELETE, answer as JSON (`null` when empty).
    pub async fn delete(&self, path: &str) -> Result<serde_json::Value, ClientError> {
        let bytes = self.call(Method::DELETE, path, None).await?;
        decode_or_null(&bytes)
    }

    /// GET a streaming answer (no overall timeout); the caller reads the body.
    pub async fn stream(&self, path: &str) -> Result<reqwest::Response, ClientError> {
        let resp = self
            .request(Method::GET, path, None)
            .send()
            .await
            .map_err(|e| self.transport_error(&e))?;
        self.check(resp).await
    }

    /// Turn a transport error into a `ClientError`: a TLS identity failure (either side
    /// refusing the other's certificate) is an auth error, anything else unreachable.
    pub fn transport_error(&self, e: &reqwest::Error) -> ClientError {
        tracing::debug!(error = ?e, "transport error");
        let endpoint = self.base.clone();
        match tls_failure(e) {
            Some(TlsFailure::ServerNotTrusted(why)) => ClientError::Tls {
                endpoint,
                reason: format!(
                    "the server's certificate does not verify against ca_cert_path ({why})"
                ),
            },
            Some(TlsFailure::ClientRefused(why)) => ClientError::Tls {
                endpoint,
                reason: format!("the server refused the client certificate ({why})"),
            },
            None => ClientError::Unreachable {
                endpoint,
                reason: innermost(e),
            },
        }
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> reqwest::RequestBuilder {
        let url = format!("{}{}", self.base, path);
        tracing::debug!(%method, %url, "request");
        let mut req = self.http.request(method, url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b);
        }
        req
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<bytes::Bytes, ClientError> {
        let resp = self
            .request(method, path, body)
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await
            .map_err(|e| self.transport_error(&e))?;
        let resp = self.check(resp).await?;
        resp.bytes().await.map_err(|e| self.transport_error(&e))
    }

    /// Pass a 2xx answer through; turn anything else into `ClientError::Api`.
    async fn check(&self, resp: reqwest::Response) -> Result<reqwest::Response, ClientError> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let header_id = resp
            .headers()
            .get(persys_proto::REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = resp.bytes().await.unwrap_or_default();
        Err(api_error(status, &body, header_id))
    }
}

/// Build the error for a non-2xx answer from its body (the contract's JSON, or anything).
pub fn api_error(status: StatusCode, body: &[u8], header_request_id: String) -> ClientError {
    match serde_json::from_slice::<ApiError>(body) {
        Ok(e) => ClientError::Api {
            status,
            message: one_line(&e.error),
            code: e.code,
            request_id: if e.request_id.is_empty() {
                header_request_id
            } else {
                e.request_id
            },
        },
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text = one_line(text.trim());
            let quoted: String = text.chars().take(MAX_QUOTED_BODY).collect();
            let message = if quoted.is_empty() {
                format!("server answered {status}")
            } else {
                format!("server answered {status}: {quoted}")
            };
            ClientError::Api {
                status,
                message,
                code: String::new(),
                request_id: header_request_id,
            }
        }
    }
}

/// One answer of a list route.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The items of this page.
    pub items: Vec<Value>,
    /// The token of the next page; `None` on the last.
    pub next: Option<String>,
}

/// `path` asking for one page: `limit`, and `continue` after the first.
pub fn page_path(path: &str, token: Option<&str>) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut out = format!("{path}{sep}limit={PAGE_LIMIT}");
    if let Some(t) = token {
        out.push_str("&continue=");
        out.push_str(&crate::commands::escape(t));
    }
    out
}

/// Read one answer of a list route asked with `limit`: `{"items": [...], "continue":
/// "<token>"}`, the token absent, null or empty on the last page. An older server
/// answers the whole list instead, which is the one and last page: a bare array, or an
/// object with the array under `legacy_key`.
pub fn parse_page(answer: Value, legacy_key: Option<&str>) -> Result<Page, ClientError> {
    let mut map = match answer {
        Value::Array(items) => return Ok(Page { items, next: None }),
        Value::Object(map) => map,
        other => {
            return Err(ClientError::Decode(format!(
                "expected a list, got {}",
                kind(&other)
            )))
        }
    };
    let items = match map.remove("items") {
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(ClientError::Decode(format!(
                "\"items\" is {}, not an array",
                kind(&other)
            )))
        }
        None => match legacy_key.and_then(|k| map.remove(k)) {
            Some(Value::Array(items)) => return Ok(Page { items, next: None }),
            _ => {
                return Err(ClientError::Decode(
                    "expected a list: an array, or an object with \"items\"".into(),
                ))
            }
        },
    };
    let next = match map.remove("continue") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) if t.is_empty() => None,
        Some(Value::String(t)) => Some(t),
        Some(other) => {
            return Err(ClientError::Decode(format!(
                "\"continue\" is {}, not a string",
                kind(&other)
            )))
        }
    };
    Ok(Page { items, next })
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Every item of a paged list: `fetch(None)` is the first page, `fetch(Some(token))`
/// the one after the page that gave `token`, until a page has no token. A server that
/// answers a token it was just sent (which would loop forever) is an error, and so is
/// a list of more than `MAX_PAGES` pages.
pub async fn collect_pages<F, Fut>(mut fetch: F) -> Result<Vec<Value>, ClientError>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Result<Page, ClientError>>,
{
    let mut items = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let sent = token.clone();
        let page = fetch(token.take()).await?;
        items.extend(page.items);
        match page.next {
            None => return Ok(items),
            Some(next) if sent.as_deref() == Some(next.as_str()) => {
                return Err(ClientError::Decode(format!(
                    "the server answered the same continue token {next:?} again"
                )))
            }
            Some(next) => token = Some(next),
        }
    }
    Err(ClientError::Decode(format!(
        "the list goes on past {MAX_PAGES} pages"
    )))
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ClientError> {
    serde_json::from_slice(bytes).map_err(|e| ClientError::Decode(e.to_string()))
}

fn decode_or_null(bytes: &[u8]) -> Result<serde_json::Value, ClientError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Value::Null);
    }
    decode(bytes)
}

fn read_pem(what: &'static str, path: &Path) -> Result<String, ClientError> {
    std::fs::read_to_string(path).map_err(|reason| ClientError::ReadFile {
        what,
        path: path.display().to_string(),
        reason,
    })
}

/// The innermost cause of an error, which is the one a person can act on
/// ("Connection refused", "invalid peer certificate: UnknownIssuer").
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: &(dyn std::error::Error + 'static) = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    one_line(&cur.to_string())
}

/// Which side of a TLS handshake refused the other's identity.
enum TlsFailure {
    /// Our CA does not vouch for the server's certificate.
    ServerNotTrusted(String),
    /// The server sent a certificate alert: our client certificate is missing or foreign.
    ClientRefused(String),
}

/// Find a rustls certificate error in the chain. rustls errors travel inside
/// `io::Error`s, whose `source()` skips the wrapped error, so each is unwrapped by hand.
fn tls_failure(e: &(dyn std::error::Error + 'static)) -> Option<TlsFailure> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        match as_rustls(err) {
            Some(r @ rustls::Error::InvalidCertificate(_)) => {
                return Some(TlsFailure::ServerNotTrusted(r.to_string()))
            }
            Some(r @ rustls::Error::AlertReceived(_)) => {
                return Some(TlsFailure::ClientRefused(r.to_string()))
            }
            _ => {}
        }
        cur = err.source();
    }
    None
}

/// `err` as a rustls error, looking through nested `io::Error` wrappers.
fn as_rustls<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut cur = err;
    loop {
        if let Some(r) = cur.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        let io = cur.downcast_ref::<std::io::Error>()?;
        cur = io.get_ref()?;
    }
}

/// Collapse newlines so every error stays on one line.
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_error_body_becomes_message_with_request_id() {
        let e = api_error(
            StatusCode::NOT_FOUND,
            br#"{"error":"workload abc not found","code":"not_found","requestId":"r-1"}"#,
            String::new(),
        );
        assert_eq!(e.to_string(), "workload abc not found (request id r-1)");
        assert_eq!(e.exit_code(), 4);
        assert!(e.is_not_found());
    }

    #[test]
    fn header_request_id_is_used_when_body_has_none() {
        let e = api_error(
            StatusCode::BAD_REQUEST,
            br#"{"error":"image: is required","code":"invalid"}"#,
            "h-9".into(),
        );
        assert_eq!(e.to_string(), "image: is required (request id h-9)");
        assert_eq!(e.exit_code(), 1);
    }

    #[test]
    fn non_json_body_is_quoted_on_one_line() {
        let e = api_error(StatusCode::BAD_GATEWAY, b"bad\ngateway\n", String::new());
        assert_eq!(
            e.to_string(),
            "server answered 502 Bad Gateway: bad gateway"
        );
        assert_eq!(e.exit_code(), 5);
    }

    #[test]
    fn auth_statuses_exit_3() {
        for s in [StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN] {
            assert_eq!(api_error(s, b"", String::new()).exit_code(), 3);
        }
    }

    #[test]
    fn rustls_error_nested_in_io_errors_is_a_tls_failure() {
        let inner = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        let outer = std::io::Error::other(inner);
        assert!(matches!(
            tls_failure(&outer),
            Some(TlsFailure::ServerNotTrusted(_))
        ));
        let alert = std::io::Error::other(rustls::Error::AlertReceived(
            rustls::AlertDescription::CertificateRequired,
        ));
        assert!(matches!(
            tls_failure(&alert),
            Some(TlsFailure::ClientRefused(_))
        ));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(tls_failure(&refused).is_none());
    }

    #[test]
    fn page_path_adds_limit_and_the_escaped_token() {
        assert_eq!(page_path("/nodes", None), "/nodes?limit=500");
        assert_eq!(
            page_path("/workloads?status=Running", Some("a/b=")),
            "/workloads?status=Running&limit=500&continue=a%2Fb%3D"
        );
    }

    #[test]
    fn a_page_has_items_and_a_token_until_the_last() {
        let page =
            parse_page(serde_json::json!({"items": [1, 2], "continue": "t1"}), None).expect("page");
        assert_eq!(page.items, [serde_json::json!(1), serde_json::json!(2)]);
        assert_eq!(page.next.as_deref(), Some("t1"));
        for last in [
            serde_json::json!({"items": [3]}),
            serde_json::json!({"items": [3], "continue": null}),
            serde_json::json!({"items": [3], "continue": ""}),
        ] {
            assert_eq!(parse_page(last, None).expect("last").next, None);
        }
    }

    #[test]
    fn an_older_servers_whole_list_is_the_only_page() {
        let bare = parse_page(serde_json::json!([1, 2, 3]), None).expect("array");
        assert_eq!((bare.items.len(), bare.next), (3, None));
        let nodes = parse_page(serde_json::json!({"nodes": [1]}), Some("nodes")).expect("nodes");
        assert_eq!((nodes.items.len(), nodes.next), (1, None));
    }

    #[test]
    fn answers_that_are_no_list_are_decode_errors() {
        for bad in [
            serde_json::json!("x"),
            serde_json::json!({"nodes": [1]}),
            serde_json::json!({"items": 1}),
            serde_json::json!({"items": [], "continue": 5}),
        ] {
            let e = parse_page(bad.clone(), None).expect_err("refused");
            assert!(matches!(e, ClientError::Decode(_)), "{bad}: {e}");
        }
    }

    /// Pages served from a list, the way the scheduler does: token = index of the next.
    fn paged(all: &[i64], per_page: usize, token: Option<&str>) -> Page {
        let start: usize = token.map_or(0, |t| t.parse().expect("token"));
        let end = (start + per_page).min(all.len());
        Page {
            items: all[start..end]
                .iter()
                .map(|i| serde_json::json!(i))
                .collect(),
            next: (end < all.len()).then(|| end.to_string()),
        }
    }

    #[tokio::test]
    async fn collect_pages_follows_continue_until_absent() {
        let all: Vec<i64> = (0..1234).collect();
        let mut asked = Vec::new();
        let items = collect_pages(|token| {
            asked.push(token.clone());
            let page = paged(&all, 500, token.as_deref());
            async move { Ok(page) }
        })
        .await
        .expect("collected");
        assert_eq!(items.len(), 1234);
        assert_eq!(items.first(), Some(&serde_json::json!(0)));
        assert_eq!(items.last(), Some(&serde_json::json!(1233)));
        assert_eq!(
            asked,
            [None, Some("500".to_string()), Some("1000".to_string())]
        );
    }

    #[tokio::test]
    async fn collect_pages_takes_an_older_servers_array_as_the_whole_list() {
        let mut calls = 0;
        let items = collect_pages(|_| {
            calls += 1;
            let page = parse_page(serde_json::json!([1, 2]), None);
            async move { page }
        })
        .await
        .expect("collected");
        assert_eq!(items.len(), 2);
        assert_eq!(calls, 1);
    }

    #[tokio::test]
    async fn collect_pages_stops_on_a_repeated_token_and_passes_errors_on() {
        let e = collect_pages(|_| async {
            Ok(Page {
                items: vec![serde_json::json!(1)],
                next: Some("same".into()),
            })
        })
        .await
        .expect_err("loop refused");
        assert!(e.to_string().contains("same continue token"), "{e}");
        let mut calls = 0;
        let e = collect_pages(|token| {
            calls += 1;
            async move {
                match token {
                    None => Ok(Page {
                        items: vec![],
                        next: Some("t".into()),
                    }),
                    Some(_) => Err(api_error(StatusCode::GONE, b"", String::new())),
                }
            }
        })
        .await
        .expect_err("second page fails");
        assert!(matches!(e, ClientError::Api { status, .. } if status == StatusCode::GONE));
        assert_eq!(calls, 2);
    }

    #[test]
    fn unreachable_exits_5() {
        let e = ClientError::Unreachable {
            endpoint: "https://127.0.0.1:1".into(),
            reason: "Connection refused (os error 111)".into(),
        };
        assert_eq!(e.exit_code(), 5);
        assert_eq!(
            e.to_string(),
            "cannot reach https://127.0.0.1:1: Connection refused (os error 111)"
        );
    }
}
