//! The admin API's data for the operator console (issue 13), through a real gateway: the
//! recent requests (from the ledger, one per request, filtered), keys with their last use,
//! orgs with this month's spend, usage narrowed to a key or a model.

use std::time::Duration;

use aigate_core::Money;
use aigate_testkit::errors;
use serde_json::{Value, json};

use crate::harness::{
    JsonBody, Setup, TestGateway, chat_body, eventually, sse_payloads, start, start_with, stream_body,
};

/// `GET path` as the admin, which must answer 200.
async fn admin_ok(gw: &TestGateway, path: &str) -> Value {
    let (status, body) = gw.admin_json(path).await;
    assert_eq!(status, 200, "{path}: {body}");
    body
}

/// `/admin/requests?query` once it lists `n` requests (the usage writer flushes in batches).
async fn requests_once(gw: &TestGateway, query: &str, n: usize) -> Vec<Value> {
    let mut last = Value::Null;
    let ok = eventually(Duration::from_secs(5), async || {
        last = admin_ok(gw, &format!("/admin/requests?{query}")).await;
        last["data"].as_array().map_or(0, Vec::len) == n
    })
    .await;
    assert!(ok, "/admin/requests?{query} never listed {n} requests: {last}");
    assert_eq!(last["object"], "list");
    last["data"].as_array().unwrap().clone()
}

/// The request ids `/admin/requests?query` lists now.
async fn listed(gw: &TestGateway, query: &str) -> Vec<String> {
    let body = admin_ok(gw, &format!("/admin/requests?{query}")).await;
    body["data"].as_array().unwrap().iter().map(|r| r["request_id"].as_str().unwrap().to_owned()).collect()
}

/// A new key of `org` (created with it if needed): (plaintext, prefix).
async fn new_key(gw: &TestGateway, org: &str) -> (String, String) {
    let (status, body) = gw.admin_post("/admin/keys", &json!({"org": org})).await;
    assert_eq!(status, 201, "{body}");
    (body["key"].as_str().unwrap().to_owned(), body["prefix"].as_str().unwrap().to_owned())
}

/// The prefix of the harness' key: the first of org `test` (keys are listed newest first).
async fn the_test_keys_prefix(gw: &TestGateway) -> String {
    let keys = admin_ok(gw, "/admin/keys?org=test").await;
    keys["data"].as_array().unwrap().last().unwrap()["prefix"].as_str().unwrap().to_owned()
}

/// A chat call with `key`: (its x-request-id, its status).
async fn call(gw: &TestGateway, key: &str, model: &str) -> (String, u16) {
    let r = gw.post_as(key, &chat_body(model), None).await;
    (r.headers()["x-request-id"].to_str().unwrap().to_owned(), r.status().as_u16())
}

fn nanos(amount: &Value) -> i64 {
    Money::parse(amount.as_str().unwrap_or_else(|| panic!("money is decimal text: {amount}"))).unwrap().nanos()
}

/// The fields of a listed request: the contract the console is written against.
const REQUEST_FIELDS: [&str; 20] = [
    "api",
    "attempts",
    "billed_cost",
    "cached_tokens",
    "client_request_id",
    "completion_tokens",
    "created_at",
    "currency",
    "key_prefix",
    "latency_ms",
    "model",
    "org",
    "outcome",
    "prompt_tokens",
    "provider",
    "reasoning_tokens",
    "request_id",
    "status",
    "stream",
    "ttft_ms",
];

