"""Drives a running AIGate with the official OpenAI Python SDK.

Usage: python3 scripts/openai_sdk_check.py BASE_URL [MODEL] [API_KEY]

Completes one chat, one streamed chat (with usage) and a tool call round trip
(a forced call, then the tool's result sent back), and lists the models,
exactly as an application would. Exits non-zero, with the reason, on any
failure. The gateway's integration tests run it (tests/it/sdk.rs).
"""

import json
import os
import sys

from openai import OpenAI


def main() -> int:
    base_url = sys.argv[1].rstrip("/") + "/v1"
    model = sys.argv[2] if len(sys.argv) > 2 else "qwen:qwen-turbo"
    api_key = sys.argv[3] if len(sys.argv) > 3 else os.environ.get("AIGATE_API_KEY", "")
    client = OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=30)

    chat = client.chat.completions.create(
        model=model,
        messages=[
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Who are you?"},
        ],
        temperature=0.7,
        # A DashScope extra, passed through to the provider: only qwen knows it.
        extra_body={"enable_thinking": False} if model.startswith("qwen:") else None,
    )
    text = chat.choices[0].message.content
    assert text, f"empty content: {chat!r}"
    assert chat.choices[0].finish_reason == "stop", chat
    assert chat.usage and chat.usage.total_tokens > 0, chat
    print(f"chat: {text!r} usage={chat.usage.total_tokens}")

    pieces = []
    usage = None
    finish = None
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Who are you?"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
            if choice.finish_reason:
                finish = choice.finish_reason
    streamed = "".join(pieces)
    assert streamed, "no streamed content"
    assert finish == "stop", finish
    assert usage is not None and usage.total_tokens > 0, "no usage chunk"
    print(f"stream: {streamed!r} usage={usage.total_tokens}")

    tools = [{
        "type": "function",
        "function": {
            "name": "get_current_weather",
            "description": "The weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"location": {"type": "string"}},
                "required": ["location"],
            },
        },
    }]
    messages = [{"role": "user", "content": "What's the weather in Hangzhou?"}]
    first = client.chat.completions.create(model=model, messages=messages, tools=tools, tool_choice="required")
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls", first
    assert choice.message.tool_calls, first
    call = choice.message.tool_calls[0]
    assert call.id and call.function.name == "get_current_weather", call
    arguments = json.loads(call.function.arguments)
    assert isinstance(arguments, dict), call
    messages.append({
        "role": "assistant",
        "content": choice.message.content,
        "tool_calls": [{"id": c.id, "type": "function",
                        "function": {"name": c.function.name, "arguments": c.function.arguments}}
                       for c in choice.message.tool_calls],
    })
    for c in choice.message.tool_calls:
        messages.append({"role": "tool", "tool_call_id": c.id, "content": json.dumps({"temperature": 21})})
    second = client.chat.completions.create(model=model, messages=messages, tools=tools)
    answer = second.choices[0].message.content
    assert answer, second
    assert second.choices[0].finish_reason == "stop", second
    print(f"tools: {call.function.name}({call.function.arguments}) id={call.id} -> {answer!r}")

    models = [m.id for m in client.models.list()]
    assert model in models, models
    print(f"models: {models}")

    try:
        client.chat.completions.create(model="nope:nothing", messages=[{"role": "user", "content": "x"}])
    except Exception as e:  # the SDK raises NotFoundError for our 404
        assert getattr(e, "status_code", None) == 404, e
        print("unknown model: 404 as expected")
    else:
        raise AssertionError("an unknown model must fail")
    return 0


if __name__ == "__main__":
    sys.exit(main())
