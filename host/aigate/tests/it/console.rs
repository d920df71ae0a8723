//! The operator console (`/console`, `console.rs`): sign-in with the admin token, the session
//! cookie's attributes, CSRF on every change, the pages and the admin API refusing requests
//! without a session, the key value shown once and never again (nor logged), sign-out, and
//! the console off without an admin token.

use std::time::Duration;

use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use serde_json::{Value, json};

use crate::harness::{ADMIN_TOKEN, JsonBody, Setup, TestGateway, redis_url, start, start_with, unique};

const PAGES: [&str; 8] = [
    "/console",
    "/console/",
    "/console/usage",
    "/console/requests",
    "/console/keys",
    "/console/orgs",
    "/console/prices",
    "/console/plugins",
];

/// A client that does not follow redirects (they are what these tests check) and keeps no cookies.
fn browser() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// The `Set-Cookie` line that sets `name`.
fn set_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with(&format!("{name}=")))
}

/// The value a `Set-Cookie` line sets.
fn cookie_value(line: &str) -> String {
    line.split(';').next().unwrap().split_once('=').unwrap().1.to_owned()
}

/// The `value` of the hidden `csrf` field of a served form.
fn form_token(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a csrf field") + "name=\"csrf\" value=\"".len();
    html[at..].split('"').next().unwrap().to_owned()
}

/// A signed-in console: the session cookie's value and the session's CSRF token.
struct Session {
    cookie: String,
    csrf: String,
}

impl Session {
    fn header(&self) -> String {
        format!("aigate_console={}", self.cookie)
    }
}

/// Fetches the sign-in form: (its double-submit cookie, the form's token).
async fn login_form(base: &str, http: &reqwest::Client) -> (String, String) {
    let r = http.get(format!("{base}/console/login")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let line = set_cookie(r.headers(), "aigate_console_login").expect("the sign-in form's cookie");
    assert!(line.contains("HttpOnly") && line.contains("SameSite=Strict"), "{line}");
    let token = form_token(&r.text().await.unwrap());
    assert_eq!(cookie_value(&line), token);
    (cookie_value(&line), token)
}

async fn post_login(base: &str, http: &reqwest::Client, cookie: &str, csrf: &str, token: &str) -> reqwest::Response {
    http.post(format!("{base}/console/login"))
        .header("cookie", format!("aigate_console_login={cookie}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}&token={token}"))
        .send()
        .await
        .unwrap()
}

/// Signs in at the gateway serving at `base`.
async fn sign_in(base: &str, http: &reqwest::Client) -> Session {
    let (cookie, csrf) = login_form(base, http).await;
    let r = post_login(base, http, &cookie, &csrf, ADMIN_TOKEN).await;
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()[LOCATION], "/console/keys");
    let line = set_cookie(r.headers(), "aigate_console").expect("the session cookie");
    let session = cookie_value(&line);
    let r =
        http.get(format!("{base}/console/session")).header("cookie", format!("aigate_console={session}")).send().await;
    let info = r.unwrap().json_value().await;
    Session { cookie: session, csrf: info["csrf_token"].as_str().unwrap().to_owned() }
}

async fn create_key(gw: &TestGateway, http: &reqwest::Client, s: &Session, csrf: Option<&str>) -> reqwest::Response {
    let mut request = http
        .post(gw.url("/admin/keys"))
        .header("cookie", s.header())
        .header("content-type", "application/json")
        .body(json!({"org": "console", "name": "from-console"}).to_string());
    if let Some(token) = csrf {
        request = request.header("x-csrf-token", token);
    }
    request.send().await.unwrap()
}

async fn key_count(gw: &TestGateway, org: &str) -> usize {
    let (status, body) = gw.admin_json(&format!("/admin/keys?org={org}")).await;
    if status == 404 {
        return 0;
    }
    body["data"].as_array().unwrap().len()
}

