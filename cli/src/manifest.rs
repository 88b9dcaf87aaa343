//! Files for `persys apply`: JSON or YAML, one workload or service (`kind: Service`), a
//! list of them, or several YAML documents (`---`) / concatenated JSON values. Pure:
//! text in, validated requests out, so every mistake is reported before anything is
//! sent.

use persys_proto::{ServiceRequest, WorkloadRequest};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::path::Path;

/// Keys a workload request understands.
const REQUEST_KEYS: [&str; 26] = [
    "kind",
    "healthCheck",
    "name",
    "type",
    "image",
    "command",
    "envVars",
    "ports",
    "volumes",
    "network",
    "restartPolicy",
    "resources",
    "labels",
    "nodeSelector",
    "secretEnv",
    "privileged",
    "capAdd",
    "devices",
    "pidMode",
    "ipcMode",
    "compose",
    "localPath",
    "gitRepo",
    "gitBranch",
    "gitToken",
    "composeFile",
];

/// Keys the server owns: accepted in a file (e.g. a record saved with `-o yaml`) and
/// ignored without a warning.
const SERVER_KEYS: [&str; 18] = [
    "health",
    "healthOutput",
    "serviceId",
    "serviceRevision",
    "replica",
    "id",
    "status",
    "createdAt",
    "updatedAt",
    "nodeId",
    "desiredState",
    "generation",
    "statusReason",
    "exitCode",
    "restartCount",
    "containerId",
    "services",
    "revision",
];

/// Maps whose values are strings; YAML writes `PORT: 8080` as a number.
const STRING_MAPS: [&str; 4] = ["envVars", "labels", "nodeSelector", "secretEnv"];
/// Lists whose items are strings; YAML writes `- 8080` as a number.
const STRING_LISTS: [&str; 4] = ["ports", "volumes", "capAdd", "devices"];

/// The syntax of a workload file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    /// JSON: one value, or several concatenated (a `.json` file).
    Json,
    /// Looks like JSON (starts with `{` or `[`) but may be YAML flow style.
    JsonLike,
    /// YAML: one or more documents.
    Yaml,
}

impl Syntax {
    /// By extension (`.json`, `.yaml`, `.yml`), else by content: JSON-like if it
    /// starts with `{` or `[`.
    pub fn detect(path: &Path, text: &str) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("json") => Self::Json,
            Some(e) if e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml") => {
                Self::Yaml
            }
            _ if text.trim_start().starts_with(['{', '[']) => Self::JsonLike,
            _ => Self::Yaml,
        }
    }
}

/// Why a file cannot be applied. Positions count workloads from 1 in file order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Not valid JSON/YAML.
    #[error("not valid {syntax}: {reason}")]
    Syntax {
        /// `JSON` or `YAML`.
        syntax: &'static str,
        /// The parser's message (with line and column).
        reason: String,
    },
    /// A document or list item is not an object.
    #[error("workload {position} is not an object but {found}")]
    NotAnObject {
        /// Which workload.
        position: usize,
        /// What it is instead.
        found: &'static str,
    },
    /// A field has the wrong type or value.
    #[error("workload {position}{}: {reason}", name_suffix(.name))]
    Invalid {
        /// Which workload.
        position: usize,
        /// Its name, if it has one.
        name: String,
        /// What is wrong (names the field).
        reason: String,
    },
    /// No workload at all.
    #[error("no workload in the file")]
    Empty,
}

fn name_suffix(name: &str) -> String {
    if name.is_empty() {
        String::new()
    } else {
        format!(" ({name})")
    }
}

/// Keys of a service (`kind: Service`).
const SERVICE_KEYS: [&str; 9] = [
    "kind",
    "name",
    "replicas",
    "template",
    "update",
    "schedule",
    "concurrencyPolicy",
    "successfulJobsHistory",
    "failedJobsHistory",
];
/// Keys the server owns in a service record (and its answer), ignored in a file.
const SERVICE_SERVER_KEYS: [&str; 10] = [
    "lastScheduleTime",
    "revision",
    "history",
    "rollout",
    "rolloutReason",
    "createdAt",
    "updatedAt",
    "replicaWorkloads",
    "readyReplicas",
    "result",
];

/// What one entry of a file asks for.
#[derive(Debug, Clone)]
pub enum Request {
    /// A workload (`POST /workloads`).
    Workload(Box<WorkloadRequest>),
    /// A service, created or updated (`PUT /services/{name}`); the body as checked.
    Service(Value),
}

impl Request {
    /// The workload request, when this is one.
    pub fn workload(&self) -> Option<&WorkloadRequest> {
        match self {
            Self::Workload(w) => Some(w),
            Self::Service(_) => None,
        }
    }
}

