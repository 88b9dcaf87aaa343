//! Compose's variable interpolation in values: `$VAR`, `${VAR}`, `${VAR:-default}`,
//! `${VAR-default}`, `${VAR:?message}`, `${VAR?message}`, `${VAR:+other}`,
//! `${VAR+other}` (defaults may nest), and `$$` for a literal `$`.

use super::ComposeError;
use std::collections::BTreeMap;

/// Interpolate one value. `Err` carries the message of a `${VAR?message}` whose
/// variable is unset, or of a malformed reference.
pub fn interpolate(s: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(braced) = after.strip_prefix('{') {
            let end = closing_brace(braced)
                .ok_or_else(|| format!("unterminated variable reference in {s:?}"))?;
            out.push_str(&expand(&braced[..end], vars)?);
            rest = &braced[end + 1..];
        } else {
            let len = name_len(after);
            if len == 0 {
                // A lone `$` stays as it is.
                out.push('$');
            } else {
                out.push_str(vars.get(&after[..len]).map(String::as_str).unwrap_or(""));
            }
            rest = &after[len..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Length of the variable name at the start of `s`.
fn name_len(s: &str) -> usize {
    let mut len = 0;
    for (i, c) in s.char_indices() {
        let ok = c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit());
        if !ok {
            break;
        }
        len = i + c.len_utf8();
    }
    len
}

/// Index of the `}` closing a reference whose `{` came just before `s`.
fn closing_brace(s: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return Some(i),
            '}' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// Expand the inside of `${...}`.
fn expand(inner: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let len = name_len(inner);
    if len == 0 {
        return Err(format!("invalid variable reference ${{{inner}}}"));
    }
    let (name, op) = inner.split_at(len);
    let value = vars.get(name);
    let set = value.is_some();
    let non_empty = value.is_some_and(|v| !v.is_empty());
    let current = || value.cloned().unwrap_or_default();
    let (kind, arg) = match op {
        "" => return Ok(current()),
        _ if op.starts_with(":-") => (":-", &op[2..]),
        _ if op.starts_with(":?") => (":?", &op[2..]),
        _ if op.starts_with(":+") => (":+", &op[2..]),
        _ if op.starts_with('-') => ("-", &op[1..]),
        _ if op.starts_with('?') => ("?", &op[1..]),
        _ if op.starts_with('+') => ("+", &op[1..]),
        _ => return Err(format!("invalid variable reference ${{{inner}}}")),
    };
    match kind {
        ":-" if !non_empty => interpolate(arg, vars),
        "-" if !set => interpolate(arg, vars),
        ":?" if !non_empty => Err(required(name, arg, vars)),
        "?" if !set => Err(required(name, arg, vars)),
        ":+" if non_empty => interpolate(arg, vars),
        "+" if set => interpolate(arg, vars),
        ":+" | "+" => Ok(String::new()),
        _ => Ok(current()),
    }
}

fn required(name: &str, message: &str, vars: &BTreeMap<String, String>) -> String {
    let message = interpolate(message, vars).unwrap_or_else(|_| message.to_string());
    if message.is_empty() {
        format!("required variable {name} is not set")
    } else {
        format!("required variable {name} is not set: {message}")
    }
}

/// Interpolate every string value of a parsed file (keys are left alone, as Compose
/// does), naming the key of a value that fails.
pub(super) fn interpolate_tree(
    value: &mut serde_yaml_ng::Value,
    vars: &BTreeMap<String, String>,
    path: &str,
) -> Result<(), ComposeError> {
    use serde_yaml_ng::Value;
    match value {
        Value::String(s) => {
            *s = interpolate(s, vars).map_err(|m| ComposeError::new(path, m))?;
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate_tree(item, vars, &format!("{path}[{i}]"))?;
            }
        }
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                let key = k.as_str().unwrap_or("?");
                let child = if path.is_empty() {
                    key.to_string()
                } else {
                    format!("{path}.{key}")
                };
                interpolate_tree(v, vars, &child)?;
            }
        }
        Value::Tagged(t) => interpolate_tree(&mut t.value, vars, path)?,
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
    Ok(())
}