#[tokio::test]
async fn sign_in_takes_the_admin_token_and_sets_a_strict_http_only_cookie() {
    let gw = start().await;
    let http = browser();

    // A wrong token: refused, no session.
    let (cookie, csrf) = login_form(&gw.base, &http).await;
    let r = post_login(&gw.base, &http, &cookie, &csrf, "not-the-admin-token-at-all").await;
    assert_eq!(r.status(), 401);
    assert!(set_cookie(r.headers(), "aigate_console").is_none());
    assert!(r.text().await.unwrap().contains("not the admin token"));

    // The right token without the form's double-submit token (login CSRF): refused.
    let r = post_login(&gw.base, &http, &cookie, "", ADMIN_TOKEN).await;
    assert_eq!(r.status(), 403);
    assert!(set_cookie(r.headers(), "aigate_console").is_none());
    let r = post_login(&gw.base, &http, "forged", &csrf, ADMIN_TOKEN).await;
    assert_eq!(r.status(), 403);

    // The right token: a session cookie, HttpOnly, SameSite=Strict, for the whole origin.
    let (cookie, csrf) = login_form(&gw.base, &http).await;
    let r = post_login(&gw.base, &http, &cookie, &csrf, ADMIN_TOKEN).await;
    assert_eq!(r.status(), 303);
    let line = set_cookie(r.headers(), "aigate_console").unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/;", "Max-Age=43200"] {
        assert!(line.contains(attribute), "{attribute}: {line}");
    }
    assert!(!line.contains("Secure"), "plain HTTP: {line}");
    assert_eq!(cookie_value(&line).len(), 43, "256 random bits: {line}");

    // Behind a TLS proxy the cookie is Secure.
    let (cookie, csrf) = login_form(&gw.base, &http).await;
    let r = http
        .post(gw.url("/console/login"))
        .header("cookie", format!("aigate_console_login={cookie}"))
        .header("x-forwarded-proto", "https")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}&token={ADMIN_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert!(set_cookie(r.headers(), "aigate_console").unwrap().contains("; Secure"));

    // Signed in, every page serves with its security headers and the session's CSRF token.
    let s = sign_in(&gw.base, &http).await;
    for page in &PAGES[2..] {
        let r = http.get(gw.url(page)).header("cookie", s.header()).send().await.unwrap();
        assert_eq!(r.status(), 200, "{page}");
        let h = r.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert_eq!(h["cache-control"], "no-store");
        let html = r.text().await.unwrap();
        assert!(html.contains(&format!("<meta name=\"csrf-token\" content=\"{}\">", s.csrf)), "{page}");
        assert!(!html.contains("<script>") && !html.contains("style="), "no inline script or style: {page}");
    }
    let r = http.get(gw.url("/console")).header("cookie", s.header()).send().await.unwrap();
    assert_eq!(r.headers()[LOCATION], "/console/keys");
    for asset in ["/console/assets/console.js", "/console/assets/console.css"] {
        let r = http.get(gw.url(asset)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{asset}");
        assert!(r.headers().contains_key("content-security-policy"));
    }
}

#[tokio::test]
async fn without_a_session_pages_redirect_to_sign_in_and_json_answers_401() {
    let gw = start().await;
    let http = browser();
    for cookie in [None, Some("aigate_console=forged-or-expired-session-id")] {
        for page in PAGES {
            let mut request = http.get(gw.url(page));
            if let Some(c) = cookie {
                request = request.header("cookie", c);
            }
            let r = request.send().await.unwrap();
            assert_eq!(r.status(), 303, "{page} {cookie:?}");
            assert_eq!(r.headers()[LOCATION], "/console/login", "{page}");
            assert_eq!(r.headers()["cache-control"], "no-store");
        }
        let json_routes = [
            ("GET", "/console/session"),
            ("GET", "/admin/plugins"),
            ("GET", "/admin/keys?org=test"),
            ("GET", "/admin/prices"),
            ("GET", "/admin/usage?org=test"),
            ("GET", "/admin/routes"),
            ("GET", "/admin/orgs"),
            ("GET", "/admin/requests"),
            ("POST", "/admin/keys"),
            ("POST", "/admin/prices"),
        ];
        for (method, path) in json_routes {
            let mut request = http.request(method.parse().unwrap(), gw.url(path));
            if let Some(c) = cookie {
                request = request.header("cookie", c).header("x-csrf-token", "anything");
            }
            let r = request.send().await.unwrap();
            assert_eq!(r.status(), 401, "{method} {path} {cookie:?}");
        }
        // Signing out without a session changes nothing and goes back to the form.
        let mut request = http.post(gw.url("/console/logout"));
        if let Some(c) = cookie {
            request = request.header("cookie", c);
        }
        assert_eq!(request.send().await.unwrap().headers()[LOCATION], "/console/login");
    }
}

#[tokio::test]
async fn a_change_without_the_csrf_token_is_refused_and_changes_nothing() {
    let gw = start().await;
    let http = browser();
    let s = sign_in(&gw.base, &http).await;

    for token in [None, Some("wrong-token"), Some("")] {
        let r = create_key(&gw, &http, &s, token).await;
        assert_eq!(r.status(), 403, "{token:?}");
        let body = r.json_value().await;
        assert_eq!(body["error"]["code"], "csrf_token_invalid", "{body}");
    }
    assert_eq!(key_count(&gw, "console").await, 0, "nothing created");
    // Another session's token is not this one's.
    let other = sign_in(&gw.base, &http).await;
    assert_eq!(create_key(&gw, &http, &s, Some(other.csrf.as_str())).await.status(), 403);
    assert_eq!(key_count(&gw, "console").await, 0);

    // Reads need no token; a change with it goes through.
    let r = http.get(gw.url("/admin/plugins")).header("cookie", s.header()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = create_key(&gw, &http, &s, Some(s.csrf.as_str())).await;
    assert_eq!(r.status(), 201);
    let created = r.json_value().await;
    assert_eq!(key_count(&gw, "console").await, 1);

    // Revoking, too, needs the token.
    let revoke = format!("/admin/keys/{}/revoke", created["prefix"].as_str().unwrap());
    let r = http.post(gw.url(&revoke)).header("cookie", s.header()).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let r = http.post(gw.url(&revoke)).header("cookie", s.header()).header("x-csrf-token", &s.csrf).send().await;
    assert_eq!(r.unwrap().status(), 200);

    // A Bearer request is judged by its token alone, as before the console.
    let r = http.get(gw.url("/admin/plugins")).header("cookie", s.header()).bearer_auth("wrong").send().await.unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn the_key_value_is_shown_once_and_never_again() {
    let gw = start().await;
    let http = browser();
    let s = sign_in(&gw.base, &http).await;
    let created = create_key(&gw, &http, &s, Some(s.csrf.as_str())).await.json_value().await;
    let key = created["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("sk-aig-"), "{created}");

    let mut later = Vec::new();
    for path in [
        "/console/keys",
        "/console/plugins",
        "/console/prices",
        "/console/usage",
        "/console/requests",
        "/console/orgs",
        "/console/session",
        "/admin/keys?org=console",
        "/admin/usage?org=console",
        "/admin/plugins",
        "/admin/prices",
        "/admin/orgs",
        "/admin/requests",
        "/console/assets/console.js",
    ] {
        let r = http.get(gw.url(path)).header("cookie", s.header()).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let text = r.text().await.unwrap();
        later.push((path, text));
    }
    let listed: Value = serde_json::from_str(&later[7].1).unwrap();
    assert_eq!(listed["data"][0]["prefix"], created["prefix"], "the key is listed, by prefix");
    for (path, text) in later {
        assert!(!text.contains(&key), "{path} shows the key");
        assert!(!text.contains(&key[7..]), "{path} shows the key's secret part");
    }
}

#[tokio::test]
async fn sign_out_ends_the_session() {
    let gw = start().await;
    let http = browser();
    let s = sign_in(&gw.base, &http).await;

    // Without the token it is refused: the session lives on.
    let r = http.post(gw.url("/console/logout")).header("cookie", s.header()).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let r = http.get(gw.url("/console/session")).header("cookie", s.header()).send().await.unwrap();
    assert_eq!(r.status(), 200);

    // The sign-out form sends the token as a form field.
    let r = http
        .post(gw.url("/console/logout"))
        .header("cookie", s.header())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={}", s.csrf))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()[LOCATION], "/console/login");
    let cleared = set_cookie(r.headers(), "aigate_console").unwrap();
    assert!(cleared.starts_with("aigate_console=;") && cleared.contains("Max-Age=0"), "{cleared}");

    // The old cookie opens nothing any more.
    let r = http.get(gw.url("/console/session")).header("cookie", s.header()).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = http.get(gw.url("/console/keys")).header("cookie", s.header()).send().await.unwrap();
    assert_eq!(r.headers()[LOCATION], "/console/login");
    let r = http.get(gw.url("/admin/plugins")).header("cookie", s.header()).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(create_key(&gw, &http, &s, Some(s.csrf.as_str())).await.status(), 401);
}

#[tokio::test]
async fn the_console_is_off_without_an_admin_token() {
    let gw = start_with(Setup { env: [("AIGATE_ADMIN_TOKEN".to_owned(), String::new())].into(), ..Default::default() })
        .await;
    let http = browser();
    for path in PAGES.iter().chain(&["/console/login", "/console/session", "/console/assets/console.js"]) {
        let r = http.get(gw.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    let r = http
        .post(gw.url("/console/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("csrf=x&token=anything-at-all-here")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(set_cookie(r.headers(), "aigate_console").is_none());
}

/// `aigate serve` (the real binary, logging at debug): a key made through the console is in
/// the answer that made it and in no log line.
#[tokio::test]
async fn the_key_value_never_reaches_the_log() {
    use tokio::io::AsyncBufReadExt as _;

    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("stderr.log");
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_aigate"))
        .arg("serve")
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env_remove("AIGATE_CONFIG")
        .env("AIGATE_DATA_DIR", dir.path())
        .env("AIGATE_PLUGINS_DIR", &plugins)
        .env("AIGATE_LISTEN", "127.0.0.1:0")
        .env("AIGATE_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("AIGATE_LOG", "debug")
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let base = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(url) = line.strip_prefix("AIGate is listening on ") {
                return url.to_owned();
            }
        }
        panic!("the gateway exited before listening: {}", std::fs::read_to_string(&log_path).unwrap());
    })
    .await
    .unwrap();
    // Keep reading stdout (the dev key goes there), so the gateway never blocks on it.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let http = browser();
    let s = sign_in(&base, &http).await;
    let r = http
        .post(format!("{base}/admin/keys"))
        .header("cookie", s.header())
        .header("x-csrf-token", &s.csrf)
        .header("content-type", "application/json")
        .body(json!({"org": "logged", "name": "k"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let key = r.json_value().await["key"].as_str().unwrap().to_owned();
    let r = http.get(format!("{base}/admin/keys?org=logged")).header("cookie", s.header()).send().await.unwrap();
    assert!(!r.text().await.unwrap().contains(&key));

    // SIGTERM: the gateway drains and flushes its log before it exits.
    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    tokio::time::timeout(Duration::from_secs(30), child.wait()).await.unwrap().unwrap();
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("/admin/keys") && log.contains("/console/login"), "the requests were logged: {log}");
    assert!(!log.contains(&key) && !log.contains(&key[7..]), "the key is in the log");
    assert!(!log.contains(ADMIN_TOKEN), "the admin token is in the log");
    assert!(!log.contains(&s.cookie) && !log.contains(&s.csrf), "the session is in the log");
}

/// Two replicas on one Redis (each with its own database, as far as sessions care): a session
/// opened on one serves on the other, with the same CSRF token, and signing out on either
/// ends it on both. No sticky sessions needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_a_session_serves_on_every_replica() {
    let Some(redis) = redis_url() else { return };
    let env: std::collections::BTreeMap<String, String> =
        [("REDIS_URL".to_owned(), redis), ("AIGATE_REDIS_PREFIX".to_owned(), format!("{}:", unique("aigate-console")))]
            .into();
    let a = start_with(Setup { env: env.clone(), ..Setup::default() }).await;
    let b = start_with(Setup { env, ..Setup::default() }).await;
    let http = browser();
    let s = sign_in(&a.base, &http).await;

    let r = http.get(b.url("/console/plugins")).header("cookie", s.header()).send().await.unwrap();
    assert_eq!(r.status(), 200, "a page on the other replica");
    assert!(r.text().await.unwrap().contains(&s.csrf), "the same session's CSRF token");
    let r = create_key(&b, &http, &s, Some(&s.csrf)).await;
    assert_eq!(r.status(), 201, "a change on the other replica, with the session's token");
    assert_eq!(create_key(&b, &http, &s, None).await.status(), 403, "and not without it");

    let r = http
        .post(b.url("/console/logout"))
        .header("cookie", s.header())
        .header("x-csrf-token", &s.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    for gw in [&a, &b] {
        let r = http.get(gw.url("/console/session")).header("cookie", s.header()).send().await.unwrap();
        assert_eq!(r.status(), 401, "signed out everywhere");
        let r = http.get(gw.url("/admin/plugins")).header("cookie", s.header()).send().await.unwrap();
        assert_eq!(r.status(), 401);
    }
}

/// Sessions on a Redis that does not answer: signing in and every request that carries a
/// session cookie get a 503 that says why; nobody is let in, and the Bearer admin API works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_down_the_console_says_so_and_lets_nobody_in() {
    let env: std::collections::BTreeMap<String, String> =
        [("REDIS_URL".to_owned(), "redis://127.0.0.1:1".to_owned())].into();
    let gw = start_with(Setup { env, ..Setup::default() }).await;
    let http = browser();
    let (cookie, csrf) = login_form(&gw.base, &http).await;
    let r = post_login(&gw.base, &http, &cookie, &csrf, ADMIN_TOKEN).await;
    assert_eq!(r.status(), 503);
    assert!(set_cookie(r.headers(), "aigate_console").is_none());
    let forged = "aigate_console=some-session-id";
    for path in ["/console/keys", "/console/session", "/admin/plugins"] {
        let r = http.get(gw.url(path)).header("cookie", forged).send().await.unwrap();
        assert_eq!(r.status(), 503, "{path}");
        let body = r.json_value().await;
        assert!(body["error"]["message"].as_str().unwrap().contains("Redis"), "{path}: {body}");
    }
    let (status, _) = gw.admin_json("/admin/plugins").await;
    assert_eq!(status, 200, "the Bearer admin API does not need sessions");
}

/// Every admin answer says `Cache-Control: no-store`, the one with a new key above all, and
/// refusals too: no cache between the operator and the gateway keeps any.
#[tokio::test]
async fn admin_answers_are_never_cached() {
    let gw = start().await;
    let http = browser();
    let created = http
        .post(gw.url("/admin/keys"))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body(json!({"org": "cache"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(created.headers()["cache-control"], "no-store");
    for (path, token, status) in [
        ("/admin/keys?org=cache", ADMIN_TOKEN, 200),
        ("/admin/plugins", "not-the-token", 401),
        ("/admin/orgs", ADMIN_TOKEN, 200),
    ] {
        let r = http.get(gw.url(path)).bearer_auth(token).send().await.unwrap();
        assert_eq!(r.status(), status, "{path}");
        assert_eq!(r.headers()["cache-control"], "no-store", "{path}");
    }
}
