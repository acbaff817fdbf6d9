"""schemathesis hooks for bench/api_conformance.py (loaded through SCHEMATHESIS_HOOKS).

The run authenticates with one account key; revoking or regenerating that key, which the
fuzzer and the stateful phase do as soon as they find its id in GET /api-keys, would turn every
later request into a 401 and measure nothing. Those two calls are sent with an id that names no key
instead (a documented 404); every other key the run creates may be revoked as usual.
"""

from __future__ import annotations

import os
from typing import Any

import schemathesis

OWN_KEY_ID = os.environ.get("GPUCLOUD_CONFORMANCE_KEY_ID", "")


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    if OWN_KEY_ID and (case.path_parameters or {}).get("key_id") == OWN_KEY_ID:
        case.path_parameters["key_id"] = "key_notthisrunskey"
