//! A small mTLS JSON client of the scheduler API for tests.

use anyhow::{Context, Result};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// Client of one API endpoint.
#[derive(Clone)]
pub struct Api {
    base: String,
    client: reqwest::Client,
}

impl Api {
    /// Client trusting `ca` and presenting `identity` (cert, key) when given.
    pub fn new(base: &str, ca: &Path, identity: Option<(&Path, &Path)>) -> Result<Self> {
        Self::build(base, ca, identity, None)
    }

    /// Client trusting `ca` that sends `Authorization: Bearer <token>`.
    pub fn with_token(base: &str, ca: &Path, token: &str) -> Result<Self> {
        Self::build(base, ca, None, Some(token))
    }

    fn build(
        base: &str,
        ca: &Path,
        identity: Option<(&Path, &Path)>,
        token: Option<&str>,
    ) -> Result<Self> {
        let ca_pem =
            std::fs::read_to_string(ca).with_context(|| format!("read {}", ca.display()))?;
        let ident = match identity {
            Some((c, k)) => Some((std::fs::read_to_string(c)?, std::fs::read_to_string(k)?)),
            None => None,
        };
        let tls = persys_certs::client_config(
            &ca_pem,
            ident.as_ref().map(|(c, k)| (c.as_str(), k.as_str())),
            // The testkit talks to every component (the agents' API included); what
            // each product client accepts is tested on its own.
            persys_certs::Expected::Roles(vec![
                persys_certs::Role::Scheduler,
                persys_certs::Role::Gateway,
                persys_certs::Role::Node,
            ]),
        )?;
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(t) = token {
            let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {t}"))?;
            v.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, v);
        }
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .default_headers(headers)
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            client,
        })
    }

    /// The underlying reqwest client.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Full URL of a path.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// GET, returning status and JSON body (Null when not JSON).
    pub async fn get(&self, path: &str) -> Result<(u16, Value)> {
        let r = self.client.get(self.url(path)).send().await?;
        let status = r.status().as_u16();
        let text = r.text().await?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    /// GET that must answer 200.
    pub async fn get_json(&self, path: &str) -> Result<Value> {
        let (s, v) = self.get(path).await?;
        anyhow::ensure!(s == 200, "GET {path} answered {s}: {v}");
        Ok(v)
    }

    /// POST a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Result<(u16, Value)> {
        let r = self.client.post(self.url(path)).json(body).send().await?;
        let status = r.status().as_u16();
        let text = r.text().await?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    /// PUT a JSON body.
    pub async fn put(&self, path: &str, body: &Value) -> Result<(u16, Value)> {
        let r = self.client.put(self.url(path)).json(body).send().await?;
        let status = r.status().as_u16();
        let text = r.text().await?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    /// POST raw bytes with a content type.
    pub async fn post_raw(
        &self,
        path: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<(u16, Value)> {
        let r = self
            .client
            .post(self.url(path))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await?;
        let status = r.status().as_u16();
        let text = r.text().await?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    /// DELETE.
    pub async fn delete(&self, path: &str) -> Result<(u16, Value)> {
        let r = self.client.delete(self.url(path)).send().await?;
        let status = r.status().as_u16();
        let text = r.text().await?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }
}
