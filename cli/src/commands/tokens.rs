//! `persys token create|list|revoke`: API tokens of the gateway (admin role).

use super::{escape, Ctx};
use crate::args::cluster::Role;
use crate::output::{self, print_data, print_text, say};
use anyhow::Context;
use serde_json::Value;

/// `persys token create --name N --role R`: the secret goes alone to stdout (so
/// `TOKEN=$(persys token create ...)` works) and is never shown again.
pub async fn create(ctx: &Ctx, name: &str, role: Role) -> anyhow::Result<()> {
    let body = serde_json::to_vec(&serde_json::json!({ "name": name, "role": role.as_str() }))
        .context("encoding the token request")?;
    let answer = ctx.client.post_json("/tokens", body).await?;
    if ctx.format.is_data() {
        print_data(ctx.format, &answer);
        return Ok(());
    }
    let secret = secret_of(&answer).context("the server answered without the token")?;
    print_text(&format!("{secret}\n"));
    say(&format!(
        "token {} ({name}, {}) created; it is shown only now: keep it safe",
        str_field(&answer, "id").unwrap_or("-"),
        str_field(&answer, "role").unwrap_or(role.as_str())
    ));
    Ok(())
}

/// The secret of a creation answer (`token`, or `secret` from other gateways).
pub fn secret_of(answer: &Value) -> Option<&str> {
    str_field(answer, "token").or_else(|| str_field(answer, "secret"))
}

fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// The tokens of a `GET /tokens` answer: a bare array or `{"tokens": [...]}`.
pub fn token_list(answer: &Value) -> Vec<Value> {
    match answer {
        Value::Array(items) => items.clone(),
        other => other
            .get("tokens")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
    }
}

/// Rows of `token list`: ID NAME ROLE AGE.
pub fn token_rows(tokens: &[Value], now: chrono::DateTime<chrono::Utc>) -> Vec<Vec<String>> {
    tokens
        .iter()
        .map(|t| {
            let created = str_field(t, "createdAt")
                .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                .map(|c| output::age(now, c.with_timezone(&chrono::Utc)))
                .unwrap_or_else(|| "-".into());
            vec![
                str_field(t, "id").unwrap_or("-").to_string(),
                str_field(t, "name").unwrap_or("-").to_string(),
                str_field(t, "role").unwrap_or("-").to_string(),
                created,
            ]
        })
        .collect()
}

/// `persys token list`.
pub async fn list(ctx: &Ctx) -> anyhow::Result<()> {
    let answer = ctx.client.get_json("/tokens").await?;
    let tokens = token_list(&answer);
    if ctx.format.is_data() {
        print_data(ctx.format, &Value::Array(tokens));
        return Ok(());
    }
    let rows = token_rows(&tokens, chrono::Utc::now());
    print_text(&output::table(&["ID", "NAME", "ROLE", "AGE"], &rows));
    Ok(())
}

/// `persys token revoke ID`: prints the id (or the server's answer with `-o json|yaml`).
pub async fn revoke(ctx: &Ctx, id: &str) -> anyhow::Result<()> {
    let answer = ctx
        .client
        .delete(&format!("/tokens/{}", escape(id)))
        .await?;
    if !ctx.format.is_data() {
        print_text(&format!("{id}\n"));
    } else if answer.is_null() {
        print_data(ctx.format, &serde_json::json!({ "id": id }));
    } else {
        print_data(ctx.format, &answer);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn secret_is_found_under_token_or_secret() {
        assert_eq!(
            secret_of(&serde_json::json!({"id": "a", "token": "persys_x"})),
            Some("persys_x")
        );
        assert_eq!(
            secret_of(&serde_json::json!({"secret": "persys_y"})),
            Some("persys_y")
        );
        assert_eq!(secret_of(&serde_json::json!({"id": "a"})), None);
    }

    #[test]
    fn list_accepts_a_bare_array_or_an_object() {
        let t = serde_json::json!({"id": "a"});
        let listed = vec![t];
        assert_eq!(token_list(&serde_json::json!(listed)), listed);
        assert_eq!(token_list(&serde_json::json!({ "tokens": listed })), listed);
        assert!(token_list(&serde_json::json!({})).is_empty());
    }

    #[test]
    fn rows_show_id_name_role_and_age() {
        let now = chrono::Utc
            .timestamp_opt(1_704_067_230, 0)
            .single()
            .expect("time");
        let rows = token_rows(
            &[serde_json::json!({
                "id": "0f1e", "name": "ci", "role": "operator", "createdAt": "2024-01-01T00:00:00Z"
            })],
            now,
        );
        assert_eq!(rows[0], ["0f1e", "ci", "operator", "30s"]);
    }
}
