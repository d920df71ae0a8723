//! The operator console: HTML pages under `/console` (usage, requests, keys, orgs, prices,
//! plugins) whose script calls the admin API (`/admin/*`) with a signed-in session instead of
//! the Bearer token. It has no path of its own into the store: every read and change is an admin call.
//!
//! Sign-in: `GET /console/login` serves a form; `POST /console/login` with the admin token
//! (compared by digest, as `admin::guard` does) opens a session (a random 256-bit id, 12 h)
//! and sets it in the `aigate_console` cookie. Sessions are kept where the replicas' shared
//! state is ([`aigate_admission::SessionStore`]): on Redis when `REDIS_URL` is set, so every
//! replica behind a load balancer knows every session; in memory otherwise (at most
//! [`MAX_SESSIONS`], gone at a restart). When the store does not answer, a request with a
//! session cookie gets a 503: it is neither let in nor signed out. The cookie is `HttpOnly`,
//! `SameSite=Strict`, `Path=/`, and `Secure` when the request came over TLS
//! (`X-Forwarded-Proto: https`: the gateway itself speaks plain HTTP behind a proxy).
//!
//! Invariants:
//! - **No admin token, no console**: every console route answers 404, as the admin API does.
//! - **No session, nothing shown**: every page redirects to the sign-in form and every JSON
//!   route answers 401. The stylesheet and script are public: they are the same in every
//!   binary and carry no data.
//! - **No change without the session's CSRF token**: `POST /console/logout` and every
//!   non-GET admin call made with the session cookie must carry the session's token (the
//!   `X-CSRF-Token` header, or the `csrf` form field of the sign-out form), else 403 and
//!   nothing changes. The pages get the token in `<meta name="csrf-token">`. The sign-in form
//!   itself is a double submit: a random token in a `SameSite=Strict` cookie scoped to
//!   `/console/login` and in the form, which must match, so another site cannot sign a
//!   browser into a console.
//! - **Session ids are never kept**: the store is keyed by their SHA-256, so neither its
//!   contents nor a lookup's timing give away a live id.
//! - **Every console answer carries the security headers** ([`security_headers`]): a CSP
//!   allowing only this origin's files (no inline script or style), no framing, no referrer,
//!   no caching.

use std::sync::Arc;
use std::time::Duration;

use aigate_admission::{MemorySessionStore, SessionError, SessionStore};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{AppendHeaders, IntoResponse, Json, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use bytes::Bytes;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{ApiError, ErrorSource};
use crate::server::AppState;

/// The session cookie.
pub const SESSION_COOKIE: &str = "aigate_console";
/// The sign-in form's double-submit cookie (scoped to [`LOGIN_PATH`]).
pub const LOGIN_COOKIE: &str = "aigate_console_login";
/// The header a console call carries its session's CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a session lasts from sign-in.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Open sessions per replica when they are kept in memory; one more signs out the one closest
/// to its end. (On Redis each session ends with its lifetime.)
pub const MAX_SESSIONS: usize = 256;

const LOGIN_PATH: &str = "/console/login";
const HOME_PATH: &str = "/console/keys";
/// How long the sign-in form stays valid.
const LOGIN_FORM_TTL_S: u64 = 900;

/// Only this origin's files; no inline script or style, no plugins, no framing.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

const SHELL: &str = include_str!("../console/page.html");
const LOGIN: &str = include_str!("../console/login.html");
const SCRIPT: &str = include_str!("../console/console.js");
const STYLESHEET: &str = include_str!("../console/console.css");

/// One console page: its path, its title, and the body its script fills.
struct Page {
    path: &'static str,
    /// `data-page` on `<body>`: which part of the script runs.
    name: &'static str,
    title: &'static str,
    body: &'static str,
}

static PAGES: [Page; 6] = [
    Page { path: "/console/usage", name: "usage", title: "Usage", body: include_str!("../console/usage.html") },
    Page {
        path: "/console/requests",
        name: "requests",
        title: "Requests",
        body: include_str!("../console/requests.html"),
    },
    Page { path: "/console/keys", name: "keys", title: "Keys", body: include_str!("../console/keys.html") },
    Page { path: "/console/orgs", name: "orgs", title: "Organisations", body: include_str!("../console/orgs.html") },
    Page { path: "/console/prices", name: "prices", title: "Prices", body: include_str!("../console/prices.html") },
    Page { path: "/console/plugins", name: "plugins", title: "Plugins", body: include_str!("../console/plugins.html") },
];

// ---- sessions ------------------------------------------------------------------

/// The console's sessions, kept by the SHA-256 of their id in a [`SessionStore`]: in
/// memory on one replica, or on Redis for every replica when `REDIS_URL` is set.
pub struct ConsoleSessions {
    ttl: Duration,
    store: Arc<dyn SessionStore>,
}

#[derive(Clone)]
struct Session {
    csrf: String,
    expires_in: Duration,
}

impl Default for ConsoleSessions {
    fn default() -> Self {
        ConsoleSessions::new(SESSION_TTL, Arc::new(MemorySessionStore::new(MAX_SESSIONS)))
    }
}

impl ConsoleSessions {
    pub fn new(ttl: Duration, store: Arc<dyn SessionStore>) -> Self {
        ConsoleSessions { ttl, store }
    }

    /// The store's key for a session id: its SHA-256 (base64url), so the id is kept nowhere.
    fn key(id: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(id.as_bytes()))
    }

    /// Opens a session: its id (for the cookie, kept nowhere) and its CSRF token.
    async fn open(&self) -> Result<(String, Session), ApiError> {
        let id = random_token()?;
        let session = Session { csrf: random_token()?, expires_in: self.ttl };
        self.store.put(&Self::key(&id), &session.csrf, self.ttl).await.map_err(unavailable)?;
        Ok((id, session))
    }

    /// The live session of this id, if any.
    async fn find(&self, id: &str) -> Result<Option<Session>, ApiError> {
        let found = self.store.get(&Self::key(id)).await.map_err(unavailable)?;
        Ok(found.map(|s| Session { csrf: s.csrf, expires_in: s.expires_in }))
    }

    async fn close(&self, id: &str) -> Result<(), ApiError> {
        self.store.remove(&Self::key(id)).await.map_err(unavailable)
    }
}

