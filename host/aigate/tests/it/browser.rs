//! The operator console in a real browser: Debian's `chromium`, headless, driven over
//! WebDriver (`chromedriver`, through `fantoccini`). An operator signs in, adds a price rule,
//! creates a key and reads it off the page; calls made with that key (plain and streamed) show
//! in the usage report and its chart's data, and by request id on the requests page; the key
//! is revoked from its row (through the confirm dialog) and its next call is refused; a plugin
//! file swapped on disk shows its new version on the open plugins page without a reload.
//!
//! Every page is photographed at 1280 and 390 px into `target/console-screenshots/` (an
//! artefact of the run, not committed; `docs/console.md` shows copies of the 1280 px ones).
//!
//! `chromium` and `chromium-driver` (installed by .ci/run) are required when
//! AIGATE_REQUIRE_SERVICES=1; elsewhere the test says it was skipped and passes.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use futures_util::FutureExt as _;
use hyper_util::client::legacy::connect::HttpConnector;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::harness::{ADMIN_TOKEN, TestGateway, artifact, assert_error, chat_body, sse_payloads, start, stream_body};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// A desktop and a phone.
const WIDTHS: [u32; 2] = [1280, 390];
const HEIGHT: u32 = 900;
/// The org the operator works on.
const ORG: &str = "acme";

/// Where the run leaves its screenshots: `<target dir>/console-screenshots`.
fn screenshot_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is `<target dir>/tmp`, wherever CARGO_TARGET_DIR put the target dir.
    Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("a target dir").join("console-screenshots")
}

/// Whether chromium and chromedriver are installed; fails under AIGATE_REQUIRE_SERVICES=1 when not.
fn browser_installed() -> bool {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER].into_iter().filter(|p| !Path::new(p).is_file()).collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var("AIGATE_REQUIRE_SERVICES").as_deref() != Ok("1"),
        "{missing:?} missing: apt-get install chromium chromium-driver (.ci/run does)"
    );
    eprintln!("skipped: {missing:?} not installed (apt-get install chromium chromium-driver)");
    false
}

/// Polls `probe` every 100 ms until it yields a value; fails naming `what` after `within`.
async fn until<T>(within: Duration, what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "waited {} s for {what}", within.as_secs_f32());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// chromedriver (a child process, killed on drop) and one browser session in it.
struct Browser {
    client: Client,
    driver: Child,
    base: String,
    shots: PathBuf,
}

