"""Calling a gpucloud deployment that may be scaled to zero, with the official OpenAI SDK.

A request to a cold deployment wakes it and is held until a replica is ready when the wake is
expected within the deployment's `cold_start_wait_seconds` (default 60 s; engines on the platform's
own machine wake in seconds): the unchanged SDK gets its answer. A longer wake (a cloud GPU takes
minutes), or a request sent with `Prefer: respond-async`, answers 202 (Accepted) with Retry-After
instead; the SDK treats any 2xx as success and does not retry it, so either ask the gateway to
hold the request longer (X-Wait-For-Ready, up to 600 s), or retry on 202 yourself as below.
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
    deployment = os.environ["GPUCLOUD_DEPLOYMENT"]  # its id (dep_...): always names that deployment
    reply = create_when_ready(client, model=deployment, messages=[{"role": "user", "content": "Hi"}])
    print(reply.choices[0].message.content)
    # or let the gateway hold the request until the model is ready, however long the wake:
    reply = client.chat.completions.create(
        model=deployment,
        messages=[{"role": "user", "content": "Hi"}],
        extra_headers={"X-Wait-For-Ready": "600"},
    )
    print(reply.choices[0].message.content)