#[tokio::test]
async fn recent_requests_show_each_call_with_its_fields_and_no_text() {
    let gw = start_with(Setup { toml: "[routing]\nretries = 1\n".into(), ..Default::default() }).await;
    let prefix = the_test_keys_prefix(&gw).await;

    let r = gw
        .http
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth(&gw.key)
        .header("x-client-request-id", "console-1")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&chat_body("qwen:qwen-turbo")).unwrap())
        .send()
        .await
        .unwrap();
    let plain = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let usage = r.json_value().await["usage"].clone();
    let r = gw.chat(&stream_body("qwen:qwen-turbo", true)).await;
    let streamed = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let events = sse_payloads(r).await;
    let stream_usage = events[events.len() - 2]["usage"].clone();
    // A 500, then the retry answers: one request, two attempts.
    gw.mock.enqueue(errors::internal());
    let r = gw.chat(&chat_body("qwen:qwen-turbo")).await;
    assert_eq!((r.status().as_u16(), &r.headers()["x-aigate-attempts"]), (200, &"2".parse().unwrap()));
    let retried = r.headers()["x-request-id"].to_str().unwrap().to_owned();

    let rows = requests_once(&gw, "org=test", 3).await;
    let ids: Vec<&str> = rows.iter().map(|r| r["request_id"].as_str().unwrap()).collect();
    assert_eq!(ids, [retried.as_str(), streamed.as_str(), plain.as_str()], "newest first, one per request");
    for row in &rows {
        let mut fields: Vec<&str> = row.as_object().unwrap().keys().map(String::as_str).collect();
        fields.sort_unstable();
        assert_eq!(fields, REQUEST_FIELDS, "{row}");
        assert_eq!((row["org"].as_str(), row["key_prefix"].as_str()), (Some("test"), Some(prefix.as_str())));
        assert_eq!((row["api"].as_str(), row["provider"].as_str()), (Some("chat_completions"), Some("qwen")));
        assert_eq!((row["model"].as_str(), row["status"].as_u64()), (Some("qwen-turbo"), Some(200)));
        assert_eq!(row["outcome"], "completed");
        assert_eq!(row["currency"], "USD");
        nanos(&row["billed_cost"]);
        time::OffsetDateTime::parse(
            row["created_at"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
    }
    let [retried_row, stream_row, plain_row] = [&rows[0], &rows[1], &rows[2]];
    assert_eq!(retried_row["attempts"], 2, "{retried_row}");
    assert_eq!(plain_row["attempts"], 1);
    assert_eq!(plain_row["client_request_id"], "console-1");
    assert_eq!(plain_row["stream"], false);
    assert_eq!(plain_row["prompt_tokens"], usage["prompt_tokens"]);
    assert_eq!(plain_row["completion_tokens"], usage["completion_tokens"]);
    assert_eq!(stream_row["stream"], true);
    assert_eq!(stream_row["client_request_id"], Value::Null);
    assert_eq!(stream_row["completion_tokens"], stream_usage["completion_tokens"]);
    let ttft = stream_row["ttft_ms"].as_u64().unwrap_or_else(|| panic!("a stream's time to first token: {stream_row}"));
    assert!(ttft <= stream_row["latency_ms"].as_u64().unwrap(), "{stream_row}");

    // What the client said never reaches the list.
    let text = admin_ok(&gw, "/admin/requests").await.to_string();
    assert!(!text.contains("Who are you") && !text.contains("You said"), "{text}");
    // Each attempt of the retried request is still one call away.
    let attempts = admin_ok(&gw, &format!("/admin/requests/{retried}?org=test")).await;
    assert_eq!(attempts["attempts"].as_array().unwrap().len(), 2, "{attempts}");
}

#[tokio::test]
async fn recent_requests_filter_by_org_key_model_and_status() {
    let gw = start().await;
    let test_key = the_test_keys_prefix(&gw).await;
    let (second, second_prefix) = new_key(&gw, "test").await;
    let (other, other_prefix) = new_key(&gw, "other").await;
    let (turbo, _) = call(&gw, &gw.key, "qwen:qwen-turbo").await;
    let (plus, _) = call(&gw, &second, "qwen:qwen-plus").await;
    let (elsewhere, _) = call(&gw, &other, "qwen:qwen-turbo").await;
    gw.mock.enqueue(errors::rate_limited());
    let (limited, status) = call(&gw, &gw.key, "qwen:qwen-turbo").await;
    assert_eq!(status, 429);
    requests_once(&gw, "", 4).await;

    let cases: [(&str, Vec<&str>); 14] = [
        ("", vec![limited.as_str(), &elsewhere, &plus, &turbo]),
        ("org=test", vec![limited.as_str(), &plus, &turbo]),
        ("org=other", vec![elsewhere.as_str()]),
        (&format!("key={test_key}"), vec![limited.as_str(), &turbo]),
        (&format!("key={second_prefix}&org=test"), vec![plus.as_str()]),
        ("model=qwen-plus", vec![plus.as_str()]),
        ("model=qwen-turbo&org=test", vec![limited.as_str(), &turbo]),
        ("status=4xx", vec![limited.as_str()]),
        ("status=429", vec![limited.as_str()]),
        ("status=2xx", vec![elsewhere.as_str(), &plus, &turbo]),
        ("status=5xx", vec![]),
        ("org=test&status=2xx&model=qwen-turbo", vec![turbo.as_str()]),
        ("limit=1", vec![limited.as_str()]),
        ("org=&key=&model=&status=&limit=", vec![limited.as_str(), &elsewhere, &plus, &turbo]),
    ];
    for (query, expected) in &cases {
        assert_eq!(&listed(&gw, query).await, expected, "?{query}");
    }

    let before = listed(&gw, "limit=500").await;
    let upstream = gw.mock.requests().len();
    let bad: [(&str, u16, &str); 12] = [
        ("status=3xx", 400, "`2xx`, `4xx`, `5xx` or a 3-digit status code"),
        ("status=abc", 400, "`2xx`, `4xx`, `5xx` or a 3-digit status code"),
        ("status=42", 400, "`2xx`, `4xx`, `5xx` or a 3-digit status code"),
        ("status=600", 400, "100 to 599"),
        ("limit=0", 400, "from 1 to 500"),
        ("limit=501", 400, "from 1 to 500"),
        ("limit=-1", 400, "`limit` = `-1` is not a whole number from 1 to 500"),
        ("limit=ten", 400, "`limit` = `ten` is not a whole number from 1 to 500"),
        ("org=bad%20name", 400, "invalid org name"),
        ("org=nobody", 404, "no org named `nobody`"),
        ("key=sk-aig-nope", 404, "no key with prefix `sk-aig-nope`"),
        (&format!("org=test&key={other_prefix}"), 404, "org `test` has no key with prefix"),
    ];
    for (query, status, needle) in bad {
        let (got, body) = gw.admin_json(&format!("/admin/requests?{query}")).await;
        assert_eq!(got, status, "?{query}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "?{query}: {message}");
    }
    assert_eq!(listed(&gw, "limit=500").await, before, "a refused query changes nothing");
    assert_eq!(gw.mock.requests().len(), upstream);
}

#[tokio::test]
async fn keys_show_when_they_were_last_used() {
    let gw = start().await;
    let (_, unused) = new_key(&gw, "test").await;
    let last_used = async |gw: &TestGateway| -> Vec<(String, Value)> {
        let keys = admin_ok(gw, "/admin/keys?org=test").await;
        keys["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| (k["prefix"].as_str().unwrap().into(), k["last_used_at"].clone()))
            .collect()
    };
    assert!(last_used(&gw).await.iter().all(|(_, at)| at.is_null()), "never used yet");

    let before = time::OffsetDateTime::now_utc();
    assert_eq!(gw.chat(&chat_body("qwen:qwen-turbo")).await.status(), 200);
    let used = the_test_keys_prefix(&gw).await;
    let mut seen = Vec::new();
    let ok = eventually(Duration::from_secs(5), async || {
        seen = last_used(&gw).await;
        seen.iter().any(|(prefix, at)| *prefix == used && !at.is_null())
    })
    .await;
    assert!(ok, "{seen:?}");
    for (prefix, at) in seen {
        if prefix == unused {
            assert!(at.is_null(), "a key that made no call");
        } else {
            let at = time::OffsetDateTime::parse(at.as_str().unwrap(), &time::format_description::well_known::Rfc3339)
                .unwrap();
            assert!(at >= before - time::Duration::seconds(1) && at <= time::OffsetDateTime::now_utc(), "{at}");
        }
    }
}

#[tokio::test]
async fn orgs_show_markup_budget_and_this_months_spend() {
    let gw = start().await;
    let (status, body) = gw.admin_post("/admin/prices/seed", &json!({})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = gw
        .admin_post("/admin/orgs/test", &json!({"markup_bps": 1500, "monthly_budget": "10", "models": "qwen:*"}))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = gw.admin_post("/admin/orgs/quiet", &json!({})).await;
    assert_eq!(status, 200, "{body}");

    let r = gw.chat(&chat_body("qwen:qwen-turbo")).await;
    assert_eq!(r.status(), 200);
    let cost = r.headers()["x-aigate-cost"].to_str().unwrap().to_owned();
    let (amount, currency) = cost.split_once(' ').unwrap();
    assert!(Money::parse(amount).unwrap() > Money::ZERO, "a priced call: {cost}");

    let mut orgs = Value::Null;
    let ok = eventually(Duration::from_secs(5), async || {
        orgs = admin_ok(&gw, "/admin/orgs").await;
        let test = orgs["data"].as_array().unwrap().iter().find(|o| o["org"] == "test").cloned().unwrap();
        test["month_spend"].as_array().is_some_and(|s| !s.is_empty())
    })
    .await;
    assert!(ok, "{orgs}");
    assert_eq!(orgs["object"], "list");
    let data = orgs["data"].as_array().unwrap();
    let names: Vec<&str> = data.iter().map(|o| o["org"].as_str().unwrap()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted, "by name");
    let org = |name: &str| data.iter().find(|o| o["org"] == name).cloned().unwrap();

    let today = time::OffsetDateTime::now_utc().date();
    let month_start = today.replace_day(1).unwrap().to_string();
    let test = org("test");
    assert_eq!(test["markup_bps"], 1500);
    assert_eq!(nanos(&test["monthly_budget"]), Money::parse("10").unwrap().nanos());
    assert_eq!(test["budget_currency"], "USD");
    assert_eq!(test["models"], "qwen:*");
    assert_eq!(test["month_start"], month_start.as_str());
    let spend = test["month_spend"].as_array().unwrap();
    assert_eq!(spend.len(), 1, "{test}");
    assert_eq!(spend[0]["currency"], currency);
    assert_eq!(nanos(&spend[0]["billed_cost"]), Money::parse(amount).unwrap().nanos(), "the call's cost");

    let quiet = org("quiet");
    assert_eq!(quiet["month_spend"], json!([]));
    assert_eq!((quiet["monthly_budget"].clone(), quiet["budget_currency"].clone()), (Value::Null, Value::Null));
    assert_eq!((quiet["markup_bps"].as_u64(), quiet["models"].clone()), (Some(0), Value::Null));
}

#[tokio::test]
async fn usage_narrows_to_a_key_and_a_model() {
    let gw = start().await;
    let first = the_test_keys_prefix(&gw).await;
    let (second, second_prefix) = new_key(&gw, "test").await;
    let (_, other_prefix) = new_key(&gw, "other").await;
    for (key, model) in [
        (&gw.key, "qwen:qwen-turbo"),
        (&gw.key, "qwen:qwen-turbo"),
        (&gw.key, "qwen:qwen-plus"),
        (&second, "qwen:qwen-plus"),
    ] {
        assert_eq!(call(&gw, key, model).await.1, 200);
    }
    let requests = |report: &Value| -> u64 {
        report["totals"].as_array().unwrap().iter().map(|t| t["requests"].as_u64().unwrap()).sum()
    };
    let mut all = Value::Null;
    let ok = eventually(Duration::from_secs(5), async || {
        all = admin_ok(&gw, "/admin/usage?org=test").await;
        requests(&all) == 4
    })
    .await;
    assert!(ok, "{all}");

    let cases = [
        (format!("key={first}"), 3),
        (format!("key={second_prefix}"), 1),
        ("model=qwen-plus".to_owned(), 2),
        (format!("key={first}&model=qwen-plus"), 1),
        ("model=qwen-max".to_owned(), 0),
        ("key=&model=".to_owned(), 4),
    ];
    for (query, expected) in cases {
        let report = admin_ok(&gw, &format!("/admin/usage?org=test&{query}")).await;
        assert_eq!(requests(&report), expected, "?{query}: {report}");
        for row in report["rows"].as_array().unwrap() {
            assert!(row["day"].is_string() && row["provider"] == "qwen" && row["requests"].is_u64(), "{row}");
            if query.contains("model=qwen-plus") {
                assert_eq!(row["model"], "qwen-plus");
            }
        }
    }
    for (query, status, needle) in [
        (format!("key={other_prefix}"), 404, "org `test` has no key with prefix"),
        ("key=sk-aig-nope".to_owned(), 404, "no key with prefix"),
    ] {
        let (got, body) = gw.admin_json(&format!("/admin/usage?org=test&{query}")).await;
        assert_eq!(got, status, "?{query}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().contains(needle), "{body}");
    }
}
