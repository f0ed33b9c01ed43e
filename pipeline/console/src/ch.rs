//! ClickHouse over its HTTP interface: SQL in, `FORMAT JSON` out, with the console's query
//! limits as URL settings (the read-only user has `readonly = 2`, which permits them).
//!
//! Not the `clickhouse` crate the sensor uses: its rows are typed structs, and the console's
//! queries have columns that depend on the request; JSON results with their `statistics`
//! (rows read) are what the API passes on.

use crate::config::Limits;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use serde_json::Value;
use std::time::Duration;

/// Why a query failed, as the API reports it.
#[derive(Debug)]
pub enum ChError {
    /// The server refused the query (code and first line of its message).
    Server { code: u32, message: String },
    /// The query ran past `max_execution_time`.
    Timeout(String),
    /// No answer (connection refused, reset).
    Unreachable(String),
}

impl std::fmt::Display for ChError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChError::Server { code, message } => write!(f, "clickhouse error {code}: {message}"),
            ChError::Timeout(m) => write!(f, "clickhouse query timed out: {m}"),
            ChError::Unreachable(m) => write!(f, "clickhouse unreachable: {m}"),
        }
    }
}

/// A query's result: rows as JSON objects, and how many rows the server read.
#[derive(Debug, Default)]
pub struct Rows {
    pub data: Vec<serde_json::Map<String, Value>>,
    pub rows_read: u64,
    pub elapsed_ms: f64,
    /// The `WITH TOTALS` row, when the query asked for it.
    pub totals: Option<serde_json::Map<String, Value>>,
}

#[derive(Clone)]
pub struct Ch {
    client: Client<HttpConnector, Full<Bytes>>,
    url: String,
    auth: String,
    limits: Limits,
}

/// ClickHouse error codes the console tells apart (numbers from the server's ErrorCodes).
const TIMEOUT_EXCEEDED: u32 = 159;

impl Ch {
    pub fn new(url: &str, user: &str, password: &str, limits: Limits) -> Ch {
        let client = Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build_http();
        let cred = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{user}:{password}"),
        );
        Ch {
            client,
            url: url.trim_end_matches('/').to_string(),
            auth: format!("Basic {cred}"),
            limits,
        }
    }

    fn settings(&self) -> String {
        let l = &self.limits;
        let mut s = format!(
            "max_execution_time={}&max_result_rows={}&result_overflow_mode=throw&max_memory_usage={}",
            l.max_execution_time_secs, l.max_result_rows, l.max_memory_usage
        );
        if l.max_rows_to_read > 0 {
            s.push_str(&format!("&max_rows_to_read={}", l.max_rows_to_read));
        }
        s
    }

    /// Runs a statement and returns its body (for DDL and inserts by the writer user).
    pub async fn execute(&self, sql: &str) -> Result<String, ChError> {
        let uri = format!("{}/?{}", self.url, self.settings());
        let req = hyper::Request::post(uri)
            .header("Authorization", &self.auth)
            .body(Full::new(Bytes::from(sql.to_string())))
            .map_err(|e| ChError::Unreachable(e.to_string()))?;
        let wait = Duration::from_secs(u64::from(self.limits.max_execution_time_secs) + 5);
        let resp = match tokio::time::timeout(wait, self.client.request(req)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(ChError::Unreachable(e.to_string())),
            Err(_) => return Err(ChError::Timeout(format!("no answer within {wait:?}"))),
        };
        let status = resp.status();
        let body = match tokio::time::timeout(wait, resp.into_body().collect()).await {
            Ok(Ok(b)) => b.to_bytes(),
            Ok(Err(e)) => return Err(ChError::Unreachable(e.to_string())),
            Err(_) => return Err(ChError::Timeout("body not received in time".into())),
        };
        let text = String::from_utf8_lossy(&body).into_owned();
        if status.is_success() {
            Ok(text)
        } else {
            Err(server_error(&text))
        }
    }

    /// Runs a SELECT (without FORMAT) and parses its JSON result.
    pub async fn query(&self, sql: &str) -> Result<Rows, ChError> {
        let text = self.execute(&format!("{sql} FORMAT JSON")).await?;
        let v: Value = serde_json::from_str(&text).map_err(|e| ChError::Server {
            code: 0,
            message: format!("unreadable JSON result: {e}"),
        })?;
        let data = match v.get("data") {
            Some(Value::Array(a)) => a.iter().filter_map(|r| r.as_object().cloned()).collect(),
            _ => Vec::new(),
        };
        let stats = v.get("statistics");
        Ok(Rows {
            data,
            rows_read: stats
                .and_then(|s| s.get("rows_read"))
                .map_or(0, |x| num(x) as u64),
            elapsed_ms: stats.and_then(|s| s.get("elapsed")).map_or(0.0, num) * 1000.0,
            totals: v.get("totals").and_then(|t| t.as_object().cloned()),
        })
    }
}

/// `Code: 159, e.displayText() = DB::Exception: Timeout exceeded...`: the code decides the kind.
fn server_error(text: &str) -> ChError {
    let first = text.lines().next().unwrap_or("").trim().to_string();
    let code = first
        .strip_prefix("Code: ")
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let message: String = first.chars().take(300).collect();
    if code == TIMEOUT_EXCEEDED {
        ChError::Timeout(message)
    } else {
        ChError::Server { code, message }
    }
}

/// A JSON number or a quoted 64-bit integer (ClickHouse quotes UInt64 by default).
pub fn num(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap_or(0.0),
        Value::String(s) => s.parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

/// A JSON value as text.
pub fn text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(v) => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_code_decides_timeout_from_other_errors() {
        let t = server_error(
            "Code: 159, e.displayText() = DB::Exception: Timeout exceeded: elapsed 1 seconds\n",
        );
        assert!(matches!(t, ChError::Timeout(_)));
        let s = server_error("Code: 60, e.displayText() = DB::Exception: Table x doesn't exist");
        assert!(matches!(s, ChError::Server { code: 60, .. }));
        assert_eq!(num(&Value::String("42".into())), 42.0);
    }
}
