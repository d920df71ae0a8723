use std::time::{Duration, Instant};

use aigate_testkit::{MockDashScope, MockOptions, Scenario, sse};
use futures_util::StreamExt as _;
use serde_json::Value;

use crate::{chat_url, client, hello, post};

#[tokio::test]
async fn hang_never_answers_and_drop_closes_the_connection() {
    let mock = MockDashScope::start().await;
    mock.enqueue(Scenario::Hang);
    let url = chat_url(&mock);
    let pending = tokio::spawn(async move {
        client()
            .post(url)
            .bearer_auth(MockDashScope::API_KEY)
            .header("content-type", "application/json")
            .body(hello(false, None).to_string())
            .send()
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!pending.is_finished());
    assert_eq!(mock.chat_requests(), 1);
    drop(mock);
    let result = tokio::time::timeout(Duration::from_secs(5), pending).await.unwrap().unwrap();
    assert!(result.is_err(), "the connection must be closed, not answered");
}

#[tokio::test]
async fn delay_holds_the_headers_then_answers() {
    let mock = MockDashScope::start().await;
    mock.enqueue(Scenario::Delay { before_headers: Duration::from_millis(300), then: Box::new(Scenario::ToolCall) });
    let start = Instant::now();
    let resp = post(&mock, &hello(false, None)).await;
    assert!(start.elapsed() >= Duration::from_millis(300));
    let body: Value = crate::json(resp).await;
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
}

/// Reads a streamed body event by event, noting when each one completed.
async fn timed_events(resp: reqwest::Response) -> Vec<(Duration, sse::Event)> {
    let start = Instant::now();
    let mut parser = sse::Parser::new();
    let mut out = Vec::new();
    let mut body = resp.bytes_stream();
    while let Some(bytes) = body.next().await {
        for event in parser.push(&bytes.unwrap()) {
            out.push((start.elapsed(), event));
        }
    }
    out
}

#[tokio::test]
async fn slow_stream_sends_chunks_one_by_one() {
    let mock = MockDashScope::start().await;
    let interval = Duration::from_millis(100);
    mock.enqueue(Scenario::SlowStream { chunk_interval: interval, chunks: 4 });
    let resp = post(&mock, &hello(true, Some(true))).await;
    let events = timed_events(resp).await;
    // first, 4 pieces, finish, usage, [DONE]
    assert_eq!(events.len(), 8);
    for i in 1..=4 {
        let gap = events[i].0 - events[i - 1].0;
        assert!(gap >= interval * 8 / 10, "event {i} came {gap:?} after the previous one");
    }
    let chunks: Vec<Value> = events.iter().filter_map(|(_, e)| e.json()).collect();
    assert_eq!(sse::content(&chunks), "chunk-1 chunk-2 chunk-3 chunk-4");
    assert_eq!(sse::usage(&chunks).unwrap()["completion_tokens"], 4);
    assert!(events.last().unwrap().1.is_done());
    assert_eq!(mock.streams_completed(), 1);
    assert_eq!(mock.streams_cancelled(), 0);
}

#[tokio::test]
async fn stream_event_interval_spaces_normal_streams() {
    let mock = MockDashScope::start_with(MockOptions {
        stream_event_interval: Duration::from_millis(30),
        ..Default::default()
    })
    .await;
    let events = timed_events(post(&mock, &hello(true, Some(true))).await).await;
    assert_eq!(events.len(), 12);
    for pair in events.windows(2) {
        assert!(pair[1].0 - pair[0].0 >= Duration::from_millis(20));
    }
}

#[tokio::test]
async fn client_disconnect_mid_stream_is_recorded() {
    let mock = MockDashScope::start().await;
    mock.enqueue(Scenario::SlowStream { chunk_interval: Duration::from_millis(50), chunks: 100 });
    let resp = post(&mock, &hello(true, Some(true))).await;
    let mut body = resp.bytes_stream();
    let mut parser = sse::Parser::new();
    let mut seen = 0;
    while seen < 3 {
        seen += parser.push(&body.next().await.unwrap().unwrap()).len();
    }
    drop(body);
    assert!(mock.wait_streams_cancelled(1, Duration::from_secs(5)).await);
    assert_eq!(mock.streams_cancelled(), 1);
    assert_eq!(mock.streams_completed(), 0);
}
