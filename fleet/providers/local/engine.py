"""One local inference instance: the llama.cpp OpenAI-compatible server from the xllamacpp
wheel, serving one GGUF on a loopback port, refusing requests without the instance's key.

Run by the local driver as
  python -m fleet.providers.local.engine --instance-id ID --tag TAG --port N --model-path FILE
with the key in GPUCLOUD_ENGINE_API_KEY (not on the command line, which other users can read).
The tag and instance id stay on the command line on purpose: they are how the driver finds its
processes again after the platform restarts. Deliberately free of Django: it starts in ~1 s.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time

import xllamacpp  # type: ignore[import-untyped]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--instance-id", required=True)
    parser.add_argument("--tag", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model-path", required=True)
    parser.add_argument("--alias", default="")
    parser.add_argument("--ctx-size", type=int, default=2048)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--embedding", action="store_true", help="serve /v1/embeddings with mean pooling")
    parser.add_argument("--api-prefix", default="", help="serve under this path (a pod behind the platform's proxy)")
    args = parser.parse_args(argv)
    api_key = os.environ.get("GPUCLOUD_ENGINE_API_KEY", "")
    if not api_key:
        print("GPUCLOUD_ENGINE_API_KEY is required", file=sys.stderr)
        return 2

    params = xllamacpp.CommonParams()
    params.model.path = args.model_path
    params.port = args.port
    if args.api_prefix:
        params.api_prefix = args.api_prefix.rstrip("/")
    params.api_keys = [api_key]
    params.n_ctx = args.ctx_size
    params.n_parallel = args.parallel
    params.endpoint_metrics = True  # /metrics: the autoscaler reads requests_deferred (the queue) there
    if args.alias:
        params.model_alias = {args.alias}
    if args.threads:
        params.cpuparams.n_threads = args.threads
    if args.embedding:
        params.embedding = True
        params.pooling_type = xllamacpp.llama_pooling_type.LLAMA_POOLING_TYPE_MEAN

    # While the model loads, a stop ends the process at once (the default action): a Python handler
    # would run only once llama.cpp has finished loading, which holds the GIL.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_DFL)
    started = time.monotonic()
    # Loads the model and listens on 127.0.0.1:port in threads of its own; referenced until the exit.
    _server = xllamacpp.Server(params)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    print(f"gpucloud engine {args.instance_id}: serving on 127.0.0.1:{args.port} "
          f"after {time.monotonic() - started:.1f} s", flush=True)  # fmt: skip
    stop.wait()
    print(f"gpucloud engine {args.instance_id}: stopping", flush=True)
    # Leave without closing the server: llama.cpp's ~Server waits for its main loop to exit, and after
    # a stop that came while the model loaded (before that loop began) it waits forever, holding the
    # GIL. Nothing needs the close: the kernel releases the port, the memory and the model's mapping.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
