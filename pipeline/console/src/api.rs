//! The HTTP layer: routes under `/api/v1/`, the session extractor (cookie, CSRF header on
//! every non-GET request), security headers on every answer, and the web UI's static files.
//! The contract is `pipeline/console/API.md`.

mod alerts;
mod block;
mod graphs;
mod lists;
mod views;

use crate::auth::{Auth, LoginError, Session};
use crate::ch::{Ch, ChError};
use crate::config::{Config, Role};
use crate::filter::{self, Expr};
use crate::query::Env;
use crate::schema::{Catalog, Dialect, ROLLUPS};
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::{header, request::Parts, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hyper::body::Bytes;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

pub const SESSION_COOKIE: &str = "console_session";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Longest range a query may cover.
const MAX_RANGE_SECS: u64 = 400 * 86400;

pub enum ServeError {
    Config(String),
    Runtime(String),
}

/// Everything a handler needs.
pub struct AppState {
    pub cfg: Config,
    pub auth: Auth,
    pub ch: Ch,
    pub writer: Option<Ch>,
    pub dialect: RwLock<Dialect>,
    pub catalog: RwLock<Arc<Catalog>>,
    pub tls: bool,
    /// The `ALERTS` consumer, when `[nats]` is configured.
    pub live: std::sync::OnceLock<Arc<crate::live::Live>>,
    pub scraper: crate::scrape::Scraper,
    /// JetStream for the block button's requests, connected on first use.
    pub requests: tokio::sync::OnceCell<async_nats::jetstream::Context>,
}

pub type S = Arc<AppState>;

impl AppState {
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.read().unwrap().clone()
    }

    pub fn dialect(&self) -> Dialect {
        *self.dialect.read().unwrap()
    }
}

/// An error answer: JSON `{"error": ...}` (plus the filter position when there is one).
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub span: Option<(usize, usize)>,
    pub retry_after: Option<u64>,
}

pub fn fail(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError {
        status,
        message: message.into(),
        span: None,
        retry_after: None,
    }
}

pub fn bad(message: impl Into<String>) -> ApiError {
    fail(StatusCode::BAD_REQUEST, message)
}

impl From<ChError> for ApiError {
    fn from(e: ChError) -> Self {
        let status = match e {
            ChError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::BAD_GATEWAY,
        };
        tracing::warn!("{e}");
        fail(status, e.to_string())
    }
}

impl From<filter::FilterError> for ApiError {
    fn from(e: filter::FilterError) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: format!("filter: {}", e.message),
            span: Some((e.start, e.end)),
            retry_after: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.message });
        if let Some((s, e)) = self.span {
            body["position"] = json!(s);
            body["end"] = json!(e);
        }
        let mut r = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        r
    }
}

pub type ApiResult = Result<Response, ApiError>;

/// Parses a JSON body into a request type, naming the problem on failure.
pub fn body<T: DeserializeOwned>(b: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(b).map_err(|e| bad(format!("request body: {e}")))
}

/// A logged-in caller. Non-GET requests must also carry the session's CSRF token.
pub struct Authed {
    pub session: Session,
    pub id: String,
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

impl FromRequestParts<S> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &S) -> Result<Self, ApiError> {
        let unauth = || {
            fail(
                StatusCode::UNAUTHORIZED,
                "not logged in, or the session expired",
            )
        };
        let id = cookie(&parts.headers, SESSION_COOKIE).ok_or_else(unauth)?;
        let session = st.auth.session(&id).ok_or_else(unauth)?;
        if parts.method != Method::GET && parts.method != Method::HEAD {
            let token = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !session.csrf_ok(token) {
                return Err(fail(StatusCode::FORBIDDEN, "missing or wrong X-CSRF-Token"));
            }
        }
        Ok(Authed { session, id })
    }
}

/// An admin caller.
pub struct Admin(pub Authed);

impl FromRequestParts<S> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &S) -> Result<Self, ApiError> {
        let a = Authed::from_request_parts(parts, st).await?;
        if a.session.role != Role::Admin {
            return Err(fail(StatusCode::FORBIDDEN, "admin role required"));
        }
        Ok(Admin(a))
    }
}

/// Query environment for a request.
pub fn env<'a>(st: &'a AppState, cat: &'a Catalog) -> Env<'a> {
    Env {
        cat,
        dialect: st.dialect(),
        db: &st.cfg.clickhouse.database,
    }
}

/// The range and filter every query carries.
#[derive(Deserialize)]
pub struct Base {
    pub start: u64,
    pub end: u64,
    #[serde(default)]
    pub filter: String,
}

impl Base {
    /// Checked range (u32 seconds) and parsed filter.
    pub fn check(&self, cat: &Catalog) -> Result<(u32, u32, Option<Expr>), ApiError> {
        if self.end <= self.start {
            return Err(bad("end must be after start"));
        }
        if self.end - self.start > MAX_RANGE_SECS || self.end > u64::from(u32::MAX) {
            return Err(bad("range longer than 400 days or beyond 2106"));
        }
        let e = filter::parse(&self.filter, cat)?;
        Ok((self.start as u32, self.end as u32, e))
    }
}

