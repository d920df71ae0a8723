//! Renders responses as DashScope writes them. `serde_json::Map` sorts keys (the workspace does
//! not enable `preserve_order`, and enabling it here would change the gateway's own JSON in
//! tests), so objects are assembled as text in the captured key order (reference 1.5, 1.6).

use serde_json::Value;

/// Identity of one response.
#[derive(Clone, Debug)]
pub(crate) struct Ctx {
    /// `chatcmpl-<uuid>`.
    pub id: String,
    pub model: String,
    pub created: u64,
}

#[derive(Clone, Debug)]
pub(crate) enum UsageDetails {
    /// Just the three counts (the stream capture of 1.6).
    None,
    /// `prompt_tokens_details: {cached_tokens}` (the non-stream capture of 1.5).
    Cached(u64),
    /// `completion_tokens_details: {reasoning_tokens, text_tokens}` and
    /// `prompt_tokens_details: {text_tokens}` (the 2026 thinking captures).
    Reasoning { reasoning: u64, text: u64 },
}

#[derive(Clone, Debug)]
pub(crate) struct Usage {
    pub prompt: u64,
    pub completion: u64,
    pub details: UsageDetails,
}

#[derive(Clone, Debug)]
pub(crate) struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// Everything one answer says, rendered either as one body or as a stream.
#[derive(Clone, Debug)]
pub(crate) struct Completion {
    pub reasoning: Option<String>,
    pub content: String,
    pub tool_call: Option<ToolCall>,
    pub finish_reason: &'static str,
    pub usage: Usage,
}

/// A JSON string literal.
pub(crate) fn js(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

/// `{"k":v,...}` from already-rendered values, in the given order.
pub(crate) fn obj(fields: &[(&str, String)]) -> String {
    let mut out = String::from("{");
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&js(k));
        out.push(':');
        out.push_str(v);
    }
    out.push('}');
    out
}

const NULL: &str = "null";

/// One SSE event carrying `json`.
pub(crate) fn sse_data(json: &str) -> String {
    format!("data: {json}\n\n")
}

pub(crate) const SSE_DONE: &str = "data: [DONE]\n\n";

impl Usage {
    fn render(&self) -> String {
        let total = self.prompt + self.completion;
        let mut fields = vec![
            ("prompt_tokens", self.prompt.to_string()),
            ("completion_tokens", self.completion.to_string()),
            ("total_tokens", total.to_string()),
        ];
        match self.details {
            UsageDetails::None => {}
            UsageDetails::Cached(n) => {
                fields.push(("prompt_tokens_details", obj(&[("cached_tokens", n.to_string())])));
            }
            UsageDetails::Reasoning { reasoning, text } => {
                fields.push((
                    "completion_tokens_details",
                    obj(&[("reasoning_tokens", reasoning.to_string()), ("text_tokens", text.to_string())]),
                ));
                fields.push(("prompt_tokens_details", obj(&[("text_tokens", self.prompt.to_string())])));
            }
        }
        obj(&fields)
    }
}

/// The non-stream `chat.completion` body (1.5).
pub(crate) fn completion_body(ctx: &Ctx, c: &Completion) -> String {
    let mut message = vec![("role", js("assistant")), ("content", js(&c.content))];
    if let Some(r) = &c.reasoning {
        message.push(("reasoning_content", js(r)));
    }
    if let Some(t) = &c.tool_call {
        let call = obj(&[
            ("index", "0".into()),
            ("id", js(&t.id)),
            ("type", js("function")),
            ("function", obj(&[("name", js(&t.name)), ("arguments", js(&t.arguments))])),
        ]);
        message.push(("tool_calls", format!("[{call}]")));
    }
    let choice = obj(&[
        ("message", obj(&message)),
        ("finish_reason", js(c.finish_reason)),
        ("index", "0".into()),
        ("logprobs", NULL.into()),
    ]);
    obj(&[
        ("choices", format!("[{choice}]")),
        ("object", js("chat.completion")),
        ("usage", c.usage.render()),
        ("created", ctx.created.to_string()),
        ("system_fingerprint", NULL.into()),
        ("model", js(&ctx.model)),
        ("id", js(&ctx.id)),
    ])
}

fn chunk(ctx: &Ctx, choices: String, usage: String) -> String {
    obj(&[
        ("choices", choices),
        ("object", js("chat.completion.chunk")),
        ("usage", usage),
        ("created", ctx.created.to_string()),
        ("system_fingerprint", NULL.into()),
        ("model", js(&ctx.model)),
        ("id", js(&ctx.id)),
    ])
}

/// The first chunk puts `delta` first; later ones start with `finish_reason` (1.6 capture).
fn first_choice(delta: String) -> String {
    format!(
        "[{}]",
        obj(&[("delta", delta), ("index", "0".into()), ("logprobs", NULL.into()), ("finish_reason", NULL.into()),])
    )
}

fn later_choice(delta: String, finish_reason: Option<&str>) -> String {
    format!(
        "[{}]",
        obj(&[
            ("finish_reason", finish_reason.map_or_else(|| NULL.into(), js)),
            ("delta", delta),
            ("index", "0".into()),
            ("logprobs", NULL.into()),
        ])
    )
}

