"""The base of every JSON request body the management API reads."""

from __future__ import annotations

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
