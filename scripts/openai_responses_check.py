"""Drives a running AIGate's Responses API with the official OpenAI Python SDK.

Usage: python3 scripts/openai_responses_check.py BASE_URL MODEL API_KEY

One response (its `output_text`), one streamed response (the deltas and the final
`response.completed`, whose `output_text` must match them), and a function-call round trip
(a forced call, then its output sent back as a `function_call_output` item), exactly as an
application would. Exits non-zero, with the reason, on any failure. The gateway's integration
tests run it (tests/it/responses.rs).
"""

import sys

from openai import OpenAI


def main() -> int:
    base_url, model, api_key = sys.argv[1].rstrip("/") + "/v1", sys.argv[2], sys.argv[3]
    client = OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=30)

    r = client.responses.create(model=model, instructions="You are a helpful assistant.", input="Who are you?")
    assert r.object == "response" and r.status == "completed", r
    assert r.output_text, r
    assert r.usage and r.usage.output_tokens > 0, r.usage
    print(f"response: {r.output_text!r} usage={r.usage.input_tokens}/{r.usage.output_tokens}")

    deltas, final, kinds = [], None, []
    for event in client.responses.create(model=model, input="Who are you?", stream=True):
        kinds.append(event.type)
        if event.type == "response.output_text.delta":
            deltas.append(event.delta)
        elif event.type == "response.completed":
            final = event.response
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed", kinds
    assert final is not None and final.output_text == "".join(deltas) and deltas, (final, deltas)
    print(f"stream: {final.output_text!r} events={len(kinds)} usage={final.usage.output_tokens}")

    tools = [
        {
            "type": "function",
            "name": "get_current_weather",
            "description": "The weather in a city",
            "parameters": {"type": "object", "properties": {"location": {"type": "string"}}},
        }
    ]
    asked = [{"role": "user", "content": "What is the weather in Paris?"}]
    called = client.responses.create(model=model, input=asked, tools=tools, tool_choice="required")
    calls = [o for o in called.output if o.type == "function_call"]
    assert calls and calls[0].name == "get_current_weather", called.output
    call = calls[0]
    answer = client.responses.create(
        model=model,
        input=asked
        + [
            {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
            {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 24 C"},
        ],
        tools=tools,
    )
    assert answer.output_text, answer
    print(f"tool: {call.name}({call.arguments}) then {answer.output_text!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
