//! Billing and budgets at the trust boundary (issue 8): who chooses the
//! ledger key, calls nobody priced, budgets and currencies, usage ranges,
//! operator input ranges, the dev key.

use std::time::Duration;

use aigate_core::{Money, OrgName, TokenUsage};
use aigate_store::{KeyRepo, LedgerEntry, OrgRepo, Store, UsageRepo};
use serde_json::{Value, json};

use aigate_testkit::MockDashScope;

use crate::harness::{
    ADMIN_TOKEN, JsonBody, Setup, TestGateway, assert_error, chat_body, eventually, fresh_postgres, start, start_with,
    start_with_anthropic, start_with_mock,
};

fn state(gw: &TestGateway) -> &std::sync::Arc<aigate::server::AppState> {
    gw.gateway.as_ref().unwrap().state()
}

async fn post(gw: &TestGateway, body: &Value, headers: &[(&str, &[u8])]) -> reqwest::Response {
    let mut req = gw
        .http
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(&gw.key)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(body).unwrap());
    for (name, value) in headers {
        req = req.header(*name, reqwest::header::HeaderValue::from_bytes(value).unwrap());
    }
    req.send().await.unwrap()
}

async fn admin_post(gw: &TestGateway, path: &str, body: &Value) -> reqwest::Response {
    let body = serde_json::to_vec(body).unwrap();
    gw.http
        .post(gw.url(path))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

/// `/admin/usage` once it counts `requests` calls in all.
async fn usage_with(gw: &TestGateway, query: &str, requests: u64) -> Value {
    let mut last = Value::Null;
    let counted =
        |v: &Value| v["totals"].as_array().map_or(0, |t| t.iter().map(|t| t["requests"].as_u64().unwrap()).sum());
    let ok = eventually(Duration::from_secs(5), async || {
        last = gw.admin_json(&format!("/admin/usage?{query}")).await.1;
        counted(&last) == requests
    })
    .await;
    assert!(ok, "usage never reached {requests} requests: {last}");
    last
}

fn aigate(args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_aigate"))
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("AIGATE_CONFIG")
        .envs(envs.iter().copied())
        .output()
        .unwrap()
}

// ---- the ledger key ------------------------------------------------------------

#[tokio::test]
async fn a_client_chosen_request_id_never_decides_the_ledger_key() {
    let gw = start().await;
    let mut gateway_ids = Vec::new();
    let long = "x".repeat(300);
    let cases: [&[u8]; 5] = [b"same-id", b"same-id", b"same-id", long.as_bytes(), "caf\u{e9}".as_bytes()];
    for id in cases {
        let r = post(&gw, &chat_body("qwen:qwen-turbo"), &[("x-request-id", id)]).await;
        assert_eq!(r.status(), 200, "an odd client id is ignored, never refused");
        let ours = r.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert!(ours.starts_with("req_") && ours.len() == 36, "the gateway's own id: {ours}");
        let echoed = r.headers().get("x-client-request-id").map(|v| v.as_bytes().to_vec());
        if id == b"same-id" {
            assert_eq!(echoed.as_deref(), Some(&b"same-id"[..]), "a well-formed client id is echoed apart");
        } else {
            assert_eq!(echoed, None, "an over-long or non-ASCII id is dropped");
        }
        gateway_ids.push(ours);
    }
    // OpenAI's header for the client's id works too, and wins.
    let r = post(&gw, &chat_body("qwen:qwen-turbo"), &[("x-client-request-id", b"mine"), ("x-request-id", b"same-id")])
        .await;
    assert_eq!(r.headers()["x-client-request-id"], "mine");
    gateway_ids.push(r.headers()["x-request-id"].to_str().unwrap().to_owned());
    gateway_ids.sort();
    gateway_ids.dedup();
    assert_eq!(gateway_ids.len(), 6);
    // Every call is billed: six ledger rows, not one per client id.
    let usage = usage_with(&gw, "org=test", 6).await;
    assert_eq!(usage["totals"][0]["requests"], 6);
}

// ---- every call priced or refused ------------------------------------------------

/// A provider that refuses unpriced models: refused before the provider,
/// the idempotency claim or a rate reservation; priced once a rule exists.
#[tokio::test]
async fn an_unpriced_model_is_refused_before_anything_when_its_provider_says_so() {
    let mock = MockDashScope::start().await;
    let toml = format!(
        "\n[providers.strict]\nplugin = \"openai\"\nbase_url = \"{}\"\nmodels = [\"*\"]\nunpriced = \"refuse\"\n\n[limits]\nkey_rpm = 1\n",
        mock.base_url()
    );
    let mut setup = Setup { toml, ..Default::default() };
    setup.env.insert("STRICT_API_KEY".into(), MockDashScope::API_KEY.into());
    let gw = start_with_mock(setup, mock).await;
    let body = chat_body("strict:qwen-plus");
    for _ in 0..3 {
        let r = post(&gw, &body, &[("idempotency-key", b"k-1")]).await;
        let err = assert_error(r, 400, "model_not_priced").await;
        let message = err["error"]["message"].as_str().unwrap();
        assert!(message.contains("aigate prices set --provider strict --model qwen-plus"), "{message}");
        assert_eq!(err["error"]["param"], "model");
    }
    assert_eq!(gw.mock.requests().len(), 0, "nothing reached the provider");

    let r = admin_post(
        &gw,
        "/admin/prices",
        &json!({"provider": "strict", "model": "qwen-plus", "input": "1", "output": "2"}),
    )
    .await;
    assert_eq!(r.status(), 201);
    // Same idempotency key: the refusals claimed nothing. key_rpm = 1: they reserved nothing.
    let r = post(&gw, &body, &[("idempotency-key", b"k-1")]).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("idempotent-replayed").is_none());
    let cost = r.headers()["x-aigate-cost"].to_str().unwrap().to_owned();
    let v = r.json_value().await;
    let (p, c) = (v["usage"]["prompt_tokens"].as_i64().unwrap(), v["usage"]["completion_tokens"].as_i64().unwrap());
    assert_eq!(cost, format!("{} USD", Money::from_nanos(p * 1_000 + c * 2_000)), "priced by the new rule");
    assert_eq!(gw.mock.requests().len(), 1);
}