/// One workload or service of a file, checked.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Position in the file, from 1.
    pub position: usize,
    /// Its name (as given, or derived from the image as the server will).
    pub name: String,
    /// The request to send.
    pub request: Request,
    /// Keys that are ignored (likely typos), for a warning.
    pub unknown_keys: Vec<String>,
}

/// Parse a whole file into checked workloads.
pub fn parse(text: &str, syntax: Syntax) -> Result<Vec<Entry>, ManifestError> {
    let docs = match syntax {
        Syntax::Json => json_values(text)?,
        Syntax::JsonLike => json_values(text).or_else(|json_err| {
            // `{name: web}` is YAML flow style, not JSON: give YAML a chance before
            // reporting the JSON error.
            yaml_values(text).map_err(|_| json_err)
        })?,
        Syntax::Yaml => yaml_values(text)?,
    };
    let mut objects = Vec::new();
    for doc in docs {
        match doc {
            Value::Null => {}
            Value::Array(items) => objects.extend(items),
            other => objects.push(other),
        }
    }
    if objects.is_empty() {
        return Err(ManifestError::Empty);
    }
    objects
        .into_iter()
        .enumerate()
        .map(|(i, v)| entry(i + 1, v))
        .collect()
}

fn json_values(text: &str) -> Result<Vec<Value>, ManifestError> {
    serde_json::Deserializer::from_str(text)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .map_err(|e| ManifestError::Syntax {
            syntax: "JSON",
            reason: e.to_string(),
        })
}

fn yaml_values(text: &str) -> Result<Vec<Value>, ManifestError> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(Value::deserialize)
        .collect::<Result<_, _>>()
        .map_err(|e| ManifestError::Syntax {
            syntax: "YAML",
            reason: e.to_string(),
        })
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn entry(position: usize, value: Value) -> Result<Entry, ManifestError> {
    let Value::Object(mut obj) = value else {
        return Err(ManifestError::NotAnObject {
            position,
            found: kind_of(&value),
        });
    };
    let given_name = obj
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let invalid = |reason: String| ManifestError::Invalid {
        position,
        name: given_name.clone(),
        reason,
    };
    match obj.get("kind").and_then(Value::as_str) {
        None | Some("Workload") => {}
        Some("Service") => return service_entry(position, obj, given_name),
        Some(other) => {
            return Err(invalid(format!(
                "kind {other:?} is not Workload or Service"
            )))
        }
    }
    obj.remove("kind");
    stringify_scalars(&mut obj);
    let unknown_keys = obj
        .keys()
        .filter(|k| !REQUEST_KEYS.contains(&k.as_str()) && !SERVER_KEYS.contains(&k.as_str()))
        .cloned()
        .collect();
    let request: WorkloadRequest =
        serde_json::from_value(Value::Object(obj)).map_err(|e| invalid(e.to_string()))?;
    let spec = request
        .clone()
        .validate()
        .map_err(|e| invalid(e.to_string()))?;
    Ok(Entry {
        position,
        name: spec.name,
        request: Request::Workload(Box::new(request)),
        unknown_keys,
    })
}

fn service_entry(
    position: usize,
    mut obj: Map<String, Value>,
    name: String,
) -> Result<Entry, ManifestError> {
    let invalid = |reason: String| ManifestError::Invalid {
        position,
        name: name.clone(),
        reason,
    };
    let mut unknown_keys: Vec<String> = obj
        .keys()
        .filter(|k| {
            !SERVICE_KEYS.contains(&k.as_str()) && !SERVICE_SERVER_KEYS.contains(&k.as_str())
        })
        .cloned()
        .collect();
    obj.retain(|k, _| SERVICE_KEYS.contains(&k.as_str()));
    if let Some(Value::Object(template)) = obj.get_mut("template") {
        stringify_scalars(template);
        unknown_keys.extend(
            template
                .keys()
                .filter(|k| {
                    !REQUEST_KEYS.contains(&k.as_str()) && !SERVER_KEYS.contains(&k.as_str())
                })
                .map(|k| format!("template.{k}")),
        );
    }
    let request: ServiceRequest =
        serde_json::from_value(Value::Object(obj.clone())).map_err(|e| invalid(e.to_string()))?;
    let desired = request.validate().map_err(|e| invalid(e.to_string()))?;
    Ok(Entry {
        position,
        name: desired.name,
        request: Request::Service(Value::Object(obj)),
        unknown_keys,
    })
}

