"""Validation against OpenAI's published response schemas (openai_schemas.json, extracted from
reference/openai-openapi.json by extract_openai_schemas.py)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator  # type: ignore[import-untyped]


@cache
def _defs() -> dict[str, Any]:
    return dict(json.loads(Path(__file__).with_name("openai_schemas.json").read_text())["$defs"])


def problems(schema: str, document: Any) -> list[str]:
    validator = Draft202012Validator({"$ref": f"#/$defs/{schema}", "$defs": _defs()})
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def assert_valid(schema: str, document: Any) -> None:
    found = problems(schema, document)
    assert not found, f"{schema}: {found} in {document}"


def sse_documents(text: str) -> list[dict[str, Any]]:
    """The JSON payloads of an SSE body (without the final [DONE])."""
    events = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
    assert events and events[-1] == "[DONE]", "a stream ends with data: [DONE]"
    return [json.loads(e) for e in events[:-1]]
