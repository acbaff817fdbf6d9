"""Regenerate tests/support/openai_schemas.json (the response schemas the gateway's answers must
satisfy) and gateway/openai_requests.json (the request schemas the gateway checks requests against
before anything is held, woken or forwarded) from OpenAI's published OpenAPI description.

    python tests/support/extract_openai_schemas.py path/to/openai-openapi.json

Keeps the named schemas (and what they reference), without the
prose (descriptions, examples), and rewrites OpenAPI 3.0's `nullable: true` as JSON Schema's
`"type": [..., "null"]` (and null in an `enum`), so `jsonschema` validates with the same meaning. The source is
openai/openai-openapi (MIT licence).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOTS = [
    "CreateChatCompletionResponse",
    "CreateChatCompletionStreamResponse",
    "CreateCompletionResponse",
    "CreateEmbeddingResponse",
    "ListModelsResponse",
    "Model",
    "ErrorResponse",
]
REQUEST_ROOTS = ["CreateChatCompletionRequest", "CreateCompletionRequest", "CreateEmbeddingRequest"]
PROSE = {"description", "example", "examples", "title", "x-oaiMeta", "x-stainless-const", "deprecated"}


def _clean(node: Any) -> Any:
    if isinstance(node, list):
        return [_clean(v) for v in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {
        k: {name: _clean(schema) for name, schema in v.items()} if k == "properties" else _clean(v)
        for k, v in node.items()
        if k not in PROSE
    }
    if "$ref" in out:
        out["$ref"] = str(out["$ref"]).replace("#/components/schemas/", "#/$defs/")
    if out.pop("nullable", False):
        if "enum" in out and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]  # 3.0's nullable admits null past an enum too
        if "type" in out:
            out["type"] = [out["type"], "null"] if isinstance(out["type"], str) else [*out["type"], "null"]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


def extract(spec: dict[str, Any], roots: list[str] = ROOTS) -> dict[str, Any]:
    schemas = spec["components"]["schemas"]
    wanted: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            name = ref.rsplit("/", 1)[-1]
            if ref and name not in wanted:
                wanted.add(name)
                walk(schemas[name])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for root in roots:
        wanted.add(root)
        walk(schemas[root])
    return {"$comment": "From openai/openai-openapi (MIT); see extract_openai_schemas.py",
            "$defs": {name: _clean(schemas[name]) for name in sorted(wanted)}}  # fmt: skip


def extract_requests(spec: dict[str, Any]) -> dict[str, Any]:
    """The request schemas, with `model` no longer required: the per-deployment routes name the
    deployment in the path, and the gateway asks for `model` itself everywhere else."""
    extracted = extract(spec, REQUEST_ROOTS)
    for name in REQUEST_ROOTS:
        for part in [extracted["$defs"][name], *extracted["$defs"][name].get("allOf", [])]:
            if "model" in part.get("required", []):
                part["required"] = [field for field in part["required"] if field != "model"]
    return extracted


if __name__ == "__main__":
    source = json.loads(Path(sys.argv[1]).read_text())
    here = Path(__file__).resolve()
    targets = {
        here.with_name("openai_schemas.json"): extract(source),
        here.parents[2] / "gateway" / "openai_requests.json": extract_requests(source),
    }
    for target, document in targets.items():
        target.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
        print(f"wrote {target}")
