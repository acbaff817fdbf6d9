"""Calling a gpucloud model that may be scaled to zero, with the official OpenAI SDK unchanged.

A cold deployment answers 202 (Accepted) with Retry-After while it wakes; the SDK treats any 2xx
as success and does not retry it, so either ask the gateway to hold the request until a replica is
ready (X-Wait-For-Ready, up to 600 s), or retry on 202 yourself as below.
"""

from __future__ import annotations

import time
from typing import Any

from openai import OpenAI


def create_when_ready(client: OpenAI, *, max_wait: float = 600, **request: Any) -> Any:
    """`client.chat.completions.create(**request)` that rides out a cold start."""
    deadline = time.monotonic() + max_wait
    while True:
        raw = client.chat.completions.with_raw_response.create(**request)
        if raw.status_code != 202:
            return raw.parse()
        delay = float(raw.headers.get("retry-after", "5"))
        if time.monotonic() + delay > deadline:
            raise TimeoutError(f"not ready within {max_wait} s: {raw.http_response.json()['message']}")
        time.sleep(delay)


if __name__ == "__main__":
    import os

    client = OpenAI(
        base_url=os.environ.get("GPUCLOUD_URL", "http://127.0.0.1:8000/v1"), api_key=os.environ["GPUCLOUD_KEY"]
    )
    reply = create_when_ready(client, model="smollm2-135m-instruct", messages=[{"role": "user", "content": "Hi"}])
    print(reply.choices[0].message.content)
    # or let the gateway hold the request until the model is ready:
    reply = client.chat.completions.create(
        model="smollm2-135m-instruct",
        messages=[{"role": "user", "content": "Hi"}],
        extra_headers={"X-Wait-For-Ready": "600"},
    )
    print(reply.choices[0].message.content)
