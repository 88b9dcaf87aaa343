//! `GET /workloads/{id}/logs`: the agent's log stream piped through, never buffered
//! whole and never stored.

use super::error::AppError;
use super::AppState;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue};
use axum::response::Response;
use futures::StreamExt;
use persys_proto::LogsQuery;
use std::collections::HashMap;

fn flag(q: &HashMap<String, String>, name: &str) -> Result<bool, AppError> {
    match q.get(name).map(String::as_str) {
        None | Some("" | "false" | "0") => Ok(false),
        Some("true" | "1") => Ok(true),
        Some(other) => Err(AppError::invalid_field(
            name,
            format!("{other:?} is not true or false"),
        )),
    }
}

/// Parse `?tail=N&follow=true&timestamps=true&service=NAME`.
pub fn parse_query(q: &HashMap<String, String>) -> Result<LogsQuery, AppError> {
    let tail = match q.get("tail").map(String::as_str) {
        None | Some("" | "all") => None,
        Some(t) => Some(t.parse::<u64>().map_err(|_| {
            AppError::invalid_field("tail", format!("{t:?} is not a number of lines"))
        })?),
    };
    let service = match q.get("service").map(|s| s.trim()) {
        None | Some("") => None,
        Some(s) if persys_proto::compose::is_service_name(s) => Some(s.to_string()),
        Some(s) => {
            return Err(AppError::invalid_field(
                "service",
                format!("{s:?} is not a service name"),
            ))
        }
    };
    Ok(LogsQuery {
        tail,
        follow: flag(q, "follow")?,
        timestamps: flag(q, "timestamps")?,
        service,
    })
}

/// Stream the workload's container logs from its agent.
pub async fn logs(
    State(ctx): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, AppError> {
    let query = parse_query(&q)?;
    let w = ctx
        .cache()
        .workload(&id)
        .ok_or_else(|| AppError::not_found(format!("workload {id} not found")))?
        .value;
    let node_id = w.node_id.ok_or_else(|| {
        AppError::conflict(format!(
            "workload {id} is not placed on a node yet ({})",
            w.status
        ))
    })?;
    let node = ctx
        .cache()
        .node(&node_id)
        .ok_or_else(|| AppError::not_found(format!("node {node_id} of workload {id} not found")))?
        .value;
    let upstream = ctx.agents().logs(&node, &id, &query).await?;
    let content_type = upstream
        .headers()
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("text/plain; charset=utf-8"));
    // End followed streams at shutdown so that draining does not wait for them.
    let stream = persys_http::stream::end_at_error(upstream.bytes_stream(), "logs from the agent")
        .take_until(ctx.shutdown().clone().cancelled_owned());
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(resp)
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
    fn query_parses_tail_follow_and_timestamps() {
        let l = parse_query(&q(&[
            ("tail", "10"),
            ("follow", "true"),
            ("timestamps", "1"),
        ]))
        .expect("valid");
        assert_eq!((l.tail, l.follow, l.timestamps), (Some(10), true, true));
        assert_eq!(parse_query(&q(&[])).expect("valid"), LogsQuery::default());
    }

    #[test]
    fn bad_tail_names_the_field() {
        let e = parse_query(&q(&[("tail", "ten")])).expect_err("invalid");
        assert!(e.message.starts_with("tail:"));
    }
}
