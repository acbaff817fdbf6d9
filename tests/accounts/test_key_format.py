from __future__ import annotations

from accounts import keys
from accounts.models import ApiKeyKind


def test_account_key_has_prefix_length_and_valid_checksum() -> None:
    new = keys.key_generate(ApiKeyKind.ACCOUNT)
    assert new.plaintext.startswith("gpc_live_")
    assert len(new.plaintext) == len("gpc_live_") + 40 + 6
    assert keys.key_kind(new.plaintext) == ApiKeyKind.ACCOUNT
    assert new.last_four == new.plaintext[-4:]
    assert new.key_hash == keys.key_hash(new.plaintext) and len(new.key_hash) == 64


def test_deployment_key_prefix() -> None:
    new = keys.key_generate(ApiKeyKind.DEPLOYMENT)
    assert new.plaintext.startswith("gpc_dep_")
    assert keys.key_kind(new.plaintext) == ApiKeyKind.DEPLOYMENT


def test_checksum_rejects_any_single_character_change() -> None:
    plaintext = keys.key_generate(ApiKeyKind.ACCOUNT).plaintext
    for position in range(len("gpc_live_"), len(plaintext)):
        original = plaintext[position]
        replacement = "a" if original != "a" else "b"
        mutated = plaintext[:position] + replacement + plaintext[position + 1 :]
        assert keys.key_kind(mutated) is None, f"change at {position} not detected"


def test_rejects_foreign_and_truncated_keys() -> None:
    plaintext = keys.key_generate(ApiKeyKind.ACCOUNT).plaintext
    assert keys.key_kind(plaintext[:-1]) is None
    assert keys.key_kind("sk_live_" + plaintext[len("gpc_live_") :]) is None
    assert keys.key_kind("") is None
    assert keys.key_kind(plaintext + "x") is None


def test_keys_are_unique() -> None:
    assert len({keys.key_generate(ApiKeyKind.ACCOUNT).plaintext for _ in range(200)}) == 200
