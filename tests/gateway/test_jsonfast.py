"""gateway/jsonfast: orjson's speed on the hot path without changing what is accepted, refused or
written: everything orjson refuses is read the json module's way."""

from __future__ import annotations

import json
import math

import pytest

from gateway import jsonfast

ENGINE_ANSWER = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1733500000,
    "choices": [{"index": 0, "message": {"role": "assistant", "content": 'Grüße, 你好 🙂 "quoted"\n'}}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 8, "total_tokens": 13},
    "floats": [0.1, 1.5, 1e20, -0.0, 123456789.125],
    "flags": [True, False, None],
}


def json_module_dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def test_an_ordinary_answer_reads_and_writes_as_the_json_module_would() -> None:
    text = json_module_dumps(ENGINE_ANSWER)
    assert jsonfast.loads(text) == json.loads(text) == ENGINE_ANSWER
    assert jsonfast.loads(bytearray(text)) == ENGINE_ANSWER
    assert jsonfast.dumps(ENGINE_ANSWER) == json_module_dumps(ENGINE_ANSWER)


@pytest.mark.parametrize(
    "text",
    [
        b'{"a": "\\ud800"}',  # a lone surrogate escape: the gateway refuses it later, itself
        b'{"n": 100000000000000000000000000000}',  # beyond 64 bits (orjson: a float)
        b'{"n": -9223372036854775809, "m": 18446744073709551616}',  # just beyond, both ways
        b'{"x": 1e400}',  # infinity as a double
        '{"model": "m"}'.encode("utf-16"),  # JSON in UTF-16, which json.loads detects
        b"[" * 900 + b"]" * 900,  # within the json module's depth
    ],
)
def test_what_orjson_refuses_or_misreads_is_read_the_json_modules_way(text: bytes) -> None:
    assert repr(jsonfast.loads(text)) == repr(json.loads(text))


def test_deeper_than_either_goes_is_the_json_modules_recursion_error() -> None:
    with pytest.raises(RecursionError):  # the gateway answers it as "nested too deeply" (400)
        jsonfast.loads(b"[" * 1500 + b"]" * 1500)


@pytest.mark.parametrize(
    ("text", "long"),
    [(b'{"n": 1234567890123456789}', True), (b'{"n": 123456789012345678}', False), (b'"x1234567890123456789"', True),
     (b'{"a": 12345678901, "b": 12345678901}', False)],
)  # fmt: skip
def test_nineteen_digits_in_a_row_are_found(text: bytes, long: bool) -> None:
    assert jsonfast._has_long_number(text) is long
    assert jsonfast._has_long_number(bytearray(text)) is long


def test_nan_is_read_as_the_json_module_reads_it() -> None:
    assert math.isnan(jsonfast.loads(b"[NaN]")[0])


@pytest.mark.parametrize("text", [b"", b"{", b'{"a": }', b"\xff\xfe\xfa"])
def test_what_neither_reads_is_a_value_error(text: bytes) -> None:
    with pytest.raises(ValueError):
        jsonfast.loads(text)


def test_what_orjson_cannot_write_is_written_the_json_modules_way() -> None:
    value = {"n": 10**30, "s": "é"}
    assert jsonfast.dumps(value) == json_module_dumps(value)