/// Numbers and booleans where strings are expected become strings (`PORT: 8080`).
fn stringify_scalars(obj: &mut Map<String, Value>) {
    let to_string = |v: &mut Value| {
        if matches!(v, Value::Number(_) | Value::Bool(_)) {
            *v = Value::String(v.to_string());
        }
    };
    for key in STRING_MAPS {
        if let Some(Value::Object(m)) = obj.get_mut(key) {
            m.values_mut().for_each(to_string);
        }
    }
    for key in STRING_LISTS {
        if let Some(Value::Array(items)) = obj.get_mut(key) {
            items.iter_mut().for_each(to_string);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(entries: &[Entry]) -> Vec<&str> {
        entries.iter().map(|e| e.name.as_str()).collect()
    }

    #[test]
    fn secret_env_is_read_and_unsupported_security_keys_are_refused() {
        let e = parse(
            "name: db\nimage: busybox:local\nsecretEnv:\n  DB_PASSWORD: hunter2\n  PIN: 1234\n",
            Syntax::Yaml,
        )
        .expect("parses");
        assert_eq!(
            e[0].request.workload().expect("a workload").secret_env["PIN"],
            "1234"
        );
        assert!(e[0].unknown_keys.is_empty());
        let err = parse(
            "image: busybox:local\nsecurityOpt: [seccomp=unconfined]\n",
            Syntax::Yaml,
        )
        .expect_err("refused");
        assert!(err.to_string().contains("securityOpt"), "{err}");
        // A record saved with `-o yaml` shows "***": it cannot be applied as a secret.
        let err = parse(
            "image: busybox:local\nsecretEnv: {K: '***'}\n",
            Syntax::Yaml,
        )
        .expect_err("placeholder");
        assert!(err.to_string().contains("secretEnv.K"), "{err}");
    }

    #[test]
    fn single_json_object_is_one_workload() {
        let e = parse(
            r#"{"name":"web","image":"busybox:local","command":["sleep","60"]}"#,
            Syntax::Json,
        )
        .expect("parses");
        assert_eq!(names(&e), ["web"]);
        assert_eq!(
            e[0].request.workload().expect("a workload").image,
            "busybox:local"
        );
        assert_eq!(e[0].position, 1);
    }

    #[test]
    fn json_list_is_several_workloads() {
        let e = parse(
            r#"[{"name":"a","image":"busybox:local"},{"name":"b","image":"busybox:local"}]"#,
            Syntax::Json,
        )
        .expect("parses");
        assert_eq!(names(&e), ["a", "b"]);
    }

    #[test]
    fn concatenated_json_values_are_several_workloads() {
        let e = parse(
            "{\"name\":\"a\",\"image\":\"x\"}\n{\"name\":\"b\",\"image\":\"x\"}\n",
            Syntax::Json,
        )
        .expect("parses");
        assert_eq!(names(&e), ["a", "b"]);
    }

    #[test]
    fn single_yaml_document_is_one_workload() {
        let text = "name: web\nimage: busybox:local\ncommand: echo hi\nenvVars:\n  MODE: prod\n";
        let e = parse(text, Syntax::Yaml).expect("parses");
        assert_eq!(names(&e), ["web"]);
        assert_eq!(
            e[0].request.workload().expect("a workload").env_vars["MODE"],
            "prod"
        );
        assert_eq!(
            e[0].request.workload().expect("a workload").command,
            Some(Value::String("echo hi".into()))
        );
    }

    #[test]
    fn yaml_list_is_several_workloads() {
        let text = "- name: a\n  image: busybox:local\n- name: b\n  image: busybox:local\n";
        assert_eq!(
            names(&parse(text, Syntax::Yaml).expect("parses")),
            ["a", "b"]
        );
    }

    #[test]
    fn yaml_documents_are_several_workloads_and_empty_ones_are_skipped() {
        let text = "---\nname: a\nimage: busybox:local\n---\n---\n- name: b\n  image: x\n- name: c\n  image: x\n";
        let e = parse(text, Syntax::Yaml).expect("parses");
        assert_eq!(names(&e), ["a", "b", "c"]);
        assert_eq!(e[2].position, 3);
    }

    #[test]
    fn yaml_numbers_where_strings_belong_become_strings() {
        let text = "name: web\nimage: x\nenvVars:\n  PORT: 8080\n  DEBUG: true\nlabels:\n  tier: 1\nports:\n  - 8080\n";
        let e = parse(text, Syntax::Yaml).expect("parses");
        assert_eq!(
            e[0].request.workload().expect("a workload").env_vars["PORT"],
            "8080"
        );
        assert_eq!(
            e[0].request.workload().expect("a workload").env_vars["DEBUG"],
            "true"
        );
        assert_eq!(
            e[0].request.workload().expect("a workload").labels["tier"],
            "1"
        );
        assert_eq!(e[0].request.workload().expect("a workload").ports, ["8080"]);
    }

    #[test]
    fn yaml_port_mapping_stays_a_string() {
        let text = "name: web\nimage: x\nports:\n  - 8080:80\n  - \"53:53/udp\"\n";
        let e = parse(text, Syntax::Yaml).expect("parses");
        assert_eq!(
            e[0].request.workload().expect("a workload").ports,
            ["8080:80", "53:53/udp"]
        );
    }

    #[test]
    fn yaml_flow_object_in_a_json_looking_file_is_accepted() {
        let e = parse("{name: web, image: x}", Syntax::JsonLike).expect("parses as YAML");
        assert_eq!(names(&e), ["web"]);
    }

    #[test]
    fn bad_json_file_reports_the_json_error_with_its_line() {
        let e = parse("{\"name\": \"web\",\n \"image\": }", Syntax::Json).expect_err("bad");
        let msg = e.to_string();
        assert!(msg.starts_with("not valid JSON:"), "{msg}");
        assert!(msg.contains("line 2"), "{msg}");
    }

    #[test]
    fn invalid_workload_names_its_position_name_and_field() {
        let text = "name: ok\nimage: x\n---\nname: bad\nimage: x\nresources:\n  cpu: -1\n";
        let e = parse(text, Syntax::Yaml).expect_err("invalid");
        let msg = e.to_string();
        assert!(msg.starts_with("workload 2 (bad): resources.cpu"), "{msg}");
    }

    #[test]
    fn missing_image_is_refused_before_sending() {
        let e = parse("name: web\n", Syntax::Yaml).expect_err("invalid");
        assert!(e.to_string().contains("image"), "{e}");
    }

    #[test]
    fn wrong_field_type_is_refused() {
        let e = parse("name: web\nimage: x\nports: 8080\n", Syntax::Yaml).expect_err("invalid");
        assert!(
            matches!(e, ManifestError::Invalid { position: 1, .. }),
            "{e:?}"
        );
    }

    #[test]
    fn scalar_document_is_not_a_workload() {
        let e = parse("just a string\n", Syntax::Yaml).expect_err("invalid");
        assert_eq!(
            e,
            ManifestError::NotAnObject {
                position: 1,
                found: "a string"
            }
        );
    }

    #[test]
    fn empty_file_is_refused() {
        assert_eq!(
            parse("", Syntax::Yaml).expect_err("empty"),
            ManifestError::Empty
        );
        assert_eq!(
            parse("[]", Syntax::Json).expect_err("empty"),
            ManifestError::Empty
        );
    }

    #[test]
    fn unknown_keys_are_reported_and_server_keys_are_not() {
        let text = "name: web\nimage: x\nenv_vars:\n  A: 1\nid: \"\"\nstatus: Running\n";
        let e = parse(text, Syntax::Yaml).expect("parses");
        assert_eq!(e[0].unknown_keys, ["env_vars"]);
    }

    #[test]
    fn name_is_derived_from_the_image_when_absent() {
        let e = parse("image: busybox:local\n", Syntax::Yaml).expect("parses");
        assert!(!e[0].name.is_empty());
    }

    #[test]
    fn syntax_is_chosen_by_extension_then_content() {
        assert_eq!(Syntax::detect(Path::new("w.json"), "a: 1"), Syntax::Json);
        assert_eq!(Syntax::detect(Path::new("w.YML"), "{}"), Syntax::Yaml);
        assert_eq!(Syntax::detect(Path::new("-"), "  [{}]"), Syntax::JsonLike);
        assert_eq!(Syntax::detect(Path::new("-"), "name: x"), Syntax::Yaml);
    }

    #[test]
    fn a_service_document_is_checked_and_sent_as_a_service() {
        let yaml = "kind: Service\nname: web\nreplicas: 3\ntemplate:\n  image: busybox:local\n  command: [\"httpd\", \"-f\"]\n  envVars: {PORT: 8080}\n  healthCheck:\n    http: {path: /, port: 8080}\n    intervalSeconds: 1\n    retries: 2\nupdate:\n  parallelism: 1\n  order: start-first\n  minHealthySeconds: 2\n  healthyDeadlineSeconds: 15\n  failureAction: rollback\nrevision: 4\ncolour: blue\n---\nname: job\nimage: busybox:local\n";
        let e = parse(yaml, Syntax::Yaml).expect("parses");
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].name, "web");
        let Request::Service(body) = &e[0].request else {
            panic!("a service: {:?}", e[0].request)
        };
        assert_eq!(
            body["template"]["envVars"]["PORT"], "8080",
            "scalars made strings"
        );
        assert!(body.get("revision").is_none(), "server keys are not sent");
        assert_eq!(e[0].unknown_keys, ["colour"]);
        assert!(e[1].request.workload().is_some());
    }

    #[test]
    fn a_bad_service_or_kind_is_refused_before_anything_is_sent() {
        let bad = parse(
            "kind: Service\nname: web\ntemplate: {image: x}\nupdate: {parallelism: 0}\n",
            Syntax::Yaml,
        )
        .expect_err("refused");
        assert!(bad.to_string().contains("update.parallelism"), "{bad}");
        let kind = parse("kind: Deployment\nname: web\n", Syntax::Yaml).expect_err("refused");
        assert!(kind.to_string().contains("Deployment"), "{kind}");
    }
}
