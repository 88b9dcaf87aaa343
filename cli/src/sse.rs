//! A server-sent events parser (the `text/event-stream` of `GET /events`): bytes in,
//! whole events out, however the stream is cut into chunks.

/// The longest line kept; a workload record is a few KB, so more is a broken stream.
const MAX_LINE_BYTES: usize = 8 * 1024 * 1024;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field (`message` when absent).
    pub event: String,
    /// The `data:` lines, joined by newlines.
    pub data: String,
}

/// The stream broke the format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// A line longer than any event the server sends.
    #[error("event stream line longer than {MAX_LINE_BYTES} bytes")]
    LineTooLong,
}

/// Incremental parser: feed chunks, get the events they complete.
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    event: String,
    data: Vec<String>,
}

impl SseParser {
    /// Consume a chunk; return the events completed by it (a blank line ends one).
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        let mut out = Vec::new();
        for &b in chunk {
            if b != b'\n' {
                if self.line.len() >= MAX_LINE_BYTES {
                    return Err(SseError::LineTooLong);
                }
                self.line.push(b);
                continue;
            }
            if self.line.last() == Some(&b'\r') {
                self.line.pop();
            }
            let line = String::from_utf8_lossy(&std::mem::take(&mut self.line)).into_owned();
            if let Some(ev) = self.line_done(&line) {
                out.push(ev);
            }
        }
        Ok(out)
    }

    fn line_done(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            let event = std::mem::take(&mut self.event);
            if self.data.is_empty() {
                return None;
            }
            let data = std::mem::take(&mut self.data).join("\n");
            return Some(SseEvent {
                event: if event.is_empty() {
                    "message".into()
                } else {
                    event
                },
                data,
            });
        }
        if line.starts_with(':') {
            // A comment: the server's keep-alive.
            return None;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => self.event = value.to_string(),
            "data" => self.data.push(value.to_string()),
            // `id` and `retry` are for reconnecting browsers; nothing to do here.
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(event: &str, data: &str) -> SseEvent {
        SseEvent {
            event: event.into(),
            data: data.into(),
        }
    }

    #[test]
    fn events_are_split_on_blank_lines() {
        let mut p = SseParser::default();
        let got = p
            .feed(b"event: workload\ndata: {\"a\":1}\n\nevent: node\ndata: {}\n\n")
            .expect("parses");
        assert_eq!(got, [ev("workload", "{\"a\":1}"), ev("node", "{}")]);
    }

    #[test]
    fn an_event_cut_across_chunks_is_assembled() {
        let mut p = SseParser::default();
        assert!(p.feed(b"event: wor").expect("ok").is_empty());
        assert!(p.feed(b"kload\r\ndata: {\"x\"").expect("ok").is_empty());
        let got = p.feed(b":2}\r\n\r\n").expect("ok");
        assert_eq!(got, [ev("workload", "{\"x\":2}")]);
    }

    #[test]
    fn keep_alive_comments_and_unknown_fields_are_ignored() {
        let mut p = SseParser::default();
        let got = p
            .feed(b":\n\n: ping\n\nid: 7\nretry: 10\ndata: x\n\n")
            .expect("parses");
        assert_eq!(got, [ev("message", "x")]);
    }

    #[test]
    fn several_data_lines_are_joined_with_newlines() {
        let mut p = SseParser::default();
        let got = p.feed(b"data: a\ndata:b\n\n").expect("parses");
        assert_eq!(got, [ev("message", "a\nb")]);
    }

    #[test]
    fn event_name_does_not_leak_into_the_next_event() {
        let mut p = SseParser::default();
        let got = p
            .feed(b"event: lagged\ndata: 3\n\ndata: y\n\n")
            .expect("parses");
        assert_eq!(got, [ev("lagged", "3"), ev("message", "y")]);
    }
}
