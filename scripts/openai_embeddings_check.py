"""Drives a running AIGate's embeddings API with the official OpenAI Python SDK.

Usage: python3 scripts/openai_embeddings_check.py BASE_URL MODEL API_KEY

Two calls, as an application makes them: the SDK's default (it asks for base64 and decodes it
itself) and `encoding_format="float"`, each with two texts and `dimensions=64`. Prints one JSON
line per call (`{"encoding", "model", "vectors", "prompt_tokens"}`) for the test to compare
with the mock's vectors; exits non-zero, with the reason, on any failure. The gateway's
integration tests run it (tests/it/embeddings.rs).
"""

import json
import sys

import openai


def main() -> int:
    base_url, model, api_key = sys.argv[1].rstrip("/"), sys.argv[2], sys.argv[3]
    client = openai.OpenAI(base_url=base_url + "/v1", api_key=api_key, max_retries=0, timeout=30)
    texts = ["The quick brown fox", "jumps over the lazy dog"]
    for encoding in (None, "float"):
        kwargs = {} if encoding is None else {"encoding_format": encoding}
        result = client.embeddings.create(model=model, input=texts, dimensions=64, **kwargs)
        assert result.object == "list", result
        assert [d.index for d in result.data] == [0, 1], result.data
        vectors = [d.embedding for d in result.data]
        assert all(len(v) == 64 and all(isinstance(x, float) for x in v) for v in vectors), vectors
        assert result.usage.prompt_tokens > 0 and result.usage.total_tokens == result.usage.prompt_tokens
        print(json.dumps({
            "encoding": encoding or "default",
            "model": result.model,
            "vectors": vectors,
            "prompt_tokens": result.usage.prompt_tokens,
        }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