/// The dev setup allows unpriced calls at zero, and usage reports say so.
#[tokio::test]
async fn an_allowed_unpriced_call_is_billed_zero_and_reported() {
    let gw = start().await;
    let r = gw.chat(&chat_body("openai:qwen-plus")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-aigate-cost"], "0.000000000 USD");
    assert_eq!(gw.chat(&chat_body("qwen:qwen-turbo")).await.status(), 200);
    let usage = usage_with(&gw, "org=test", 2).await;
    assert_eq!(usage["totals"][0]["unpriced_requests"], 1, "{usage}");
    let warnings = usage["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{usage}");
    let w = warnings[0].as_str().unwrap();
    assert!(
        w.contains("openai:qwen-plus") && w.contains("aigate prices set --provider openai --model qwen-plus"),
        "{w}"
    );
    let row = usage["rows"].as_array().unwrap().iter().find(|r| r["provider"] == "openai").unwrap();
    assert_eq!(row["unpriced_requests"], 1);
}

/// Off the dev setup (Postgres), unpriced models are refused by default,
/// and the shipped list prices are in place.
#[tokio::test]
async fn on_postgres_unpriced_models_are_refused_by_default() {
    let Some(db) = fresh_postgres() else { return };
    let gw = start_with(Setup { env: [("DATABASE_URL".to_owned(), db)].into(), ..Default::default() }).await;
    assert_error(gw.chat(&chat_body("openai:qwen-plus")).await, 400, "model_not_priced").await;
    assert_eq!(gw.mock.requests().len(), 0);
    let r = gw.chat(&chat_body("qwen:qwen-turbo")).await;
    assert_eq!(r.status(), 200, "qwen-turbo has a shipped price");
    assert_ne!(r.headers()["x-aigate-cost"], "0.000000000 USD");
}

/// The anthropic and openai plugins' models ship with list prices: a call is
/// billed exactly from them.
#[tokio::test]
async fn anthropic_calls_are_billed_at_the_shipped_list_prices() {
    let (gw, _anthropic) = start_with_anthropic(Setup::default()).await;
    let r = gw.chat(&chat_body("anthropic:claude-haiku-4-5")).await;
    assert_eq!(r.status(), 200);
    let cost = r.headers()["x-aigate-cost"].to_str().unwrap().to_owned();
    let v = r.json_value().await;
    let u = &v["usage"];
    let (p, c) = (u["prompt_tokens"].as_i64().unwrap(), u["completion_tokens"].as_i64().unwrap());
    let cached = u["prompt_tokens_details"]["cached_tokens"].as_i64().unwrap_or(0);
    // $1.00 input, $0.10 cache reads, $5.00 output per million tokens.
    let nanos = (p - cached) * 1_000 + cached * 100 + c * 5_000;
    assert!(nanos > 0);
    assert_eq!(cost, format!("{} USD", Money::from_nanos(nanos)), "{v}");
    let (_, prices) = gw.admin_json("/admin/prices").await;
    let priced = |provider: &str, model: &str| {
        prices["data"].as_array().unwrap().iter().any(|r| r["provider"] == provider && r["model"] == model)
    };
    for model in ["gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini"] {
        assert!(priced("openai", model), "openai:{model}");
    }
    for model in ["claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1"] {
        assert!(priced("anthropic", model), "anthropic:{model}");
    }
}

/// `aigate migrate` then `serve` (or any start) prices the shipped models,
/// and seeding never overrides an operator's rule.
#[test]
fn migrate_seeds_the_shipped_prices_without_overriding_the_operator() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let env = [("AIGATE_DATA_DIR", data.as_str())];
    let set = ["prices", "set", "--provider", "openai", "--model", "gpt-4o", "--input", "9", "--output", "9"];
    let set_at = [&set[..], &["--effective-from", "2020-01-01T00:00:00Z"]].concat();
    assert!(aigate(&["migrate"], &env).status.success());
    let out = aigate(&["prices", "list"], &env);
    let rules: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rules = rules.as_array().unwrap();
    for (provider, model) in [("qwen", "qwen-turbo"), ("openai", "gpt-4o"), ("anthropic", "claude-sonnet-4-5")] {
        assert!(
            rules.iter().any(|r| r["provider"] == provider && r["model"] == model),
            "{provider}:{model} after migrate"
        );
    }

    // On a fresh database an operator's older rule stays in force through
    // migrate and seed alike.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let env = [("AIGATE_DATA_DIR", data.as_str())];
    let out = aigate(&set_at, &env);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(aigate(&["migrate"], &env).status.success());
    let out = aigate(&["prices", "seed"], &env);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("0 price rules added"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = aigate(&["prices", "list"], &env);
    let rules: Value = serde_json::from_slice(&out.stdout).unwrap();
    let gpt4o: Vec<&Value> =
        rules.as_array().unwrap().iter().filter(|r| r["provider"] == "openai" && r["model"] == "gpt-4o").collect();
    assert_eq!(gpt4o.len(), 1, "only the operator's rule: {gpt4o:?}");
}

// ---- budgets and currencies ----------------------------------------------------

/// A budget counts its own currency; a call priced in another one is refused
/// before anything happens, and a budget is refused for an org already billed
/// in another currency this month.
#[tokio::test]
async fn no_spend_escapes_a_budget_because_of_its_currency() {
    let gw = start_with(Setup { toml: "[limits]\nbudget_cache_ms = 50\n".into(), ..Default::default() }).await;
    let st = state(&gw);
    // An EUR price for this org only; the budget is in USD (the billing currency).
    let eur = json!({"provider": "qwen", "model": "qwen-plus", "input": "1", "output": "1", "currency": "EUR", "org": "test"});
    assert_eq!(admin_post(&gw, "/admin/prices", &eur).await.status(), 201);
    // Listed with the org's name, as `SetPrice` takes it (the console's edit form refills it).
    let (_, prices) = gw.admin_json("/admin/prices").await;
    let listed: Vec<_> = prices["data"].as_array().unwrap().iter().filter(|r| r["currency"] == "EUR").collect();
    assert_eq!(listed.len(), 1, "{prices}");
    assert_eq!(listed[0]["org_name"], "test");
    assert!(listed[0]["org"].is_number(), "{prices}");
    let global = prices["data"].as_array().unwrap().iter().find(|r| r["org"].is_null()).unwrap();
    assert!(global["org_name"].is_null(), "{global}");
    let r = admin_post(&gw, "/admin/orgs/test", &json!({"monthly_budget": "100"})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json_value().await["budget_currency"], "USD");
    st.auth.forget_all();
    let err = assert_error(gw.chat(&chat_body("qwen:qwen-plus")).await, 400, "budget_currency_mismatch").await;
    assert!(err["error"]["message"].as_str().unwrap().contains("EUR"), "{err}");
    assert_eq!(gw.mock.requests().len(), 0, "refused before the provider");
    assert_eq!(gw.chat(&chat_body("qwen:qwen-turbo")).await.status(), 200, "USD-priced calls pass");

    // A budget in EUR counts EUR spend: it fills and refuses.
    let other =
        aigate::admin::create_key(&st.store, &aigate::admin::CreateKey { org: "euro".into(), ..Default::default() })
            .await
            .unwrap()
            .key;
    let eur = json!({"provider": "qwen", "model": "qwen-plus", "input": "1", "output": "1", "currency": "EUR", "org": "euro"});
    assert_eq!(admin_post(&gw, "/admin/prices", &eur).await.status(), 201);
    let r = admin_post(&gw, "/admin/orgs/euro", &json!({"monthly_budget": "0.000001", "budget_currency": "EUR"})).await;
    assert_eq!(r.status(), 200);
    let call = async || gw.post_as(&other, &chat_body("qwen:qwen-plus"), None).await;
    assert_eq!(call().await.status(), 200);
    assert!(eventually(Duration::from_secs(5), async || call().await.status() == 429).await, "the EUR budget fills");
    let err = assert_error(call().await, 429, "budget_exceeded").await;
    assert!(err["error"]["message"].as_str().unwrap().contains("EUR"), "{err}");

    // Org `test` has USD spend this month: a budget in EUR could not count it.
    usage_with(&gw, "org=test", 1).await;
    let r = admin_post(&gw, "/admin/orgs/test", &json!({"monthly_budget": "100", "budget_currency": "EUR"})).await;
    assert_eq!(r.status(), 400);
    let err = r.json_value().await;
    assert!(err["error"]["message"].as_str().unwrap().contains("billed"), "{err}");
}

// ---- usage ranges ----------------------------------------------------------------

fn at(text: &str) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap()
}