/// The session store did not answer: 503, the console cannot tell who is signed in.
fn unavailable(e: SessionError) -> ApiError {
    tracing::warn!(error = %e, "console session store");
    ApiError::store_unavailable(
        "The console's sessions are kept in Redis, which did not answer; try again when it is back.".to_owned(),
    )
}

/// 256 random bits from the system's CSPRNG, URL-safe base64 (43 characters).
fn random_token() -> Result<String, ApiError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| ApiError::internal(format!("no random bytes for a console token: {e}")))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Compares digests: equal-length values, so the time taken says nothing about either.
fn same_secret(a: &str, b: &str) -> bool {
    Sha256::digest(a.as_bytes()) == Sha256::digest(b.as_bytes())
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The request's live session and its id.
async fn session_of(state: &AppState, headers: &HeaderMap) -> Result<Option<(String, Session)>, ApiError> {
    let Some(id) = cookie(headers, SESSION_COOKIE).filter(|id| !id.is_empty()) else { return Ok(None) };
    Ok(state.console.find(id).await?.map(|s| (id.to_owned(), s)))
}

/// `; Secure` when the browser reached us over TLS (the proxy in front says so).
fn secure(headers: &HeaderMap) -> &'static str {
    let https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"));
    if https { "; Secure" } else { "" }
}

fn session_cookie(headers: &HeaderMap, id: &str, max_age_s: u64) -> String {
    format!("{SESSION_COOKIE}={id}; Path=/; Max-Age={max_age_s}; HttpOnly; SameSite=Strict{}", secure(headers))
}

fn login_cookie(headers: &HeaderMap, token: &str, max_age_s: u64) -> String {
    format!(
        "{LOGIN_COOKIE}={token}; Path={LOGIN_PATH}; Max-Age={max_age_s}; HttpOnly; SameSite=Strict{}",
        secure(headers)
    )
}

/// The admin API's verdict on a request that carries no `Authorization` header
/// (`admin::require_admin`): `None` without a live console session (the Bearer rules decide);
/// with one, reads pass, and changes pass only with the session's CSRF token (else 403).
pub(crate) async fn admit(state: &AppState, method: &Method, headers: &HeaderMap) -> Option<Result<(), ApiError>> {
    let (_, session) = match session_of(state, headers).await {
        Ok(found) => found?,
        Err(e) => return Some(Err(e)),
    };
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Some(Ok(()));
    }
    let presented = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    Some(if presented.is_some_and(|p| same_secret(p, &session.csrf)) { Ok(()) } else { Err(csrf_refused()) })
}