impl Browser {
    /// Starts chromedriver on a port of its choosing and opens a headless chromium session.
    async fn launch(base: &str) -> Browser {
        let mut driver = Command::new(CHROMEDRIVER)
            .args(["--port=0", "--log-level=WARNING"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        // "ChromeDriver was started successfully on port 41235."
        let mut lines = BufReader::new(driver.stdout.take().expect("piped stdout")).lines();
        let port = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(line) = lines.next_line().await.expect("chromedriver's output") {
                if let Some(port) = line.split("started successfully on port ").nth(1) {
                    return port.trim_end_matches('.').parse::<u16>().expect("a port number");
                }
            }
            panic!("chromedriver exited without saying its port");
        })
        .await
        .expect("chromedriver said its port within 10 s");
        // Keep reading its output, so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

        let webdriver = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        until(Duration::from_secs(10), "chromedriver to be ready", async || {
            let answer = http.get(format!("{webdriver}/status")).send().await.ok()?.bytes().await.ok()?;
            let status: Value = serde_json::from_slice(&answer).ok()?;
            status["value"]["ready"].as_bool().filter(|ready| *ready)
        })
        .await;

        let capabilities = json!({
            "browserName": "chrome",
            // The confirm dialog stays open until the test answers it.
            "unhandledPromptBehavior": "ignore",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new",
                    // Root (CI) cannot use the sandbox; the browser only opens the test gateway.
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--hide-scrollbars",
                    "--force-device-scale-factor=1",
                    "--no-first-run",
                    "--lang=en-GB",
                    format!("--window-size={},{HEIGHT}", WIDTHS[0]),
                ],
            },
        });
        let Value::Object(capabilities) = capabilities else { unreachable!() };
        let client = tokio::time::timeout(
            Duration::from_secs(30),
            ClientBuilder::new(HttpConnector::new()).capabilities(capabilities).connect(&webdriver),
        )
        .await
        .expect("a browser session within 30 s")
        .expect("a browser session");
        let shots = screenshot_dir();
        std::fs::create_dir_all(&shots).unwrap();
        Browser { client, driver, base: base.to_owned(), shots }
    }

    /// Ends the session (the browser quits) and chromedriver.
    async fn quit(mut self) {
        if tokio::time::timeout(Duration::from_secs(10), self.client.close()).await.is_err() {
            eprintln!("the browser session did not close within 10 s");
        }
        let _ = self.driver.start_kill();
        let _ = self.driver.wait().await;
    }

    async fn open(&self, path: &str) {
        self.client.goto(&format!("{}{path}", self.base)).await.unwrap_or_else(|e| panic!("open {path}: {e}"));
    }

    async fn path(&self) -> String {
        self.client.current_url().await.map(|u| u.path().to_owned()).unwrap_or_default()
    }

    /// Runs `script` in the page (its `arguments` are `args`) and decodes its result.
    async fn js<T: DeserializeOwned>(&self, script: &str, args: Vec<Value>) -> T {
        let value = self.client.execute(script, args).await.unwrap_or_else(|e| panic!("script failed: {e}\n{script}"));
        serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("script result {value}: {e}"))
    }

    /// The first element matching `css`, once there (up to 10 s).
    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        until(Duration::from_secs(10), &format!("an element `{css}`"), async || {
            self.client.find(Locator::Css(css)).await.ok()
        })
        .await
    }

    async fn type_into(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    async fn click(&self, css: &str) {
        self.find(css).await.click().await.unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    /// The text of the first element matching `css` (empty if none).
    async fn text(&self, css: &str) -> String {
        self.js(
            "const e = document.querySelector(arguments[0]); return e ? e.textContent.trim() : '';",
            vec![json!(css)],
        )
        .await
    }

    /// The body rows of table `css`, each a map from its column's heading to the cell's
    /// text, and from each of the row's `data-*` attribute names to its value, read in one
    /// call (columns found by heading, not position).
    async fn table(&self, css: &str) -> Vec<BTreeMap<String, String>> {
        self.js(
            "const t = document.querySelector(arguments[0]);
             if (!t || !t.tHead || !t.tBodies[0]) return [];
             const heads = Array.from(t.tHead.rows[0].cells, c => c.textContent.trim());
             return Array.from(t.tBodies[0].rows, r =>
               Object.fromEntries([
                 ...Array.from(r.cells, (c, i) => [heads[i] || String(i), c.textContent.trim()]),
                 ...r.getAttributeNames().filter(n => n.startsWith('data-')).map(n => [n, r.getAttribute(n)]),
               ]));",
            vec![json!(css)],
        )
        .await
    }

    /// A Chrome DevTools command, through chromedriver.
    async fn devtools(&self, cmd: &'static str, params: Value) -> Value {
        self.client.issue_cmd(DevTools { cmd, params }).await.unwrap_or_else(|e| panic!("{cmd}: {e}"))
    }

    /// Lays the page out in a `width` × `height` viewport (a phone's below 500 px: the window
    /// itself cannot be made that narrow), then waits two frames: laid out and painted.
    async fn viewport(&self, width: u32, height: u32) {
        let params = json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 500});
        self.devtools("Emulation.setDeviceMetricsOverride", params).await;
        let _: Value =
            self.js("return new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));", vec![]).await;
    }

    /// Opens `path` in a viewport of each of [`WIDTHS`] in turn (so the page lays itself out
    /// and draws its chart for that width, as it would on such a screen), waits for an element
    /// `ready` (what the page loads), and photographs the whole page as `<name>-<width>.png`.
    async fn photograph(&self, path: &str, ready: &str) {
        let name = path.rsplit('/').next().unwrap_or(path);
        for width in WIDTHS {
            self.viewport(width, HEIGHT).await;
            self.open(path).await;
            self.find(ready).await;
            let full: u32 = self.js("return document.documentElement.scrollHeight;", vec![]).await;
            self.viewport(width, full.clamp(HEIGHT / 2, 4 * HEIGHT)).await;
            // On a phone a page wider than the screen pans sideways or shows shrunk: a failure,
            // naming the element that makes it so (wide tables scroll inside their own box).
            let laid_out: u32 = self.js("return document.documentElement.scrollWidth;", vec![]).await;
            if laid_out > width {
                let wide: Vec<String> = self.js(WIDER_THAN_THE_PAGE, vec![json!(width)]).await;
                panic!("the {name} page is {laid_out} px wide in a {width} px viewport: {wide:?}");
            }
            let png = self.client.screenshot().await.unwrap();
            std::fs::write(self.shots.join(format!("{name}-{width}.png")), png).unwrap();
        }
        self.devtools("Emulation.clearDeviceMetricsOverride", json!({})).await;
    }

    /// On a failure: the page's address and a screenshot's path, to add to the message.
    async fn describe_failure(&self) -> String {
        let url = match self.client.current_url().await {
            Ok(url) => url.to_string(),
            Err(e) => format!("(unknown: {e})"),
        };
        let file = self.shots.join("failure.png");
        let shot = match self.client.screenshot().await {
            Ok(png) => match std::fs::write(&file, png) {
                Ok(()) => file.display().to_string(),
                Err(e) => format!("(not saved: {e})"),
            },
            Err(e) => format!("(none: {e})"),
        };
        format!("page: {url}\nscreenshot: {shot}")
    }
}

