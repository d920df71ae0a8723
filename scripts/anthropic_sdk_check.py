"""Drives a running AIGate's Anthropic Messages API with the official Anthropic Python SDK.

Usage: python3 scripts/anthropic_sdk_check.py BASE_URL MODEL API_KEY

One message, one streamed message, a tool-use round trip (the tool's result sent back),
count_tokens, and an error (an unknown model) that must arrive in Anthropic's shape, exactly
as an application would. Exits non-zero, with the reason, on any failure. The gateway's
integration tests run it (tests/it/messages.rs).
"""

import sys

import anthropic


def main() -> int:
    base_url, model, api_key = sys.argv[1].rstrip("/"), sys.argv[2], sys.argv[3]
    client = anthropic.Anthropic(base_url=base_url, api_key=api_key, max_retries=0, timeout=30)

    msg = client.messages.create(
        model=model,
        max_tokens=256,
        system="You are a helpful assistant.",
        messages=[{"role": "user", "content": "Who are you?"}],
    )
    text = "".join(b.text for b in msg.content if b.type == "text")
    assert msg.role == "assistant" and text, msg
    assert msg.stop_reason == "end_turn", msg.stop_reason
    assert msg.usage.output_tokens > 0, msg.usage
    print(f"message: {text!r} model={msg.model} usage={msg.usage.input_tokens}/{msg.usage.output_tokens}")

    with client.messages.stream(
        model=model,
        max_tokens=256,
        messages=[{"role": "user", "content": "Who are you?"}],
    ) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert streamed and streamed == "".join(b.text for b in final.content if b.type == "text"), (streamed, final)
    assert final.stop_reason == "end_turn" and final.usage.output_tokens > 0, final
    print(f"stream: {streamed!r} usage={final.usage.input_tokens}/{final.usage.output_tokens}")

    tools = [
        {
            "name": "get_current_weather",
            "description": "The weather in a city",
            "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}},
        }
    ]
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    called = client.messages.create(
        model=model, max_tokens=256, tools=tools, tool_choice={"type": "any"}, messages=ask
    )
    uses = [b for b in called.content if b.type == "tool_use"]
    assert called.stop_reason == "tool_use" and uses, called
    use = uses[0]
    assert use.name == "get_current_weather" and isinstance(use.input, dict), use
    answer = client.messages.create(
        model=model,
        max_tokens=256,
        tools=tools,
        messages=ask
        + [
            {"role": "assistant", "content": called.content},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "Sunny, 24 C"}]},
        ],
    )
    assert any(b.type == "text" and b.text for b in answer.content), answer
    print(f"tool: {use.name}({use.input}) then {answer.content[0].text!r}")

    counted = client.messages.count_tokens(model=model, messages=[{"role": "user", "content": "Who are you?"}])
    assert counted.input_tokens > 0, counted
    print(f"count_tokens: {counted.input_tokens}")

    try:
        client.messages.create(model="nobody:nothing", max_tokens=16, messages=[{"role": "user", "content": "hi"}])
    except anthropic.NotFoundError as e:
        assert e.body["type"] == "error" and e.body["error"]["type"] == "not_found_error", e.body
        print(f"error: {e.status_code} {e.body['error']['type']}")
    else:
        raise AssertionError("an unknown model must be a 404")
    return 0


if __name__ == "__main__":
    sys.exit(main())