fn csrf_refused() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        crate::error::kind::PERMISSION,
        Some("csrf_token_invalid"),
        "A console change needs the session's CSRF token in the X-CSRF-Token header (the console's pages send \
         it); reload the page and try again.",
        ErrorSource::Client,
    )
}

fn no_session() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        crate::error::kind::AUTHENTICATION,
        Some("console_session_required"),
        "No console session: sign in at /console/login with the admin token.",
        ErrorSource::Client,
    )
}

// ---- routes --------------------------------------------------------------------

/// The console's routes, merged into the gateway's router (`server::router`). Not in the
/// OpenAPI document: they serve a browser, not a client.
pub fn routes(state: Arc<AppState>) -> Router<Arc<AppState>> {
    let mut router = Router::new()
        .route("/console", get(home))
        .route("/console/", get(home))
        .route(LOGIN_PATH, get(login_form).post(login))
        .route("/console/logout", post(logout))
        .route("/console/session", get(session_info))
        .route("/console/assets/console.js", get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }))
        .route("/console/assets/console.css", get(|| async { asset("text/css; charset=utf-8", STYLESHEET) }));
    for page in &PAGES {
        router = router.route(
            page.path,
            get(move |State(state): State<Arc<AppState>>, headers: HeaderMap| async move {
                render_page(&state, &headers, page).await
            }),
        );
    }
    router.route_layer(middleware::from_fn_with_state(state, enabled)).layer(middleware::from_fn(security_headers))
}

/// No admin token, no console (404, as for the admin API).
async fn enabled(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    if state.config.admin_token.is_none() {
        return ApiError::not_found("No such endpoint. The console is off: set AIGATE_ADMIN_TOKEN to enable it.")
            .into_response();
    }
    next.run(request).await
}