/// The elements that reach past `arguments[0]` px outside any scrolling box, outermost first
/// (an absolutely positioned one escapes the scrolling boxes that are not its containing block).
const WIDER_THAN_THE_PAGE: &str = "
    const width = arguments[0], out = [];
    const positioned = (e) => getComputedStyle(e).position !== 'static';
    const held = (e) => {
      let skipping = ['absolute', 'fixed'].includes(getComputedStyle(e).position);
      for (let p = e.parentElement; p && p !== document.body; p = p.parentElement) {
        if (skipping && !positioned(p)) continue;
        skipping = ['absolute', 'fixed'].includes(getComputedStyle(p).position);
        if (['auto', 'scroll', 'hidden', 'clip'].includes(getComputedStyle(p).overflowX)) return true;
      }
      return false;
    };
    const past = (e) => e.getBoundingClientRect().right > width + 1;
    for (const e of document.querySelectorAll('body *')) {
      const parent = e.parentElement;
      if (past(e) && !held(e) && (parent === document.body || !past(parent) || held(parent))) {
        out.push(e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + [...e.classList].map(c => '.' + c).join('')
          + ' (in ' + parent.tagName.toLowerCase() + ') to ' + Math.round(e.getBoundingClientRect().right) + ' px');
      }
    }
    return out.slice(0, 5);";

/// `POST /session/{id}/goog/cdp/execute`: chromedriver's door to the DevTools protocol.
#[derive(Debug)]
struct DevTools {
    cmd: &'static str,
    params: Value,
}

impl WebDriverCompatibleCommand for DevTools {
    fn endpoint(&self, base: &url::Url, session: Option<&str>) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/goog/cdp/execute", session.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(json!({"cmd": self.cmd, "params": self.params}).to_string()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_works_the_console_in_a_browser() {
    if !browser_installed() {
        return;
    }
    // The default key cache (10 s): a revocation through the console bites at once on this replica.
    let gw = start().await;
    let browser = Browser::launch(&gw.base).await;
    for old in std::fs::read_dir(&browser.shots).unwrap().flatten() {
        if old.path().extension().is_some_and(|e| e == "png") {
            std::fs::remove_file(old.path()).unwrap();
        }
    }
    // Every wait in the flow has its own deadline; this one catches a browser command that hangs.
    let flow = tokio::time::timeout(Duration::from_secs(120), operator_flow(&gw, &browser));
    let at = async || {
        let described = AssertUnwindSafe(browser.describe_failure()).catch_unwind();
        let described = tokio::time::timeout(Duration::from_secs(10), described).await;
        described.ok().and_then(Result::ok).unwrap_or_else(|| "(the browser did not answer)".to_owned())
    };
    let failure = match AssertUnwindSafe(flow).catch_unwind().await {
        Ok(Ok(())) => None,
        Ok(Err(_)) => Some(format!("the browser flow ran past 120 s\n{}", at().await)),
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)")
                .to_owned();
            Some(format!("{message}\n{}", at().await))
        }
    };
    browser.quit().await;
    if let Some(failure) = failure {
        panic!("{failure}");
    }
}