/// The SSE events of a streamed answer (1.6), `data: [DONE]` included. The content deltas are
/// `events[1 + reasoning pieces ..]`, one per [`crate::answer::pieces`].
pub(crate) fn stream_events(ctx: &Ctx, c: &Completion, include_usage: bool) -> Vec<String> {
    let thinking = c.reasoning.is_some();
    let mut events = Vec::new();
    let mut push = |choices: String| events.push(sse_data(&chunk(ctx, choices, NULL.into())));

    push(first_choice(if thinking {
        obj(&[("content", NULL.into()), ("role", js("assistant")), ("reasoning_content", js(""))])
    } else {
        obj(&[("content", js("")), ("role", js("assistant"))])
    }));
    if let Some(r) = &c.reasoning {
        for piece in crate::answer::pieces(r) {
            push(later_choice(obj(&[("content", NULL.into()), ("reasoning_content", js(piece))]), None));
        }
    }
    for piece in crate::answer::pieces(&c.content) {
        let delta = if thinking {
            obj(&[("content", js(piece)), ("reasoning_content", NULL.into())])
        } else {
            obj(&[("content", js(piece))])
        };
        push(later_choice(delta, None));
    }
    if let Some(t) = &c.tool_call {
        let head = obj(&[
            ("index", "0".into()),
            ("id", js(&t.id)),
            ("type", js("function")),
            ("function", obj(&[("name", js(&t.name)), ("arguments", js(""))])),
        ]);
        push(later_choice(obj(&[("tool_calls", format!("[{head}]"))]), None));
        for piece in crate::answer::pieces(&t.arguments) {
            let part = obj(&[("index", "0".into()), ("function", obj(&[("arguments", js(piece))]))]);
            push(later_choice(obj(&[("tool_calls", format!("[{part}]"))]), None));
        }
    }
    let last_delta = if thinking {
        obj(&[("content", js("")), ("reasoning_content", NULL.into())])
    } else {
        obj(&[("content", js(""))])
    };
    push(later_choice(last_delta, Some(c.finish_reason)));
    if include_usage {
        events.push(sse_data(&chunk(ctx, "[]".into(), c.usage.render())));
    }
    events.push(SSE_DONE.to_owned());
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Ctx {
        Ctx {
            id: "chatcmpl-428b414f-fdd4-94c6-b179-8f576ad653a8".into(),
            model: "qwen-plus".into(),
            created: 1_726_132_850,
        }
    }

    fn plain(content: &str) -> Completion {
        Completion {
            reasoning: None,
            content: content.into(),
            tool_call: None,
            finish_reason: "stop",
            usage: Usage { prompt: 22, completion: 17, details: UsageDetails::None },
        }
    }

    /// The exact bytes of the reference's stream capture (1.6), for a one-piece answer.
    #[test]
    fn stream_matches_the_reference_capture_byte_for_byte() {
        let got = stream_events(&ctx(), &plain("I am"), true);
        // "I am" is two pieces in our split; the capture has it as one, so compare around it.
        let expected_first = r#"data: {"choices":[{"delta":{"content":"","role":"assistant"},"index":0,"logprobs":null,"finish_reason":null}],"object":"chat.completion.chunk","usage":null,"created":1726132850,"system_fingerprint":null,"model":"qwen-plus","id":"chatcmpl-428b414f-fdd4-94c6-b179-8f576ad653a8"}"#;
        let expected_piece = r#"data: {"choices":[{"finish_reason":null,"delta":{"content":"I"},"index":0,"logprobs":null}],"object":"chat.completion.chunk","usage":null,"created":1726132850,"system_fingerprint":null,"model":"qwen-plus","id":"chatcmpl-428b414f-fdd4-94c6-b179-8f576ad653a8"}"#;
        let expected_finish = r#"data: {"choices":[{"finish_reason":"stop","delta":{"content":""},"index":0,"logprobs":null}],"object":"chat.completion.chunk","usage":null,"created":1726132850,"system_fingerprint":null,"model":"qwen-plus","id":"chatcmpl-428b414f-fdd4-94c6-b179-8f576ad653a8"}"#;
        let expected_usage = r#"data: {"choices":[],"object":"chat.completion.chunk","usage":{"prompt_tokens":22,"completion_tokens":17,"total_tokens":39},"created":1726132850,"system_fingerprint":null,"model":"qwen-plus","id":"chatcmpl-428b414f-fdd4-94c6-b179-8f576ad653a8"}"#;
        assert_eq!(got.len(), 6);
        assert_eq!(got[0], format!("{expected_first}\n\n"));
        assert_eq!(got[1], format!("{expected_piece}\n\n"));
        assert!(got[2].contains(r#""delta":{"content":" am"}"#));
        assert_eq!(got[3], format!("{expected_finish}\n\n"));
        assert_eq!(got[4], format!("{expected_usage}\n\n"));
        assert_eq!(got[5], "data: [DONE]\n\n");
    }

    #[test]
    fn non_stream_matches_the_reference_key_order() {
        let mut c = plain("hi");
        c.usage = Usage { prompt: 11, completion: 65, details: UsageDetails::Cached(0) };
        let body = completion_body(&ctx(), &c);
        assert_eq!(
            body,
            r#"{"choices":[{"message":{"role":"assistant","content":"hi"},"finish_reason":"stop","index":0,"logprobs":null}],"object":"chat.completion","usage":{"prompt_tokens":11,"completion_tokens":65,"total_tokens":76,"prompt_tokens_details":{"cached_tokens":0}},"created":1726132850,"system_fingerprint":null,"model":"qwen-plus","id":"chatcmpl-428b414f-fdd4-94c6-b179-8f576ad653a8"}"#
        );
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(obj(&[("a\"b", js("x\ny"))]), r#"{"a\"b":"x\ny"}"#);
    }
}