/// The headers of every console answer; see the module's invariants.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let set: [(HeaderName, &'static str); 5] = [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ];
    for (name, value) in set {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

fn html(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn home(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    match session_of(&state, &headers).await {
        Ok(found) => Redirect::to(if found.is_some() { HOME_PATH } else { LOGIN_PATH }).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn render_page(state: &AppState, headers: &HeaderMap, page: &Page) -> Response {
    let session = match session_of(state, headers).await {
        Ok(Some((_, session))) => session,
        Ok(None) => return Redirect::to(LOGIN_PATH).into_response(),
        Err(e) => return e.into_response(),
    };
    let nav: String = PAGES
        .iter()
        .map(|p| {
            let current = if p.path == page.path { " aria-current=\"page\"" } else { "" };
            format!("<li><a href=\"{}\"{current}>{}</a></li>", p.path, p.title)
        })
        .collect();
    // The page's own body goes in last, so nothing it holds is taken for a placeholder.
    let body = SHELL
        .replace("{{title}}", page.title)
        .replace("{{page}}", page.name)
        .replace("{{nav}}", &nav)
        .replace("{{csrf}}", &session.csrf)
        .replace("{{main}}", page.body);
    html(StatusCode::OK, body)
}

/// The sign-in form with a fresh double-submit token (form field and cookie), and `message`
/// (static HTML) above the button.
fn login_page(headers: &HeaderMap, status: StatusCode, message: &str) -> Response {
    let token = match random_token() {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let body = LOGIN.replace("{{message}}", message).replace("{{csrf}}", &token);
    let cookie = login_cookie(headers, &token, LOGIN_FORM_TTL_S);
    (AppendHeaders([(header::SET_COOKIE, cookie)]), html(status, body)).into_response()
}

async fn login_form(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    match session_of(&state, &headers).await {
        Ok(Some(_)) => Redirect::to(HOME_PATH).into_response(),
        // The store's outage is said on signing in, not before.
        Ok(None) | Err(_) => login_page(&headers, StatusCode::OK, ""),
    }
}

#[derive(Default, Deserialize)]
struct LoginForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: String,
}

const FORM_EXPIRED: &str = "<p class=\"error\" role=\"alert\">The sign-in form expired or did not come from this \
                            page. Enter the token again.</p>";
const WRONG_TOKEN: &str = "<p class=\"error\" role=\"alert\">That is not the admin token.</p>";

async fn login(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(admin_token) = &state.config.admin_token else {
        return ApiError::not_found("No such endpoint.").into_response();
    };
    let form: LoginForm = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let submitted_here =
        !form.csrf.is_empty() && cookie(&headers, LOGIN_COOKIE).is_some_and(|c| same_secret(c, &form.csrf));
    if !submitted_here {
        return login_page(&headers, StatusCode::FORBIDDEN, FORM_EXPIRED);
    }
    if !same_secret(&form.token, admin_token.expose_secret()) {
        tracing::warn!("console sign-in refused: not the admin token");
        return login_page(&headers, StatusCode::UNAUTHORIZED, WRONG_TOKEN);
    }
    let (id, _) = match state.console.open().await {
        Ok(opened) => opened,
        Err(e) => return e.into_response(),
    };
    let cookies = [
        (header::SET_COOKIE, session_cookie(&headers, &id, state.console.ttl.as_secs())),
        (header::SET_COOKIE, login_cookie(&headers, "", 0)),
    ];
    (AppendHeaders(cookies), Redirect::to(HOME_PATH)).into_response()
}

#[derive(Default, Deserialize)]
struct LogoutForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let clear = AppendHeaders([(header::SET_COOKIE, session_cookie(&headers, "", 0))]);
    let (id, session) = match session_of(&state, &headers).await {
        Ok(Some(found)) => found,
        Ok(None) => return (clear, Redirect::to(LOGIN_PATH)).into_response(),
        Err(e) => return e.into_response(),
    };
    let form: LogoutForm = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let presented = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or(form.csrf.as_str());
    if !same_secret(presented, &session.csrf) {
        return csrf_refused().into_response();
    }
    if let Err(e) = state.console.close(&id).await {
        return e.into_response();
    }
    (clear, Redirect::to(LOGIN_PATH)).into_response()
}

/// `GET /console/session`.
#[derive(Serialize)]
struct SessionInfo {
    /// To send as `X-CSRF-Token` with every change.
    csrf_token: String,
    expires_in_s: u64,
}

async fn session_info(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    match session_of(&state, &headers).await {
        Ok(Some((_, s))) => {
            Json(SessionInfo { csrf_token: s.csrf, expires_in_s: s.expires_in.as_secs() }).into_response()
        }
        Ok(None) => no_session().into_response(),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]

    use super::*;

    #[tokio::test]
    async fn a_session_is_found_by_its_id_until_it_expires_or_closes() {
        let sessions = ConsoleSessions::new(Duration::from_millis(50), Arc::new(MemorySessionStore::new(8)));
        let (id, session) = sessions.open().await.unwrap();
        assert_eq!(id.len(), 43, "256 bits, base64url");
        assert_ne!(id, session.csrf);
        assert_eq!(sessions.find(&id).await.unwrap().unwrap().csrf, session.csrf);
        assert!(sessions.find("not-a-session").await.unwrap().is_none());
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(sessions.find(&id).await.unwrap().is_none(), "expired");
        let (id, _) = sessions.open().await.unwrap();
        sessions.close(&id).await.unwrap();
        assert!(sessions.find(&id).await.unwrap().is_none(), "closed");
    }

    #[tokio::test]
    async fn the_table_is_bounded_and_signs_the_oldest_out() {
        let store = Arc::new(MemorySessionStore::new(3));
        let sessions = ConsoleSessions::new(Duration::from_secs(60), store.clone());
        let mut ids = Vec::new();
        for _ in 0..5 {
            ids.push(sessions.open().await.unwrap().0);
        }
        assert_eq!(store.len(), 3);
        assert!(sessions.find(&ids[0]).await.unwrap().is_none() && sessions.find(&ids[1]).await.unwrap().is_none());
        for id in &ids[2..] {
            assert!(sessions.find(id).await.unwrap().is_some());
        }
    }

    #[test]
    fn the_session_id_is_not_kept() {
        let id = "an-id";
        let key = ConsoleSessions::key(id);
        assert_eq!(key.len(), 43, "a SHA-256, base64url");
        assert!(!key.contains(id));
    }

    #[test]
    fn cookies_are_read_from_every_cookie_header() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1; aigate_console_x=no"));
        headers.append(header::COOKIE, HeaderValue::from_static("b=2;aigate_console=yes"));
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("yes"));
        assert_eq!(cookie(&headers, "c"), None);
    }

    #[test]
    fn cookies_are_secure_behind_tls_only() {
        let mut headers = HeaderMap::new();
        assert!(!session_cookie(&headers, "x", 1).contains("Secure"));
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https, http"));
        let c = session_cookie(&headers, "x", 1);
        assert!(c.contains("; Secure") && c.contains("HttpOnly") && c.contains("SameSite=Strict"), "{c}");
    }
}
