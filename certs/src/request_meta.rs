//! What of a request may go into metric labels and log lines. Both are chosen by the
//! client, so both are bounded here, once for every service: methods outside the
//! standard set collapse into [`OTHER_METHOD`], paths no route matched into
//! [`UNMATCHED_ROUTE`], and logged paths are cut at [`MAX_LOGGED_PATH`] bytes.

use hyper::Method;
use std::fmt;

/// Metric label of every method outside the standard set.
pub const OTHER_METHOD: &str = "OTHER";
/// Metric label of a request no route matched (instead of its path).
pub const UNMATCHED_ROUTE: &str = "unmatched";
/// Longest path written to a log line, bytes; longer ones are cut and their length noted.
pub const MAX_LOGGED_PATH: usize = 256;

/// The method as a bounded metric label: the standard methods by name, anything else
/// [`OTHER_METHOD`].
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => OTHER_METHOD,
    }
}

/// The route template that matched (e.g. `/workloads/{id}`), else [`UNMATCHED_ROUTE`].
pub fn route_label(matched: Option<&axum::extract::MatchedPath>) -> &str {
    matched.map_or(UNMATCHED_ROUTE, |m| m.as_str())
}

/// A path for a log line: at most [`MAX_LOGGED_PATH`] bytes (cut at a character
/// boundary), followed by `…(<n> bytes)` when it was longer.
#[derive(Debug, Clone, Copy)]
pub struct LoggedPath<'a>(pub &'a str);

impl fmt::Display for LoggedPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.0;
        if path.len() <= MAX_LOGGED_PATH {
            return f.write_str(path);
        }
        let mut cut = MAX_LOGGED_PATH;
        while !path.is_char_boundary(cut) {
            cut -= 1;
        }
        write!(f, "{}…({} bytes)", &path[..cut], path.len())
    }
}

/// The request's method for a log line: its name, cut like a path.
pub fn logged_method(method: &Method) -> LoggedPath<'_> {
    LoggedPath(method.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_methods_keep_their_name_and_others_collapse() {
        for m in ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
            let method = Method::from_bytes(m.as_bytes()).expect("method");
            assert_eq!(method_label(&method), m);
        }
        for m in ["TRACE", "CONNECT", "XYZZY", "get", "BREW"] {
            let method = Method::from_bytes(m.as_bytes()).expect("method");
            assert_eq!(method_label(&method), OTHER_METHOD, "{m}");
        }
    }

    #[test]
    fn unmatched_requests_share_one_route_label() {
        assert_eq!(route_label(None), UNMATCHED_ROUTE);
    }

    #[test]
    fn short_paths_are_logged_whole() {
        assert_eq!(LoggedPath("/workloads/abc").to_string(), "/workloads/abc");
        let exact = "a".repeat(MAX_LOGGED_PATH);
        assert_eq!(LoggedPath(&exact).to_string(), exact);
    }

    #[test]
    fn long_paths_are_cut_with_their_length_noted() {
        let long = format!("/{}", "x".repeat(60 * 1024));
        let logged = LoggedPath(&long).to_string();
        assert!(logged.starts_with("/xxx"));
        assert!(
            logged.ends_with(&format!("…({} bytes)", long.len())),
            "{logged}"
        );
        assert!(logged.len() < MAX_LOGGED_PATH + 32, "{}", logged.len());
    }

    #[test]
    fn cuts_fall_on_character_boundaries() {
        let long = "é".repeat(MAX_LOGGED_PATH);
        let logged = LoggedPath(&long).to_string();
        assert!(logged.starts_with("éé"));
        assert!(logged.contains(&format!("({} bytes)", long.len())));
    }
}