/// One USD ledger row of 1 nano at each instant, for org `name`.
async fn rows_at(store: &Store, name: &str, instants: &[&str]) {
    let org = store.get_or_create_org(&OrgName::parse(name).unwrap()).await.unwrap();
    aigate::admin::create_key(store, &aigate::admin::CreateKey { org: name.into(), ..Default::default() })
        .await
        .unwrap();
    let key_id = store.list_keys(org.id).await.unwrap()[0].id;
    let entries: Vec<LedgerEntry> = instants
        .iter()
        .map(|t| LedgerEntry {
            attempt: 1,
            api: "chat_completions".into(),
            request_id: aigate::request_id::generate(),
            client_request_id: None,
            org_id: org.id,
            key_id,
            provider: "qwen".into(),
            model: "qwen-turbo".into(),
            stream: false,
            usage: TokenUsage { prompt: 1, completion: 1, cached: 0, reasoning: 0 },
            status: 200,
            outcome: "completed".into(),
            latency_ms: 1,
            ttft_ms: None,
            idempotency_key: None,
            raw_cost: None,
            billed_cost: Money::from_nanos(1),
            currency: "USD".into(),
            unpriced: false,
            created_at: at(t),
        })
        .collect();
    store.insert_usage(&entries).await.unwrap();
}

