"""The base of every JSON request body the management API reads."""

from __future__ import annotations

from ninja import Schema
from pydantic import ConfigDict


class BodyIn(Schema):
    """A request body, validated strictly: a JSON body's values keep their JSON types, so `0` is not
    `false`, `"5"` is not `5` and `2.5` is not an integer. What the OpenAPI description calls
    invalid is refused (422), never quietly converted (nested bodies too: they derive from it)."""

    model_config = ConfigDict(strict=True)
