//! Constraints utoipa's derive cannot express, patched into the generated JSON: what
//! `persys_proto::WorkloadRequest::validate` and the scheduler's query parsing accept,
//! exactly enough that schema-valid requests are accepted and schema-invalid ones are
//! refused (schemathesis checks both directions).

use serde_json::{json, Map, Value};

/// A TCP/UDP port 1-65535 (what `u16` parsing with `> 0` accepts, without signs or
/// leading zeros).
const PORT: &str =
    "(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])";
/// An IPv4 address as Rust parses it (no leading zeros).
const IPV4: &str = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(?:\.(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}";

fn port_mapping() -> String {
    format!("^(?:{PORT}|{PORT}:{PORT}|{IPV4}:(?:{PORT})?:{PORT})(?:/(?:tcp|udp|sctp))?$")
}

/// utoipa writes a struct with a flattened field (`Workload` flattens its spec) as an
/// `allOf` of objects; each such schema becomes the one flat object the server sends,
/// which is what clients, generators and the shape test read.
fn merge_all_of(doc: &mut Value) {
    let Some(schemas) = doc["components"]["schemas"].as_object_mut() else {
        return;
    };
    for schema in schemas.values_mut() {
        let Some(parts) = schema.get("allOf").and_then(Value::as_array) else {
            continue;
        };
        // An inline part with its own description comes wrapped in a one-item oneOf.
        let parts: Vec<&Value> = parts.iter().map(sole_alternative).collect();
        // Only inline objects merge without changing meaning; anything else stays.
        if !parts
            .iter()
            .all(|p| p.get("type") == Some(&json!("object")) && p.get("$ref").is_none())
        {
            continue;
        }
        let mut properties = Map::new();
        let mut required = Vec::new();
        for part in parts {
            if let Some(props) = part.get("properties").and_then(Value::as_object) {
                properties.extend(props.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
            if let Some(req) = part.get("required").and_then(Value::as_array) {
                required.extend(req.iter().cloned());
            }
        }
        let mut merged = json!({"type": "object", "properties": properties});
        if !required.is_empty() {
            merged["required"] = Value::Array(required);
        }
        if let Some(description) = schema.get("description") {
            merged["description"] = description.clone();
        }
        *schema = merged;
    }
}

/// The one schema of a `oneOf` with a single alternative, or `v` itself.
fn sole_alternative(v: &Value) -> &Value {
    match v.get("oneOf").and_then(Value::as_array).map(Vec::as_slice) {
        Some([only]) => only,
        _ => v,
    }
}

/// Applies every refinement to the document.
pub fn refine(doc: &mut Value) {
    merge_all_of(doc);
    let req = &mut doc["components"]["schemas"]["WorkloadRequest"]["properties"];
    if req.is_object() {
        req["name"] = json!({
            "type": "string",
            "description": "Name: 1-63 letters, digits, '-', '_' or '.', starting with a letter or digit; derived from the image when empty or absent.",
            "pattern": r"^[ \t\n\r]*(?:[A-Za-z0-9][A-Za-z0-9_.-]{0,62})?[ \t\n\r]*$"
        });
        req["image"] = json!({
            "type": "string",
            "description": "Image reference.",
            "pattern": r"^[ \t\n\r]*[^\s\u0000-\u001f\u007f-\u009f]+[ \t\n\r]*$"
        });
        req["type"] = json!({
            "description": "Workload type; docker-container when absent or empty.",
            "enum": ["docker-container", "", null]
        });
        req["restartPolicy"] = json!({
            "description": "Restart policy; no when absent or empty.",
            "enum": ["no", "on-failure", "always", "unless-stopped", "", null]
        });
        req["ports"]["items"] = json!({
            "type": "string",
            "pattern": port_mapping(),
            "description": "[ip:]host:container[/tcp|udp|sctp] or container[/proto]"
        });
        req["volumes"]["items"] = json!({
            "type": "string",
            "pattern": "^[^:]+:/[^:]*(?::(?:ro|rw|z|Z)(?:,(?:ro|rw|z|Z))*)?$",
            "description": "source:/target[:ro|rw]"
        });
        // Absent means empty, but null is not a list or a map to the server.
        for field in ["ports", "volumes"] {
            req[field]["type"] = json!("array");
        }
        for field in ["envVars", "labels", "nodeSelector"] {
            req[field]["type"] = json!("object");
        }
        req["envVars"]["propertyNames"] = json!({"type": "string", "pattern": "^[^=\\u0000]+$"});
        for field in ["labels", "nodeSelector"] {
            req[field]["propertyNames"] =
                json!({"type": "string", "minLength": 1, "maxLength": 253});
        }
        req["resources"] = json!({
            "description": "Requested resources; absent or null fields mean 0.",
            "oneOf": [
                {"type": "null"},
                {"$ref": "#/components/schemas/ResourcesRequest"},
                // serde also reads a struct from a sequence: [cpu, memory].
                {"type": "array", "maxItems": 2, "items": {"type": ["integer", "null"], "minimum": 0, "maximum": u64::MAX}}
            ]
        });
    }
    doc["components"]["schemas"]["ResourcesRequest"] = json!({
        "type": "object",
        "description": "cpu in millicores, memory in MB; 0 or null means no request and no limit.",
        "properties": {
            "cpu": {"type": ["integer", "null"], "minimum": 0, "maximum": u64::MAX},
            "memory": {"type": ["integer", "null"], "minimum": 0, "maximum": u64::MAX}
        }
    });
    for (path, method) in [("/workloads", "get"), ("/workloads/{id}/logs", "get")] {
        let Some(params) = doc["paths"][path][method]["parameters"].as_array_mut() else {
            continue;
        };
        for p in params {
            let schema = match p["name"].as_str() {
                // Case-insensitive on the server; empty means no filter.
                Some("status") => json!({"enum": [
                    "", "Pending", "Scheduled", "Pulling", "ImagePullBackOff", "ContainerCreating",
                    "Running", "Restarting", "Stopping", "Stopped", "Exited", "Failed",
                    "Missing", "Unknown"
                ]}),
                Some("label") => json!({"type": "string", "pattern": "^$|="}),
                Some("tail") => json!({"anyOf": [
                    {"type": "integer", "minimum": 0, "maximum": u64::MAX},
                    {"enum": ["", "all"]}
                ]}),
                Some("follow" | "timestamps") => json!({"enum": ["", "true", "false", "1", "0"]}),
                _ => continue,
            };
            p["schema"] = schema;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use persys_proto::WorkloadRequest;

    fn matches(pattern: &str, s: &str) -> bool {
        regex::Regex::new(pattern)
            .expect("pattern compiles")
            .is_match(s)
    }

    fn valid(req: serde_json::Value) -> bool {
        serde_json::from_value::<WorkloadRequest>(req)
            .map(|r| r.validate().is_ok())
            .unwrap_or(false)
    }

    /// The patterns agree with the validator they describe, both ways.
    #[test]
    fn patterns_agree_with_workload_validation() {
        let mut doc = json!({"components": {"schemas": {"WorkloadRequest": {"properties": {
            "ports": {}, "volumes": {}, "envVars": {}, "labels": {}, "nodeSelector": {}
        }}}}});
        refine(&mut doc);
        let props = &doc["components"]["schemas"]["WorkloadRequest"]["properties"];
        let pat = |field: &str| {
            props[field]["pattern"]
                .as_str()
                .expect("pattern")
                .to_string()
        };
        let item = |field: &str| {
            props[field]["items"]["pattern"]
                .as_str()
                .expect("pattern")
                .to_string()
        };
        let ports = [
            "80",
            "8080:80",
            "80/tcp",
            "1:65535/udp",
            "127.0.0.1:8080:80",
            "0.0.0.0::80/sctp",
            "0",
            "65536",
            "80:0",
            "a:80",
            "80/icmp",
            "1.2.3:80:80",
            "",
            "80:80:80:80",
            "01.2.3.4:1:1",
        ];
        for p in ports {
            let ok = valid(json!({"image": "busybox", "ports": [p]}));
            assert_eq!(matches(&item("ports"), p), ok, "port {p:?}");
        }
        let volumes = [
            "/data:/data",
            "v:/d:ro",
            "v:/d:rw,z",
            "v:d",
            ":/d",
            "v:/d:rx",
            "v",
            "a:/b:ro:x",
        ];
        for v in volumes {
            let ok = valid(json!({"image": "busybox", "volumes": [v]}));
            assert_eq!(matches(&item("volumes"), v), ok, "volume {v:?}");
        }
        let names = [
            "web",
            "Web_1.x",
            " web ",
            "",
            "  ",
            "-web",
            "we b",
            "a/b",
            &"n".repeat(64),
        ];
        for n in names {
            let ok = valid(json!({"image": "busybox", "name": n}));
            assert_eq!(matches(&pat("name"), n), ok, "name {n:?}");
        }
        let images = [
            "busybox:local",
            " busybox ",
            "",
            " ",
            "a b",
            "a\u{1}b",
            "reg.io/x/y@sha256:ab",
        ];
        for i in images {
            let ok = valid(json!({"image": i}));
            assert_eq!(matches(&pat("image"), i), ok, "image {i:?}");
        }
        let env_key = props["envVars"]["propertyNames"]["pattern"]
            .as_str()
            .expect("pattern");
        for k in ["A", "a=b", "", "PATH"] {
            let ok = valid(json!({"image": "busybox", "envVars": {k: "v"}}));
            assert_eq!(matches(env_key, k), ok, "env {k:?}");
        }
    }
}