/// `to` is the day after the last: two consecutive monthly reports never
/// count a day twice, on the admin API and the CLI alike, for rows on the
/// first and last instants of the boundary days.
#[tokio::test]
async fn usage_ranges_are_half_open_on_the_admin_api_and_the_cli() {
    let gw = start().await;
    let st = state(&gw);
    let instants = [
        "2026-10-01T00:00:00Z",
        "2026-10-31T23:59:59.999999Z",
        "2026-11-01T00:00:00Z",
        "2026-11-30T23:59:59.999999Z",
        "2026-12-01T00:00:00Z",
    ];
    rows_at(&st.store, "ranges", &instants).await;
    let requests = |v: &Value| v["totals"][0]["requests"].as_u64().unwrap_or(0);
    let (s, october) = gw.admin_json("/admin/usage?org=ranges&from=2026-10-01&to=2026-11-01").await;
    assert_eq!(s, 200, "{october}");
    let (_, november) = gw.admin_json("/admin/usage?org=ranges&from=2026-11-01&to=2026-12-01").await;
    let (_, both) = gw.admin_json("/admin/usage?org=ranges&from=2026-10-01&to=2026-12-01").await;
    assert_eq!((requests(&october), requests(&november), requests(&both)), (2, 2, 4), "{october} {november}");
    let (_, day) = gw.admin_json("/admin/usage?org=ranges&from=2026-11-30&to=2026-12-01").await;
    assert_eq!(requests(&day), 1, "one day: from that day to the next");

    for (query, needle) in [
        ("from=2026-11-01&to=2026-11-01", "after"),
        ("from=2026-12-01&to=2026-11-01", "after"),
        ("to=2026-02-30", "to"),
    ] {
        let (status, body) = gw.admin_json(&format!("/admin/usage?org=ranges&{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().contains(needle), "{query}: {body}");
    }

    let data = gw.data_dir.path().display().to_string();
    let env = [("AIGATE_DATA_DIR", data.as_str())];
    let out = aigate(&["usage", "--org", "ranges", "--from", "2026-11-01", "--to", "2026-12-01"], &env);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(requests(&cli), 2);
    let out = aigate(&["usage", "--org", "ranges", "--from", "2026-11-02", "--to", "2026-11-01"], &env);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("day after the last"));
}

// ---- operator input ranges -------------------------------------------------------

#[tokio::test]
async fn out_of_range_numbers_are_clear_400s_on_the_admin_api() {
    let gw = start().await;
    let cases = [
        ("/admin/keys", json!({"org": "a", "expires_in_days": 4_294_967_295_u64}), "expires_in_days"),
        ("/admin/keys", json!({"org": "a", "expires_in_days": 36_501}), "expires_in_days"),
        ("/admin/keys", json!({"org": "a", "rpm": 0}), "rpm"),
        ("/admin/keys", json!({"org": "a", "tpm": 0}), "tpm"),
        ("/admin/keys", json!({"org": "a", "tpm": u64::MAX}), "tpm"),
        ("/admin/keys", json!({"org": "a", "expires_in_days": -1}), "expires_in_days"),
        ("/admin/keys", json!({"org": "a", "rpm": 1e20}), "rpm"),
        ("/admin/orgs/a", json!({"markup_bps": 4_294_967_295_u64}), "markup_bps"),
        ("/admin/orgs/a", json!({"monthly_budget": "1", "budget_currency": "dollars"}), "budget_currency"),
        ("/admin/orgs/a", json!({"monthly_budget": "-5"}), "monthly_budget"),
        ("/admin/prices", json!({"provider": "q", "model": "m", "input": "99999999999999", "output": "1"}), "input"),
    ];
    for (path, body, field) in cases {
        let r = admin_post(&gw, path, &body).await;
        assert_eq!(r.status(), 400, "{path} {body}");
        assert!(r.headers().contains_key("x-request-id"));
        let err = r.json_value().await;
        assert_eq!(err["error"]["type"], "invalid_request_error", "{body}: {err}");
        assert!(err["error"]["message"].as_str().unwrap().contains(field), "{body}: {err}");
    }
    // The upper bound itself is fine.
    let r =
        admin_post(&gw, "/admin/keys", &json!({"org": "a", "expires_in_days": 36_500, "rpm": 4_294_967_295_u64})).await;
    assert_eq!(r.status(), 201);
}

#[test]
fn out_of_range_numbers_are_clear_cli_errors() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let env = [("AIGATE_DATA_DIR", data.as_str())];
    let cases: [(&[&str], i32, &str); 7] = [
        (&["keys", "create", "--org", "a", "--expires-in-days", "4294967295"], 1, "expires_in_days"),
        (&["keys", "create", "--org", "a", "--expires-in-days", "99999999999"], 2, "expires-in-days"),
        (&["keys", "create", "--org", "a", "--rpm", "0"], 1, "rpm"),
        (&["keys", "create", "--org", "a", "--rpm", "-1"], 2, "rpm"),
        (&["orgs", "set", "a", "--markup-bps", "4294967295"], 1, "markup_bps"),
        (&["orgs", "set", "a", "--markup-bps", "-5"], 2, "markup-bps"),
        (&["usage", "--org", "a", "--from", "2026-13-01"], 1, "from"),
    ];
    for (args, code, needle) in cases {
        let out = aigate(args, &env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

// ---- the dev key ----------------------------------------------------------------

/// `aigate serve` on Postgres never makes a live key by itself.
#[tokio::test]
async fn serve_on_postgres_creates_no_key() {
    let Some(db) = fresh_postgres() else { return };
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_aigate"))
        .arg("serve")
        .env_remove("AIGATE_CONFIG")
        .env("DATABASE_URL", &db)
        .env("AIGATE_DATA_DIR", dir.path())
        .env("AIGATE_LISTEN", "127.0.0.1:0")
        .env("AIGATE_PLUGINS_DIR", dir.path())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let mut printed = Vec::new();
    let listening = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            printed.push(line.clone());
            if line.contains("aigate keys create") {
                return true;
            }
            assert!(!line.contains("sk-aig-"), "a key was printed: {line}");
        }
        false
    })
    .await
    .unwrap();
    child.kill().await.unwrap();
    assert!(listening, "{printed:?}");
    let store = Store::connect(Some(&db), dir.path()).await.unwrap();
    assert!(store.list_orgs().await.unwrap().is_empty(), "no org, no key");
    store.close().await;
}
