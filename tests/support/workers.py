"""Loaded first (`-p tests.support.workers` in pytest's options), before Django reads its settings:
under pytest-xdist each worker gets a Redis database of its own, as pytest-django gives it a test
database of its own. The tests clear the cache, the channel layer and the gateway's counters between
tests; on one shared Redis database, one worker's clearing would pull state from under another's test.
The workers' databases follow the configured one (/0: 1, 2, ...; /5: 6, 7, ...), so that two runs
given different databases (two checkouts on one machine) do not clear each other's either."""

from __future__ import annotations

import os
import re

_worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # gw0, gw1, ...: set by xdist in each worker
_url = os.environ.get("REDIS_URL", "")
if _worker.startswith("gw") and _url:
    _configured = re.search(r"/(\d+)$", _url.rstrip("/"))
    # The controller's (and a plain run's) database stays as configured.
    database = (int(_configured.group(1)) if _configured else 0) + 1 + int(_worker[2:])
    os.environ["REDIS_URL"] = re.sub(r"(/\d+)?$", f"/{database}", _url.rstrip("/"), count=1)