pub fn router(st: S) -> Router {
    let api = Router::new()
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/me", get(me))
        .route("/fields", get(lists::fields))
        .route("/filter/validate", post(lists::validate))
        .route("/filter/complete", post(lists::complete))
        .route("/graph/timeseries", post(graphs::timeseries))
        .route("/graph/sankey", post(graphs::sankey))
        .route("/top", post(lists::top))
        .route("/flows", post(lists::flows))
        .route("/flows/{flow_id}", get(lists::flow))
        .route("/alerts", post(alerts::list))
        .route("/alerts/stream", get(alerts::stream))
        .route("/alerts/{id}/ack", post(alerts::ack))
        .route("/alerts/{id}/actions", get(block::for_alert))
        .route("/block", post(block::request))
        .route("/block/{id}", get(block::outcome))
        .route("/views", get(views::list).post(views::save))
        .route("/views/{name}", axum::routing::delete(views::delete))
        .route("/sensors", get(lists::sensors))
        .fallback(|| async { fail(StatusCode::NOT_FOUND, "no such API route") })
        .method_not_allowed_fallback(|| async {
            fail(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this route",
            )
        });
    let root = st.cfg.server.web_root.clone();
    let files = tower_http::services::ServeDir::new(&root).fallback(
        tower_http::services::ServeFile::new(root.join("index.html")),
    );
    Router::new()
        .nest("/api/v1", api)
        .fallback_service(files)
        .layer(axum::middleware::map_response_with_state(
            st.clone(),
            headers,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
        .with_state(st)
}

/// Security headers on every answer.
async fn headers(State(st): State<S>, mut r: Response) -> Response {
    let h = r.headers_mut();
    let set = |h: &mut HeaderMap, k: &'static str, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(
        h,
        "content-security-policy",
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
         img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
         form-action 'self'",
    );
    set(h, "x-content-type-options", "nosniff");
    set(h, "x-frame-options", "DENY");
    set(h, "referrer-policy", "no-referrer");
    set(h, "cache-control", "no-store");
    if st.tls {
        set(h, "strict-transport-security", "max-age=31536000");
    }
    r
}

fn session_cookie(st: &AppState, value: &str, max_age: u64) -> HeaderValue {
    let secure = if st.tls { "; Secure" } else { "" };
    let c = format!(
        "{SESSION_COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}{secure}"
    );
    HeaderValue::from_str(&c).expect("cookie is ASCII")
}

fn me_json(s: &Session) -> Value {
    let role = match s.role {
        Role::Admin => "admin",
        Role::Viewer => "viewer",
    };
    json!({ "username": s.username, "role": role, "csrf_token": s.csrf })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginReq {
    username: String,
    password: String,
}

async fn login(
    State(st): State<S>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    b: Bytes,
) -> ApiResult {
    let json_ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json_ct {
        return Err(fail(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "login takes application/json",
        ));
    }
    let req: LoginReq = body(&b)?;
    if req.username.len() > 64 || req.password.len() > 1024 {
        return Err(bad("username or password too long"));
    }
    let st2 = st.clone();
    let r = tokio::task::spawn_blocking(move || {
        st2.auth.login(&req.username, &req.password, peer.ip())
    })
    .await
    .map_err(|e| fail(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    match r {
        Ok((id, s)) => {
            let mut resp = Json(me_json(&s)).into_response();
            let c = session_cookie(&st, &id, st.auth.ttl().as_secs());
            resp.headers_mut().insert(header::SET_COOKIE, c);
            Ok(resp)
        }
        Err(LoginError::Wrong) => Err(fail(StatusCode::UNAUTHORIZED, "wrong username or password")),
        Err(LoginError::Locked { retry_after_secs }) => Err(ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: format!("too many failed logins; retry in {retry_after_secs} s"),
            span: None,
            retry_after: Some(retry_after_secs),
        }),
    }
}

async fn logout(State(st): State<S>, a: Authed) -> ApiResult {
    st.auth.logout(&a.id);
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, session_cookie(&st, "", 0));
    Ok(r)
}

async fn me(a: Authed) -> ApiResult {
    Ok(Json(me_json(&a.session)).into_response())
}

/// Reads the server version and what tables and columns exist.
pub async fn discover(st: &AppState) -> Result<(), ChError> {
    let v = st.ch.query("SELECT version() AS v").await?;
    let version = crate::ch::text(v.data.first().and_then(|r| r.get("v")));
    *st.dialect.write().unwrap() = Dialect::from_version(&version);
    let db = filter::quote(&st.cfg.clickhouse.database);
    let names = |rows: crate::ch::Rows| -> Vec<String> {
        rows.data
            .iter()
            .map(|r| crate::ch::text(r.get("name")))
            .collect()
    };
    let tables = names(
        st.ch
            .query(&format!(
                "SELECT name FROM system.tables WHERE database = {db}"
            ))
            .await?,
    );
    let cols = |t: &'static str| {
        format!("SELECT name FROM system.columns WHERE database = {db} AND table = '{t}'")
    };
    let flow_columns = names(st.ch.query(&cols("flows")).await?);
    let alert_columns = names(st.ch.query(&cols("alerts")).await?);
    let cdb = filter::quote(&st.cfg.clickhouse.console_database);
    let own = names(
        st.ch
            .query(&format!(
                "SELECT name FROM system.tables WHERE database = {cdb} \
                 AND name IN ('alert_acks', 'saved_views')"
            ))
            .await?,
    );
    let rollups: Vec<String> = ROLLUPS.iter().map(|(t, _)| format!("'{t}'")).collect();
    let rows = st
        .ch
        .query(&format!(
            "SELECT table, name FROM system.columns WHERE database = {db} AND table IN ({})",
            rollups.join(", ")
        ))
        .await?;
    let mut rollup_columns: HashMap<String, HashSet<String>> = HashMap::new();
    for r in &rows.data {
        let t = crate::ch::text(r.get("table"));
        rollup_columns
            .entry(t)
            .or_default()
            .insert(crate::ch::text(r.get("name")));
    }
    let mut cat = Catalog {
        flow_columns: flow_columns.into_iter().collect(),
        tables: tables.into_iter().collect(),
        rollup_columns,
        alert_columns,
        ..Catalog::default()
    };
    cat.acks = own.iter().any(|t| t == "alert_acks");
    cat.views = own.iter().any(|t| t == "saved_views");
    *st.catalog.write().unwrap() = Arc::new(cat);
    Ok(())
}

/// Creates the console's own database and tables with the writer user.
async fn own_tables(st: &AppState) -> Result<(), ChError> {
    let Some(w) = &st.writer else { return Ok(()) };
    let cdb = &st.cfg.clickhouse.console_database;
    w.execute(&format!("CREATE DATABASE IF NOT EXISTS {cdb}"))
        .await?;
    w.execute(&format!(
        "CREATE TABLE IF NOT EXISTS {cdb}.alert_acks (alert_id String, username String, \
         ts DateTime) ENGINE = MergeTree ORDER BY alert_id"
    ))
    .await?;
    w.execute(&views::create_sql(cdb)).await?;
    Ok(())
}

/// Builds the state, checks ClickHouse, and serves until SIGINT/SIGTERM.
pub async fn serve(cfg: Config) -> Result<(), ServeError> {
    let st = state(cfg);
    let listen = st.cfg.server.listen;
    // TLS files first: a bad certificate is a config error, whatever ClickHouse does.
    let tls = match (&st.cfg.server.tls_cert, &st.cfg.server.tls_key) {
        (Some(c), Some(k)) => {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let r = axum_server::tls_rustls::RustlsConfig::from_pem_file(c, k).await;
            Some(r.map_err(|e| ServeError::Config(format!("server.tls_cert/tls_key: {e}")))?)
        }
        _ => None,
    };
    if let Err(e) = own_tables(&st).await {
        return Err(ServeError::Runtime(format!("console tables: {e}")));
    }
    if let Err(e) = discover(&st).await {
        return Err(ServeError::Runtime(format!("reading the schema: {e}")));
    }
    if let Some(n) = &st.cfg.nats {
        let _ = st.live.set(crate::live::start(n.clone()));
    }
    let refresh = st.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(60)).await;
            if let Err(e) = discover(&refresh).await {
                tracing::warn!("schema refresh: {e}");
            }
        }
    });
    let app = router(st.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let handle = axum_server::Handle::new();
    let h2 = handle.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        h2.graceful_shutdown(Some(Duration::from_secs(5)));
    });
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!("console: listening on {scheme}://{listen}");
    let r = match tls {
        Some(t) => {
            axum_server::bind_rustls(listen, t)
                .handle(handle)
                .serve(app)
                .await
        }
        None => axum_server::bind(listen).handle(handle).serve(app).await,
    };
    r.map_err(|e| ServeError::Runtime(format!("server.listen {listen}: {e}")))
}

/// The shared state from a config (public for tests that build their own server).
pub fn state(cfg: Config) -> S {
    let c = &cfg.clickhouse;
    let ch = Ch::new(&c.url, &c.user, &c.password, cfg.limits.clone());
    let writer = c
        .writer_user
        .as_ref()
        .map(|u| Ch::new(&c.url, u, &c.writer_password, cfg.limits.clone()));
    let scraper = crate::scrape::Scraper::new(
        Duration::from_millis(cfg.limits.scrape_timeout_ms),
        cfg.limits.scrape_max_bytes,
    );
    Arc::new(AppState {
        auth: Auth::new(cfg.users.clone(), cfg.auth.clone()),
        ch,
        writer,
        live: std::sync::OnceLock::new(),
        scraper,
        requests: tokio::sync::OnceCell::new(),
        dialect: RwLock::new(Dialect { modern: false }),
        catalog: RwLock::new(Arc::new(Catalog::default())),
        tls: cfg.server.tls_cert.is_some(),
        cfg,
    })
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
