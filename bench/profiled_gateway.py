"""The platform's ASGI app (or --app, e.g. the bare proxy) under uvicorn (uvloop, httptools, one
worker, as the benchmark serves it) with cProfile on the event loop's thread; the statistics are
written to FILE when the server stops (SIGTERM or SIGINT). bench/gateway_bench.py --profile DIR
starts the gateway and the bare proxy this way.

    .venv/bin/python -m bench.profiled_gateway FILE --port 8000 [--app bench.bare_proxy:app]
    .venv/bin/python -c "import pstats; pstats.Stats('FILE').sort_stats('tottime').print_stats(30)"
"""

from __future__ import annotations

import argparse
import cProfile
import signal

import uvicorn


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("file")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--app", default="gpucloud.asgi:application", help="bench.bare_proxy:app profiles the floor")
    args = parser.parse_args()
    config = uvicorn.Config(
        args.app, port=args.port, loop="uvloop", http="httptools", log_level="warning",
        access_log=False,
    )  # fmt: skip
    # uvicorn stops on SIGTERM, then raises it again under the handler it found: the default one
    # would end the process before the statistics are written.
    signal.signal(signal.SIGTERM, lambda *_: None)
    config.load()  # imports done before profiling starts: the statistics are the requests' own
    profile = cProfile.Profile()
    profile.enable()
    try:
        uvicorn.Server(config).run()
    finally:
        profile.disable()
        profile.dump_stats(args.file)


if __name__ == "__main__":
    main()
