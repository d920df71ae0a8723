//! What the mock answers and how it counts tokens: pure functions of the request, so tests
//! can compute the exact expected values (or read the formulas here and hard-code them).
//!
//! - **prompt_tokens** = ⌈C / 4⌉, minimum 1, where C is the number of Unicode scalar values
//!   (`str::chars`) in all `messages[].content`: a string counts whole, a parts array counts
//!   the `text` of its parts; anything else counts 0.
//! - **completion_tokens** = the number of whitespace-separated words of everything generated
//!   (reasoning + content + tool-call arguments), minimum 1.
//! - **total_tokens** = prompt_tokens + completion_tokens.
//! - **cached_tokens** ([`crate::Scenario::CachedUsage`]) = max(1, prompt_tokens / 2).
//! - **reasoning_tokens** ([`crate::Scenario::Reasoning`]) = words of [`REASONING`];
//!   `text_tokens` = words of the content, and completion_tokens is their sum.
//!
//! Example: `{"model":"qwen-plus","messages":[{"role":"user","content":"Hi there"}]}` →
//! content `Hello from qwen-plus! You said: Hi there` (7 words), prompt_tokens ⌈8/4⌉ = 2,
//! completion_tokens 7, total_tokens 9.

use serde_json::Value;

/// The reasoning text of [`crate::Scenario::Reasoning`] (10 words).
pub const REASONING: &str = "The user wants a short reply, so I greet them.";

/// The tool name used when the request has no `tools`.
pub const DEFAULT_TOOL_NAME: &str = "get_current_weather";

/// The arguments of [`crate::Scenario::ToolCall`] (2 words, so completion_tokens = 2).
pub const TOOL_ARGUMENTS: &str = r#"{"location": "Hangzhou"}"#;

/// The answer of [`crate::Scenario::Normal`]: `Hello from {model}!`, then ` You said: {text}`
/// when the last `user` message has text (parts arrays: their `text` parts joined by a space).
pub fn content(request: &Value) -> String {
    let model = request.get("model").and_then(Value::as_str).unwrap_or("");
    let last_user = request
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|msgs| msgs.iter().rev().find(|m| m.get("role").and_then(Value::as_str) == Some("user")))
        .map(|m| message_text(m.get("content").unwrap_or(&Value::Null)))
        .unwrap_or_default();
    if last_user.trim().is_empty() {
        format!("Hello from {model}!")
    } else {
        format!("Hello from {model}! You said: {last_user}")
    }
}

/// The content of [`crate::Scenario::SlowStream`]: `chunk-1 chunk-2 … chunk-N`.
pub fn slow_content(chunks: usize) -> String {
    (1..=chunks).map(|i| format!("chunk-{i}")).collect::<Vec<_>>().join(" ")
}

/// The tool called by [`crate::Scenario::ToolCall`]: the first `tools[].function.name`.
pub fn tool_name(request: &Value) -> String {
    request.pointer("/tools/0/function/name").and_then(Value::as_str).unwrap_or(DEFAULT_TOOL_NAME).to_owned()
}

/// `prompt_tokens` of a request (see the module doc).
pub fn prompt_tokens(request: &Value) -> u64 {
    let chars: usize = request
        .get("messages")
        .and_then(Value::as_array)
        .map(|msgs| msgs.iter().map(|m| message_text_chars(m.get("content").unwrap_or(&Value::Null))).sum())
        .unwrap_or(0);
    (chars as u64).div_ceil(4).max(1)
}

/// Whitespace-separated words of `text`.
pub fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// `completion_tokens` for generated texts (see the module doc).
pub fn completion_tokens(generated: &[&str]) -> u64 {
    generated.iter().map(|t| words(t)).sum::<u64>().max(1)
}

/// `cached_tokens` of [`crate::Scenario::CachedUsage`].
pub fn cached_tokens(prompt_tokens: u64) -> u64 {
    (prompt_tokens / 2).max(1)
}

/// How a text is cut into stream deltas: one piece per word, each piece starting with the
/// whitespace before its word (as tokenizers do), so the pieces concatenate to `text` exactly.
/// `"Hello from qwen-plus!"` → `["Hello", " from", " qwen-plus!"]`.
pub fn pieces(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut prev_ws = false;
    for (i, c) in text.char_indices() {
        let ws = c.is_whitespace();
        if ws && !prev_ws && i > start {
            out.push(&text[start..i]);
            start = i;
        }
        prev_ws = ws;
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

fn message_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => {
            parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join(" ")
        }
        _ => String::new(),
    }
}

fn message_text_chars(content: &Value) -> usize {
    match content {
        Value::String(s) => s.chars().count(),
        Value::Array(parts) => {
            parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).map(|t| t.chars().count()).sum()
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pieces_concatenate_to_the_text() {
        for text in ["Hello from qwen-plus!", "  lead", "a\n\nb  c ", "", "one", "你好 世界"] {
            assert_eq!(pieces(text).concat(), text);
        }
        assert_eq!(pieces("Hello from qwen-plus!"), ["Hello", " from", " qwen-plus!"]);
        assert_eq!(pieces("a  b\n"), ["a", "  b", "\n"]);
    }

    #[test]
    fn module_doc_example_holds() {
        let req = json!({"model":"qwen-plus","messages":[{"role":"user","content":"Hi there"}]});
        let c = content(&req);
        assert_eq!(c, "Hello from qwen-plus! You said: Hi there");
        assert_eq!(words(&c), 7);
        assert_eq!(prompt_tokens(&req), 2);
    }

    #[test]
    fn prompt_tokens_counts_chars_of_all_messages_and_parts() {
        let req = json!({"messages":[
            {"role":"system","content":"abcde"},
            {"role":"user","content":[{"type":"text","text":"你好"},{"type":"image_url","image_url":{"url":"x"}}]},
            {"role":"assistant","content":null}
        ]});
        assert_eq!(prompt_tokens(&req), 2); // 7 chars
        assert_eq!(prompt_tokens(&json!({"messages":[]})), 1);
    }

    #[test]
    fn content_without_user_text_is_the_greeting() {
        let req = json!({"model":"qwen-max","messages":[{"role":"system","content":"s"}]});
        assert_eq!(content(&req), "Hello from qwen-max!");
        assert_eq!(words(REASONING), 10);
        assert_eq!(words(TOOL_ARGUMENTS), 2);
        assert_eq!(slow_content(3), "chunk-1 chunk-2 chunk-3");
    }
}
