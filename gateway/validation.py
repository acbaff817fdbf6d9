"""Requests checked against OpenAI's request schemas before anything is held, woken or forwarded:
a refusal is a 400 in OpenAI's shape whose `param` names the field (`messages[0].role`).

The schemas are OpenAI's own (gateway/openai_requests.json, extracted from
reference/openai-openapi.json by tests/support/extract_openai_schemas.py, with `model` left to the
gateway: the per-deployment routes name the deployment in the path). They are compiled once by
jsonschema-rs (Rust): a valid request costs about a microsecond; only a refused one is explained.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema_rs

from gateway import errors

_SCHEMAS = {
    "/v1/chat/completions": "CreateChatCompletionRequest",
    "/v1/completions": "CreateCompletionRequest",
    "/v1/embeddings": "CreateEmbeddingRequest",
}
# A oneOf branch refused at one of these keys is not the branch the client meant (a message of
# another role, a content part of another type).
_DISCRIMINATORS = ("role", "type")


def _validators() -> dict[str, Any]:
    defs = json.loads(Path(__file__).with_name("openai_requests.json").read_text())["$defs"]
    return {
        path: jsonschema_rs.validator_for({"$ref": f"#/$defs/{name}", "$defs": defs}) for path, name in _SCHEMAS.items()
    }


_VALIDATORS = _validators()


def check_request(path: str, payload: dict[str, Any]) -> None:
    """400 naming the first field OpenAI's schema refuses; nothing for a valid request."""
    validator = _VALIDATORS.get(path)
    try:
        if validator is None or validator.is_valid(payload):
            return
        first = next(iter(validator.iter_errors(payload)))
    except ValueError as exc:  # jsonschema-rs stops at its own depth, well before Python's parser
        if "Recursion limit" not in str(exc):
            raise
        raise errors.bad_request("The request body is nested too deeply.") from None
    param, message = _explain(first)
    raise errors.bad_request(f"Invalid '{param}': {message}." if param else f"Invalid request: {message}.", param)


def _explain(error: Any) -> tuple[str | None, str]:
    """The field and words for an error; a oneOf/anyOf is explained by the branch the client meant."""
    branches = [b for b in (getattr(error.kind, "context", None) or []) if b]
    if not branches:
        return _field(error), error.message
    # A branch of another JSON type (a string where an array of parts was sent) is not the one meant.
    typed = [b for b in branches if not any(_wrong_type_here(e, error) for e in b)] or branches
    meant = [b for b in typed if not any(_refused_discriminator(e) for e in b)]
    if not meant:  # no branch has this role/type: say which there are
        first = next(e for b in typed for e in b if _refused_discriminator(e))
        allowed = list(dict.fromkeys(v for b in typed for e in b if _refused_discriminator(e) for v in _values(e)))
        if allowed:
            shown = json.dumps(first.instance)
            return _param(first.instance_path), f"{shown} is not one of {', '.join(map(str, allowed))}"
        return _param(first.instance_path), first.message
    # Past OpenAI 3.0's `nullable` (a branch that only says "not null"), to what was really wrong.
    real = [b for b in meant if not all(_only_not_null(e) for e in b)] or meant
    return _explain(min(real, key=len)[0])


def _field(error: Any) -> str | None:
    """The field the error is about: for a missing or unexpected property, that property."""
    kind = error.kind
    path = list(error.instance_path)
    if hasattr(kind, "property"):  # Required
        path.append(kind.property)
    elif getattr(kind, "unexpected", None):  # AdditionalProperties
        path.append(kind.unexpected[0])
    return _param(path)


def _wrong_type_here(error: Any, parent: Any) -> bool:
    return type(error.kind).__name__ == "Type" and list(error.instance_path) == list(parent.instance_path)


def _refused_discriminator(error: Any) -> bool:
    path = list(error.instance_path)
    return bool(path) and path[-1] in _DISCRIMINATORS and type(error.kind).__name__ in ("Enum", "Constant", "Type")


def _values(error: Any) -> list[Any]:
    kind = error.kind
    if hasattr(kind, "options"):
        return list(kind.options)
    if hasattr(kind, "expected_value"):
        return [kind.expected_value]
    return []


def _only_not_null(error: Any) -> bool:
    return type(error.kind).__name__ == "Type" and error.message.endswith('is not of type "null"')


def _param(path: Any) -> str | None:
    """['messages', 0, 'role'] -> 'messages[0].role' (OpenAI's way of naming a field)."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text or None
