"""The base of every JSON request body the management API reads."""

from __future__ import annotations

import re
import types
import typing
from typing import Any

from ninja import Schema
from pydantic import model_validator


class BodyIn(Schema):
    """A request body whose values keep their JSON types, as its OpenAPI description says: `0` is
    not `false`, `"5"` is not `5` (422). Pydantic's lax mode would convert both; its strict mode
    would also refuse `5.0` for an integer, which JSON Schema (and so the description) admits."""

    @model_validator(mode="before")
    @classmethod
    def _json_types_only(cls, data: Any) -> Any:
        body = getattr(data, "_obj", data)  # ninja hands validators its DjangoGetter around the parsed JSON
        if not isinstance(body, dict):
            # Read by attribute, a list or a number would leave every optional field unset: a PATCH
            # of `[null, null]` would answer 200 and change nothing. The description says "object".
            raise ValueError("The request body must be a JSON object.")
        declared = {field.alias or name for name, field in cls.model_fields.items()}
        flaw = _text_flaw_in({key: value for key, value in body.items() if key in declared})  # others are ignored
        if flaw is not None:  # PostgreSQL's text cannot hold it: refused here, not by the query (a 500)
            raise ValueError(flaw)
        for name, field in cls.model_fields.items():
            key = field.alias or name
            kinds = _plain_types(field.annotation)
            value = body.get(key)
            if value is None or not kinds:
                continue
            wrong_bool = bool in kinds and not isinstance(value, bool)
            wrong_number = bool not in kinds and isinstance(value, str | bool)
            if wrong_bool or wrong_number:
                # Handed on as a value no type admits, so that pydantic refuses it with its own
                # message ("Input should be a valid integer") at the field's location (the error's param).
                body[key] = _NOT_A_JSON_VALUE
        return data


_NOT_A_JSON_VALUE = object()


def _plain_types(annotation: Any) -> set[type]:
    """bool, int and float in `annotation` (through `X | None`); empty for anything else."""
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    options = typing.get_args(annotation) if union else (annotation,)
    return {option for option in options if option in (bool, int, float)}


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # what json.loads leaves of an unpaired \\udXXX escape


def _text_flaw_in(body: Any) -> str | None:
    """Why a key or string of a parsed JSON value is no text the database can store (a NUL
    character, or a lone UTF-16 surrogate: no Unicode character, so no UTF-8), and where; or None.
    Walked with a stack of its own: a body nested as deep as the parser allows does not recurse."""
    stack: list[tuple[str, Any]] = [("", body)]
    while stack:
        where, value = stack.pop()
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        texts = [(where or "body", value)] if isinstance(value, str) else []
        for key, item in items:
            path = f"{where}.{key}" if where else str(key)
            texts.append((path, str(key)))
            stack.append((path, item))
        for place, text in texts:
            if "\x00" in text:
                return f"{_printable(place)}: text may not contain NUL characters."
            if _LONE_SURROGATE.search(text):
                return f"{_printable(place)}: text may not contain a lone UTF-16 surrogate (\\ud800-\\udfff)."
    return None


def _printable(place: str) -> str:
    return _LONE_SURROGATE.sub("", place.replace("\x00", ""))
