use aigate_testkit::{MockDashScope, Scenario, answer, sse};
use serde_json::{Value, json};

use crate::{HELLO_ANSWER, HELLO_COMPLETION_TOKENS, HELLO_PROMPT_TOKENS, hello, post};

#[tokio::test]
async fn non_stream_answer_has_dashscope_shape_and_exact_usage() {
    let mock = MockDashScope::start().await;
    let resp = post(&mock, &hello(false, None)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let text = resp.text().await.unwrap();
    assert!(
        text.starts_with(r#"{"choices":[{"message":{"role":"assistant","content":"Hello from qwen-plus!"#),
        "{text}"
    );
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        body,
        json!({
            "choices": [{"message": {"role": "assistant", "content": HELLO_ANSWER},
                         "finish_reason": "stop", "index": 0, "logprobs": null}],
            "object": "chat.completion",
            "usage": {"prompt_tokens": HELLO_PROMPT_TOKENS, "completion_tokens": HELLO_COMPLETION_TOKENS,
                      "total_tokens": HELLO_PROMPT_TOKENS + HELLO_COMPLETION_TOKENS,
                      "prompt_tokens_details": {"cached_tokens": 0}},
            "created": 1_726_132_850,
            "system_fingerprint": null,
            "model": "qwen-plus",
            "id": format!("chatcmpl-{request_id}"),
        })
    );
    assert_eq!(answer::prompt_tokens(&hello(false, None)), HELLO_PROMPT_TOKENS);
    assert_eq!(answer::content(&hello(false, None)), HELLO_ANSWER);
}

#[tokio::test]
async fn stream_is_the_exact_dashscope_chunk_sequence() {
    let mock = MockDashScope::start().await;
    let resp = post(&mock, &hello(true, Some(true))).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream;charset=UTF-8");
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let id = format!("chatcmpl-{request_id}");
    let text = resp.text().await.unwrap();
    let events = sse::parse(&text);
    assert!(sse::ends_with_done(&events));
    assert!(events.iter().all(|e| e.event.is_none()));

    let envelope = |choices: &str, usage: &str| {
        format!(
            r#"{{"choices":{choices},"object":"chat.completion.chunk","usage":{usage},"created":1726132850,"system_fingerprint":null,"model":"qwen-plus","id":"{id}"}}"#
        )
    };
    let piece = |p: &str| {
        envelope(
            &format!(r#"[{{"finish_reason":null,"delta":{{"content":{}}},"index":0,"logprobs":null}}]"#, json!(p)),
            "null",
        )
    };
    let mut expected = vec![envelope(
        r#"[{"delta":{"content":"","role":"assistant"},"index":0,"logprobs":null,"finish_reason":null}]"#,
        "null",
    )];
    expected.extend(answer::pieces(HELLO_ANSWER).into_iter().map(piece));
    expected.push(envelope(r#"[{"finish_reason":"stop","delta":{"content":""},"index":0,"logprobs":null}]"#, "null"));
    expected.push(envelope(
        "[]",
        &format!(
            r#"{{"prompt_tokens":{HELLO_PROMPT_TOKENS},"completion_tokens":{HELLO_COMPLETION_TOKENS},"total_tokens":{}}}"#,
            HELLO_PROMPT_TOKENS + HELLO_COMPLETION_TOKENS
        ),
    ));
    expected.push("[DONE]".into());
    let got: Vec<&str> = events.iter().map(|e| e.data.as_str()).collect();
    assert_eq!(got, expected);
    // And the framing itself: one `data:` line and a blank line per event.
    let framed: String = expected.iter().map(|e| format!("data: {e}\n\n")).collect();
    assert_eq!(text, framed);

    let chunks = sse::data_json(&text).unwrap();
    assert_eq!(sse::content(&chunks), HELLO_ANSWER);
    assert_eq!(chunks.len(), 1 + 8 + 1 + 1);
}

#[tokio::test]
async fn usage_chunk_only_when_include_usage_is_true() {
    let mock = MockDashScope::start().await;
    for include in [None, Some(false)] {
        let text = post(&mock, &hello(true, include)).await.text().await.unwrap();
        let chunks = sse::data_json(&text).unwrap();
        assert!(sse::ends_with_done(&sse::parse(&text)));
        assert!(chunks.iter().all(|c| c["usage"].is_null()), "{include:?}");
        assert!(chunks.iter().all(|c| c["choices"].as_array().unwrap().len() == 1));
        assert_eq!(sse::finish_reason(&chunks).as_deref(), Some("stop"));
        assert_eq!(sse::content(&chunks), HELLO_ANSWER);
    }
}

#[tokio::test]
async fn max_tokens_truncates_with_finish_reason_length() {
    let mock = MockDashScope::start().await;
    let mut body = hello(true, Some(true));
    body["max_tokens"] = json!(3);
    let chunks = sse::data_json(post(&mock, &body).await.text().await.unwrap()).unwrap();
    assert_eq!(sse::content(&chunks), "Hello from qwen-plus!");
    assert_eq!(sse::finish_reason(&chunks).as_deref(), Some("length"));
    assert_eq!(sse::usage(&chunks).unwrap()["completion_tokens"], 3);
}

#[tokio::test]
async fn reasoning_stream_and_non_stream() {
    let mock = MockDashScope::start().await;
    mock.enqueue(Scenario::Reasoning);
    mock.enqueue(Scenario::Reasoning);

    let text = post(&mock, &hello(true, Some(true))).await.text().await.unwrap();
    let events = sse::parse(&text);
    assert!(
        events[0].data.starts_with(
            r#"{"choices":[{"delta":{"content":null,"role":"assistant","reasoning_content":""},"index":0"#
        )
    );
    let chunks = sse::data_json(&text).unwrap();
    assert_eq!(sse::reasoning_content(&chunks), answer::REASONING);
    assert_eq!(sse::content(&chunks), HELLO_ANSWER);
    // All reasoning comes before any content.
    let first_content = chunks
        .iter()
        .position(|c| c["choices"][0]["delta"]["content"].as_str().is_some_and(|s| !s.is_empty()))
        .unwrap();
    let last_reasoning = chunks
        .iter()
        .rposition(|c| c["choices"][0]["delta"]["reasoning_content"].as_str().is_some_and(|s| !s.is_empty()))
        .unwrap();
    assert!(last_reasoning < first_content);
    assert_eq!(chunks[1]["choices"][0]["delta"], json!({"content": null, "reasoning_content": "The"}));
    let usage = json!({
        "prompt_tokens": HELLO_PROMPT_TOKENS, "completion_tokens": 10 + HELLO_COMPLETION_TOKENS,
        "total_tokens": HELLO_PROMPT_TOKENS + 10 + HELLO_COMPLETION_TOKENS,
        "completion_tokens_details": {"reasoning_tokens": 10, "text_tokens": HELLO_COMPLETION_TOKENS},
        "prompt_tokens_details": {"text_tokens": HELLO_PROMPT_TOKENS},
    });
    assert_eq!(sse::usage(&chunks), Some(usage.clone()));

    let body: Value = crate::json(post(&mock, &hello(false, None)).await).await;
    assert_eq!(body["choices"][0]["message"]["reasoning_content"], answer::REASONING);
    assert_eq!(body["choices"][0]["message"]["content"], HELLO_ANSWER);
    assert_eq!(body["usage"], usage);
}

#[tokio::test]
async fn tool_call_stream_and_non_stream() {
    let mock = MockDashScope::start().await;
    mock.enqueue(Scenario::ToolCall);
    mock.enqueue(Scenario::ToolCall);
    let mut req = hello(false, None);
    req["tools"] = json!([{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]);

    let body: Value = crate::json(post(&mock, &req).await).await;
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], "");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(call["index"], 0);
    assert_eq!(call["type"], "function");
    assert!(call["id"].as_str().unwrap().starts_with("call_"));
    assert_eq!(call["function"], json!({"name": "lookup", "arguments": answer::TOOL_ARGUMENTS}));
    assert_eq!(body["usage"]["completion_tokens"], 2);

    req["stream"] = json!(true);
    let chunks = sse::data_json(post(&mock, &req).await.text().await.unwrap()).unwrap();
    let calls: Vec<&Value> = chunks.iter().filter_map(|c| c["choices"][0]["delta"].get("tool_calls")).collect();
    assert_eq!(calls.len(), 3);
    assert_eq!(calls[0][0]["index"], 0);
    assert_eq!(calls[0][0]["function"]["name"], "lookup");
    assert!(calls[0][0]["id"].as_str().unwrap().starts_with("call_"));
    assert!(calls[1][0].get("id").is_none());
    let args: String = calls.iter().map(|c| c[0]["function"]["arguments"].as_str().unwrap()).collect();
    assert_eq!(args, answer::TOOL_ARGUMENTS);
    assert_eq!(sse::finish_reason(&chunks).as_deref(), Some("tool_calls"));
}

#[tokio::test]
async fn cached_usage_reports_cached_tokens() {
    let mock = MockDashScope::start().await;
    mock.enqueue(Scenario::CachedUsage);
    mock.enqueue(Scenario::CachedUsage);
    let body: Value = crate::json(post(&mock, &hello(false, None)).await).await;
    assert_eq!(body["usage"]["prompt_tokens_details"]["cached_tokens"], 5);
    let chunks = sse::data_json(post(&mock, &hello(true, Some(true))).await.text().await.unwrap()).unwrap();
    assert_eq!(sse::usage(&chunks).unwrap()["prompt_tokens_details"]["cached_tokens"], 5);
}

#[tokio::test]
async fn scripted_scenarios_are_fifo_then_normal_and_requests_are_recorded() {
    let mock = MockDashScope::start().await;
    mock.enqueue(aigate_testkit::errors::internal());
    mock.enqueue(Scenario::ToolCall);
    // A request failing the built-in checks does not consume the script.
    let bad = post(&mock, &json!({"model": "qwen-plus", "messages": []})).await;
    assert_eq!(bad.status(), 400);
    assert_eq!(post(&mock, &hello(false, None)).await.status(), 500);
    let body: Value = crate::json(post(&mock, &hello(false, None)).await).await;
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
    let body: Value = crate::json(post(&mock, &hello(false, None)).await).await;
    assert_eq!(body["choices"][0]["finish_reason"], "stop");

    assert_eq!(mock.chat_requests(), 4);
    let recorded = mock.requests();
    assert_eq!(recorded.len(), 4);
    let last = &recorded[3];
    assert_eq!(last.method, "POST");
    assert_eq!(last.path, "/compatible-mode/v1/chat/completions");
    assert_eq!(last.header("authorization"), Some("Bearer sk-mock-upstream-key"));
    assert_eq!(last.header("Content-Type"), Some("application/json"));
    assert_eq!(last.json(), hello(false, None));
}

#[tokio::test]
async fn ids_are_deterministic_per_seed() {
    let a = MockDashScope::start().await;
    let b = MockDashScope::start().await;
    let id = |v: Value| v["id"].as_str().unwrap().to_owned();
    let ia: Value = crate::json(post(&a, &hello(false, None)).await).await;
    let ib: Value = crate::json(post(&b, &hello(false, None)).await).await;
    assert_eq!(id(ia.clone()), id(ib));
    let uuid = id(ia).strip_prefix("chatcmpl-").unwrap().to_owned();
    let groups: Vec<usize> = uuid.split('-').map(str::len).collect();
    assert_eq!(groups, [8, 4, 4, 4, 12]);
    let ia2: Value = crate::json(post(&a, &hello(false, None)).await).await;
    assert_ne!(id(ia2), format!("chatcmpl-{uuid}"));
}
