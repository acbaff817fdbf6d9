"""JSON on the gateway's hot path: orjson where it can, the json module's exact behaviour where
it cannot.

orjson reads only UTF-8 and refuses what the json module admits (NaN, infinities, nesting past
1024, lone surrogate escapes, UTF-16 and UTF-32 texts); those fall back to the json module, so what
is accepted, refused and how a refusal reads stay as they were. It also reads an integer beyond 64
bits as a float, silently: a text with 19 digits in a row (anywhere, strings included) is read
the json module's way too. Writing is compact and UTF-8, as
`json.dumps(separators=(",", ":"), ensure_ascii=False)` writes it.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

_LONG_NUMBER = re.compile(rb"[0-9]{19}")


def loads(data: bytes | bytearray) -> Any:
    if _LONG_NUMBER.search(data) is None:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data)


def dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:  # what orjson cannot write (integers beyond 64 bits): the json module's way
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
