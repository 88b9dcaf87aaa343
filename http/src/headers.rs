//! Hop-by-hop headers (RFC 9110 §7.6.1): they describe one connection, so a proxy
//! must not copy them from one hop to the next.

use http::{header, HeaderMap, HeaderName};

/// Headers that belong to one connection, not to the message.
pub const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Names listed in the `Connection` header (lower case), which are hop-by-hop too.
pub fn connection_listed(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Whether `name` is hop-by-hop: one of [`HOP_BY_HOP`] or named by `Connection`
/// (`listed`, from [`connection_listed`]).
pub fn is_hop_by_hop(name: &HeaderName, listed: &[String]) -> bool {
    HOP_BY_HOP.contains(&name.as_str()) || listed.iter().any(|l| l == name.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn fixed_and_connection_listed_names_are_hop_by_hop() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, X-Private ,"),
        );
        let listed = connection_listed(&h);
        assert_eq!(listed, ["close", "x-private"]);
        assert!(is_hop_by_hop(&header::TRANSFER_ENCODING, &listed));
        assert!(is_hop_by_hop(
            &HeaderName::from_static("x-private"),
            &listed
        ));
        assert!(!is_hop_by_hop(&header::CONTENT_TYPE, &listed));
    }
}
