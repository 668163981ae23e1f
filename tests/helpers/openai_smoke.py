"""The gateway as a Python app sees it, through the official `openai` client (scripts/setup.sh --clients pins it):
a plain answer, a streamed one with usage, and a refused parameter as the client's typed error. Prints one JSON
object with what it got; tests/api/openai.test.ts judges it.

    python openai_smoke.py BASE_URL API_KEY MODEL
"""

import json
import sys

import openai


def main(base_url: str, key: str, model: str) -> None:
    client = openai.OpenAI(base_url=base_url, api_key=key, max_retries=0)
    messages = [{"role": "user", "content": "What should I do for squats?"}]
    plain = client.chat.completions.create(model=model, messages=messages, max_tokens=8, user="py-1")
    chunks = list(
        client.chat.completions.create(
            model=model, messages=messages, max_tokens=8, user="py-2", stream=True,
            stream_options={"include_usage": True},
        )
    )
    try:
        client.chat.completions.create(model=model, messages=messages, n=3)
        refused = None
    except openai.BadRequestError as err:
        refused = {"status": err.status_code, "param": err.param, "type": type(err).__name__}
    print(json.dumps({
        "version": openai.__version__,
        "plain": {"id": plain.id, "fingerprint": plain.system_fingerprint, "content": plain.choices[0].message.content,
                  "finish": plain.choices[0].finish_reason, "usage": plain.usage.model_dump()},
        "stream": {"id": chunks[0].id, "content": "".join(c.choices[0].delta.content or "" for c in chunks if c.choices),
                   "usage": chunks[-1].usage.model_dump() if chunks[-1].usage else None},
        "refused": refused,
    }))


if __name__ == "__main__":
    main(*sys.argv[1:4])
