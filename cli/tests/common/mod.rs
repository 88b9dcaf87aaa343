//! Helpers of the binary tests: a clean `persys` command and a canned plain-HTTP server.

#![allow(dead_code)] // each test file uses a different subset

use assert_cmd::Command;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;

/// `persys` with a clean environment: no config from the developer's machine leaks in.
pub fn persys(home: &Path) -> Command {
    let mut cmd = Command::cargo_bin("persys").expect("persys binary is built");
    cmd.env_remove("PERSYS_CONFIG")
        .env_remove("PERSYS_TOKEN")
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .env("HOME", home);
    cmd
}

/// One request the fake server saw.
#[derive(Debug)]
pub struct Seen {
    /// `GET /path HTTP/1.1`.
    pub request_line: String,
    /// Header lines, names lower-cased (`authorization: Bearer x`).
    pub headers: Vec<String>,
    /// The body.
    pub body: String,
}

impl Seen {
    /// The value of a header, if sent.
    pub fn header(&self, name: &str) -> Option<String> {
        let prefix = format!("{}:", name.to_ascii_lowercase());
        self.headers
            .iter()
            .find_map(|h| h.strip_prefix(&prefix).map(|v| v.trim().to_string()))
    }
}

/// One canned answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Content type.
    pub content_type: &'static str,
    /// Body.
    pub body: String,
}

/// A JSON answer.
pub fn json(status: u16, body: impl Into<String>) -> Answer {
    Answer {
        status,
        content_type: "application/json",
        body: body.into(),
    }
}

/// A server-sent events answer: the body is the whole stream, then it ends.
pub fn sse(body: impl Into<String>) -> Answer {
    Answer {
        status: 200,
        content_type: "text/event-stream",
        body: body.into(),
    }
}

/// Serve `answers` (status, body as JSON), one per connection, then stop.
pub fn fake_server(answers: Vec<(u16, &'static str)>) -> (String, mpsc::Receiver<Seen>) {
    serve(answers.into_iter().map(|(s, b)| json(s, b)).collect())
}

/// Serve `answers`, one per connection in order, then stop; report what was asked.
pub fn serve(answers: Vec<Answer>) -> (String, mpsc::Receiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for answer in answers {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut request_line = String::new();
            reader.read_line(&mut request_line).expect("request line");
            let mut length = 0usize;
            let mut headers = Vec::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).expect("header");
                if line.trim().is_empty() {
                    break;
                }
                let line = match line.split_once(':') {
                    Some((k, v)) => format!("{}:{}", k.to_ascii_lowercase(), v.trim_end()),
                    None => line.trim_end().to_string(),
                };
                if let Some(v) = line.strip_prefix("content-length:") {
                    length = v.trim().parse().expect("length");
                }
                headers.push(line);
            }
            let mut buf = vec![0; length];
            reader.read_exact(&mut buf).expect("body");
            let _ = tx.send(Seen {
                request_line: request_line.trim().to_string(),
                headers,
                body: String::from_utf8_lossy(&buf).into_owned(),
            });
            let mut stream = stream;
            let _ = write!(
                stream,
                "HTTP/1.1 {} X\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
                answer.status,
                answer.content_type,
                answer.body.len(),
                answer.body
            );
        }
    });
    (url, rx)
}

/// A config file at `dir/config.yaml` pointing at `endpoint`, plus `extra` YAML lines.
pub fn config_with(dir: &Path, endpoint: &str, extra: &str) -> PathBuf {
    let path = dir.join("config.yaml");
    std::fs::write(&path, format!("api_endpoint: {endpoint}\n{extra}")).expect("write config");
    path
}

/// A config file pointing at `endpoint`.
pub fn config_for(dir: &Path, endpoint: &str) -> PathBuf {
    config_with(dir, endpoint, "")
}

/// A port nothing listens on (reserved for this process, so nothing will).
pub fn dead_port() -> u16 {
    persys_testports::free_port()
}

/// The id of [`WORKLOAD`].
pub const WORKLOAD_ID: &str = "0b3e4c1a-1111-4222-8333-444455556666";

/// A stored workload record, Running on node-1.
pub const WORKLOAD: &str = r#"{"id":"0b3e4c1a-1111-4222-8333-444455556666","name":"hello","type":"docker-container","image":"busybox:local","command":["echo","hi"],"envVars":{},"ports":[],"volumes":[],"restartPolicy":"no","resources":{"cpu":0,"memory":0},"labels":{},"nodeSelector":{},"nodeId":"node-1","status":"Running","desiredState":"Running","createdAt":"2024-01-01T00:00:00Z","updatedAt":"2024-01-01T00:00:00Z","generation":1}"#;

/// [`WORKLOAD`] with another status, update time and optional extra fields (`"k":v,`).
pub fn workload_with(status: &str, updated_second: u32, extra: &str) -> String {
    WORKLOAD
        .replace(
            r#""status":"Running""#,
            &format!(r#"{extra}"status":"{status}""#),
        )
        .replace(
            r#""updatedAt":"2024-01-01T00:00:00Z""#,
            &format!(r#""updatedAt":"2024-01-01T00:00:{updated_second:02}Z""#),
        )
}

/// A node record.
pub const NODE: &str = r#"{"nodeId":"node-1","hostname":"h","ipAddress":"127.0.0.1","agentPort":8080,"osName":"linux","kernelVersion":"6.1","status":"Active","totalCpu":4,"totalMemory":8000,"availableCpu":3,"availableMemory":7000,"allocatedCpu":250,"allocatedMemory":64,"labels":{},"domainName":"node-1.cluster.local.dev","lastHeartbeat":"2024-01-01T00:00:00Z","registeredAt":"2024-01-01T00:00:00Z"}"#;

/// Standard output of a finished command, as text.
pub fn stdout_of(out: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&out.get_output().stdout).into_owned()
}

/// Standard error of a finished command, as text.
pub fn stderr_of(out: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&out.get_output().stderr).into_owned()
}
