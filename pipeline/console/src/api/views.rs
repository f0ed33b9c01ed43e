//! Saved views: a user's named URLs (the whole view state is in the URL), in the console's own
//! table `saved_views`, written by the writer user only.
//!
//! Each save and each delete is a new row with a larger `version` (a delete is a tombstone);
//! a read takes each name's latest row. So no mutation is needed, which 18.16 does only in the
//! background. The values travel as `JSONEachRow` data after the INSERT, never inside SQL text;
//! the one value in a query, the session's username (from the config), goes through `quote`.

use super::{bad, body, fail, ApiError, ApiResult, Authed, S};
use crate::ch::{num, text};
use crate::filter::quote;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use hyper::body::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};

/// Views one user may keep.
const MAX_VIEWS: usize = 200;
/// Pages a view may open.
const PAGES: &[&str] = &["visualize", "top", "flows", "alerts", "sensors"];

/// DDL of the table (run by the writer user at start-up).
pub fn create_sql(cdb: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {cdb}.saved_views (username String, name String, \
         url String, deleted UInt8, version UInt64) \
         ENGINE = ReplacingMergeTree(version) ORDER BY (username, name)"
    )
}

/// Microseconds since the epoch, strictly increasing within this process.
fn version() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    let mut cur = LAST.load(Ordering::SeqCst);
    loop {
        let next = now.max(cur + 1);
        match LAST.compare_exchange(cur, next, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => return next,
            Err(c) => cur = c,
        }
    }
}

fn check_name(name: &str) -> Result<(), ApiError> {
    let n = name.chars().count();
    if n == 0 || n > 80 || name.chars().any(char::is_control) || name.trim() != name {
        return Err(bad(
            "name: 1 to 80 characters, no control characters or outer spaces",
        ));
    }
    Ok(())
}

/// A path of the console's own pages: `/page[/...][?query]`, nothing that leaves the site.
fn check_url(url: &str) -> Result<(), ApiError> {
    let page = url
        .strip_prefix('/')
        .map(|r| r.split(['/', '?']).next().unwrap_or(""));
    let ok = url.len() <= 4096
        && !url.starts_with("//")
        && !url.contains(['\\', '#'])
        && !url.chars().any(|c| c.is_control() || c.is_whitespace())
        && page.is_some_and(|p| PAGES.contains(&p));
    if ok {
        Ok(())
    } else {
        Err(bad(format!(
            "url: a path of the console's pages ({}), at most 4096 bytes",
            PAGES.join(", ")
        )))
    }
}

async fn own(st: &S, user: &str) -> Result<Vec<Value>, ApiError> {
    if !st.catalog().views {
        return Err(fail(
            StatusCode::SERVICE_UNAVAILABLE,
            "saved views need clickhouse.writer_user (the console's own tables)",
        ));
    }
    let sql = format!(
        "SELECT name, argMax(url, version) AS url, argMax(deleted, version) AS gone, \
         intDiv(max(version), 1000000) AS saved FROM {}.saved_views WHERE username = {} \
         GROUP BY name HAVING gone = 0 ORDER BY name LIMIT {}",
        st.cfg.clickhouse.console_database,
        quote(user),
        MAX_VIEWS + 1
    );
    let rows = st.ch.query(&sql).await?;
    Ok(rows
        .data
        .iter()
        .map(|r| {
            json!({"name": text(r.get("name")), "url": text(r.get("url")),
                   "saved": num(r.get("saved").unwrap_or(&json!(0)))})
        })
        .collect())
}

pub async fn list(State(st): State<S>, a: Authed) -> ApiResult {
    let views = own(&st, &a.session.username).await?;
    Ok(Json(json!({ "views": views })).into_response())
}

/// Appends one row (a save, or a tombstone) as JSON data after the INSERT.
async fn write(st: &S, user: &str, name: &str, url: &str, deleted: bool) -> Result<(), ApiError> {
    let w = st.writer.as_ref().ok_or_else(|| {
        fail(
            StatusCode::SERVICE_UNAVAILABLE,
            "saved views need clickhouse.writer_user",
        )
    })?;
    let row = json!({"username": user, "name": name, "url": url,
                     "deleted": u8::from(deleted), "version": version()});
    w.execute(&format!(
        "INSERT INTO {}.saved_views FORMAT JSONEachRow\n{row}\n",
        st.cfg.clickhouse.console_database
    ))
    .await?;
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SaveReq {
    name: String,
    url: String,
}

pub async fn save(State(st): State<S>, a: Authed, b: Bytes) -> ApiResult {
    let req: SaveReq = body(&b)?;
    check_name(&req.name)?;
    check_url(&req.url)?;
    let views = own(&st, &a.session.username).await?;
    let replaces = views.iter().any(|v| v["name"] == req.name.as_str());
    if !replaces && views.len() >= MAX_VIEWS {
        return Err(bad(format!(
            "at most {MAX_VIEWS} saved views per user; delete one first"
        )));
    }
    write(&st, &a.session.username, &req.name, &req.url, false).await?;
    let status = if replaces {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(json!({"name": req.name, "url": req.url}))).into_response())
}

pub async fn delete(State(st): State<S>, a: Authed, Path(name): Path<String>) -> ApiResult {
    check_name(&name)?;
    let views = own(&st, &a.session.username).await?;
    if !views.iter().any(|v| v["name"] == name.as_str()) {
        return Err(fail(
            StatusCode::NOT_FOUND,
            format!("no saved view {name:?}"),
        ));
    }
    write(&st, &a.session.username, &name, "", true).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_of_the_console_pages_are_saved() {
        for ok in [
            "/visualize?start=now-1h",
            "/flows/123?sensor_id=a",
            "/alerts",
        ] {
            assert!(check_url(ok).is_ok(), "{ok}");
        }
        for no in [
            "https://evil.example/",
            "//evil.example/visualize",
            "/login",
            "visualize",
            "/visualize?x=1 2",
            "/visualize\\..",
            "",
        ] {
            assert!(check_url(no).is_err(), "{no}");
        }
        assert!(check_name("busy hour").is_ok());
        assert!(
            check_name(" x").is_err() && check_name("").is_err() && check_name("a\nb").is_err()
        );
        let (a, b) = (version(), version());
        assert!(b > a);
    }
}