async fn operator_flow(gw: &TestGateway, b: &Browser) {
    // Sign in.
    b.open("/console/keys").await;
    until(Duration::from_secs(10), "the redirect to the sign-in form", async || {
        (b.path().await == "/console/login").then_some(())
    })
    .await;
    b.photograph("/console/login", "#token").await;
    b.type_into("#token", ADMIN_TOKEN).await;
    b.click("form.card button[type=submit]").await;
    until(Duration::from_secs(10), "a console page after signing in", async || {
        let path = b.path().await;
        (path.starts_with("/console/") && path != "/console/login").then_some(())
    })
    .await;

    // A price rule for the model the calls use, through the prices form.
    b.open("/console/prices").await;
    for (field, value) in [("provider", "qwen"), ("model", "qwen-turbo"), ("input", "0.40"), ("output", "1.20")] {
        b.type_into(&format!("#price-form input[name={field}]"), value).await;
    }
    b.click("#price-form button[type=submit]").await;
    until(Duration::from_secs(10), "the rule in the prices table", async || {
        let rows = b.table("#prices-table").await;
        rows.iter()
            .any(|r| {
                cell(r, "Provider") == "qwen"
                    && cell(r, "Model") == "qwen-turbo"
                    && decimal(cell(r, "Input")) == "0.4"
                    && decimal(cell(r, "Output")) == "1.2"
            })
            .then_some(())
    })
    .await;
    assert_eq!(b.text("#price-error").await, "");
    // Edited from its row: the form is refilled with the rule in force, and saving it with
    // another output price replaces that rule (same start); the shipped one stays as history.
    let in_force = |rows: &[BTreeMap<String, String>]| {
        rows.iter()
            .filter(|r| cell(r, "Model") == "qwen-turbo" && cell(r, "State") == "in force")
            .cloned()
            .collect::<Vec<_>>()
    };
    let before = in_force(&b.table("#prices-table").await);
    assert_eq!(before.len(), 1, "one qwen-turbo rule in force: {before:?}");
    let clicked: bool = b
        .js(
            "const row = Array.from(document.querySelectorAll('#prices-table tbody tr')).find(tr =>
                 tr.textContent.includes('qwen-turbo') && tr.textContent.includes('in force'));
             if (!row) return false; row.querySelector('button').click(); return true;",
            vec![],
        )
        .await;
    assert!(clicked, "an Edit button on the rule in force");
    let refilled: Value = b
        .js(
            "const f = document.querySelector('#price-form').elements;
             return {model: f.model.value, input: f.input.value, start: f.effective_from.value};",
            vec![],
        )
        .await;
    assert_eq!(refilled["model"], "qwen-turbo", "{refilled}");
    assert_eq!(decimal(refilled["input"].as_str().unwrap()), "0.4", "{refilled}");
    b.type_into("#price-form input[name=output]", "1.60").await;
    b.click("#price-form button[type=submit]").await;
    let after = until(Duration::from_secs(10), "the edited rule in force", async || {
        let rows = b.table("#prices-table").await;
        let now = in_force(&rows);
        (now.len() == 1 && decimal(cell(&now[0], "Output")) == "1.6").then_some(rows)
    })
    .await;
    let turbo: Vec<_> = after.iter().filter(|r| cell(r, "Model") == "qwen-turbo").collect();
    assert!(turbo.iter().all(|r| decimal(cell(r, "Output")) != "1.2"), "the edited rule was replaced: {turbo:?}");
    assert!(turbo.iter().any(|r| cell(r, "State") == "replaced"), "the shipped rule stays as history: {turbo:?}");

    // A key for the org, through the keys form: shown once on the page.
    b.open("/console/keys").await;
    b.type_into("#org", ORG).await;
    b.click("#org-form button[type=submit]").await;
    b.type_into("#create-form input[name=name]", "browser").await;
    b.click("#create-form button[type=submit]").await;
    let key = until(Duration::from_secs(10), "the new key on the page", async || {
        Some(b.text("#created-key").await).filter(|k| !k.is_empty())
    })
    .await;
    let listed = until(Duration::from_secs(10), "the key in the org's table", async || {
        let rows = b.table("#keys-table").await;
        rows.into_iter().find(|r| cell(r, "Name") == "browser")
    })
    .await;
    let prefix = cell(&listed, "Prefix").to_owned();
    assert!(key.starts_with(&prefix), "the table shows the key's prefix {prefix}");

    // Calls with that key, plain and streamed.
    let mut ids = Vec::new();
    for stream in [false, true, false] {
        let body = if stream { stream_body("qwen:qwen-turbo", true) } else { chat_body("qwen:qwen-turbo") };
        let r = gw.post_as(&key, &body, None).await;
        assert_eq!(r.status(), 200, "a call with the console's key");
        ids.push(r.headers()["x-request-id"].to_str().unwrap().to_owned());
        if stream {
            assert_eq!(sse_payloads(r).await.last(), Some(&json!("[DONE]")));
        } else {
            r.bytes().await.unwrap();
        }
    }

    // The usage report shows them (the usage writer batches: ask again until it does).
    b.open("/console/usage").await;
    until(Duration::from_secs(15), "3 requests of qwen-turbo in the usage table", async || {
        let rows = b.table("#usage-table").await;
        if rows.iter().any(|r| cell(r, "Model") == "qwen-turbo" && cell(r, "Requests") == "3") {
            return Some(());
        }
        b.click("#usage-form button[type=submit]").await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        None
    })
    .await;
    let totals = b.table("#totals-table").await;
    assert!(totals.iter().any(|t| cell(t, "Requests") == "3"), "totals: {totals:?}");
    // The chart's data: by requests, one bar of qwen-turbo holding the 3 calls.
    b.click("#usage-metric option[value=requests]").await;
    let chart = until(Duration::from_secs(5), "the usage chart drawn by requests", async || {
        let chart: Value = b
            .js(
                "const c = document.querySelector('#usage-chart');
                 return c && {metric: c.dataset.metric, total: c.dataset.total,
                              bars: Array.from(c.querySelectorAll('rect title'), t => t.textContent)};",
                vec![],
            )
            .await;
        (chart["metric"] == "requests").then_some(chart)
    })
    .await;
    assert_eq!(chart["total"], "3", "{chart}");
    let bars = chart["bars"].as_array().unwrap();
    assert!(bars.iter().any(|t| t.as_str().unwrap().ends_with("qwen:qwen-turbo: 3")), "{chart}");

    // A monthly budget for the org, through the organisations form: the table shows its burn.
    b.open("/console/orgs").await;
    b.type_into("#org-edit-form input[name=org]", ORG).await;
    b.type_into("#org-edit-form input[name=markup_bps]", "1500").await;
    b.type_into("#org-edit-form input[name=monthly_budget]", "0.0001").await;
    b.click("#org-edit-form button[type=submit]").await;
    let org = until(Duration::from_secs(10), "the org's budget and burn in the table", async || {
        let rows = b.table("#orgs-table").await;
        rows.into_iter().find(|r| cell(r, "Name") == ORG && cell(r, "Monthly budget").starts_with("0.0001"))
    })
    .await;
    assert_eq!(b.text("#org-edit-error").await, "");
    assert_eq!(cell(&org, "Markup"), "+15 %", "{org:?}");
    assert!(cell(&org, "Spent this month").ends_with(" USD"), "the calls' spend: {org:?}");
    assert!(cell(&org, "Budget burn").ends_with('%'), "a burn meter: {org:?}");
    let meter: f64 = b
        .js(
            "return document.querySelector(`#orgs-table tr[data-org=\"${arguments[0]}\"] meter`).value;",
            vec![json!(ORG)],
        )
        .await;
    assert!(meter > 0.0, "the calls burnt some of the budget: {meter}");

    // The requests page lists each call by its request id.
    b.open("/console/requests").await;
    let listed = until(Duration::from_secs(15), "the calls' request ids on the requests page", async || {
        let rows = b.table("#requests-table").await;
        let found: Vec<_> =
            ids.iter().filter_map(|id| rows.iter().find(|r| cell(r, "data-request-id") == id)).collect();
        if found.len() == ids.len() {
            return Some(found.into_iter().cloned().collect::<Vec<_>>());
        }
        b.click("#requests-form button[type=submit]").await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        None
    })
    .await;
    for row in &listed {
        assert!(cell(row, "Status").contains("200") && cell(row, "Model").contains("qwen-turbo"), "{row:?}");
        assert!(cell(row, "Key").contains(&prefix), "the key's prefix: {row:?}");
    }

    // Revoke the key from its row, through the confirm dialog.
    b.open("/console/keys").await;
    b.click(&format!("#keys-table button[aria-label='Revoke key {prefix}']")).await;
    let question =
        until(Duration::from_secs(5), "the confirm dialog", async || b.client.get_alert_text().await.ok()).await;
    assert!(question.contains(&prefix), "{question}");
    b.client.accept_alert().await.unwrap();
    until(Duration::from_secs(10), "the key shown revoked", async || {
        let rows = b.table("#keys-table").await;
        rows.iter()
            .find(|r| cell(r, "Prefix") == prefix)
            .filter(|r| !["", "—"].contains(&cell(r, "Revoked")))
            .map(|_| ())
    })
    .await;
    // At once: the replica that revoked it forgot its cached keys.
    assert_error(gw.post_as(&key, &chat_body("qwen:qwen-turbo"), None).await, 401, "api_key_revoked").await;

    // A plugin swapped on disk: the open plugins page shows the new version, not reloaded.
    b.open("/console/plugins").await;
    let version = async || {
        let rows = b.table("#plugins-table").await;
        rows.iter().find(|r| cell(r, "File") == "qwen.wasm").map(|r| cell(r, "Version").to_owned())
    };
    let before = until(Duration::from_secs(10), "qwen.wasm on the plugins page", version).await;
    assert_eq!(before, "0.1.0");
    let _: Value = b.js("window.aigateNotReloaded = true; return null;", vec![]).await;
    std::fs::write(gw.plugins_dir.path().join("qwen.wasm"), std::fs::read(artifact("test/qwen-next.wasm")).unwrap())
        .unwrap();
    until(Duration::from_secs(15), "qwen 0.1.1-next on the open plugins page", async || {
        (version().await.as_deref() == Some("0.1.1-next")).then_some(())
    })
    .await;
    let same_page: bool = b.js("return window.aigateNotReloaded === true;", vec![]).await;
    assert!(same_page, "the page was not reloaded");

    // Every page of the console, as it stands now.
    let pages: Vec<String> =
        b.js("return Array.from(document.querySelectorAll('nav a'), a => a.getAttribute('href'));", vec![]).await;
    for must in
        ["/console/usage", "/console/requests", "/console/keys", "/console/orgs", "/console/prices", "/console/plugins"]
    {
        assert!(pages.iter().any(|p| p == must), "{must} in the navigation: {pages:?}");
    }
    for page in &pages {
        b.photograph(page, loaded(page)).await;
    }
}

/// The cell of `row` under `heading` (empty if there is none).
fn cell<'a>(row: &'a BTreeMap<String, String>, heading: &str) -> &'a str {
    row.get(heading).map_or("", String::as_str)
}

/// A decimal as written without trailing zeros (`0.400000000` → `0.4`).
fn decimal(text: &str) -> &str {
    if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.') } else { text }
}

/// An element that `page` shows once it has loaded what it shows.
fn loaded(page: &str) -> &'static str {
    match page {
        "/console/usage" => "#usage-chart rect",
        "/console/requests" => "#requests-table tbody tr[data-request-id]",
        "/console/keys" => "#keys-table:not([hidden]) tbody tr",
        "/console/orgs" => "#orgs-table:not([hidden]) tbody tr",
        "/console/prices" => "#prices-table tbody tr",
        "/console/plugins" => "#plugins-table tbody tr",
        // A page this test does not know yet: its heading.
        _ => "main h1",
    }
}
