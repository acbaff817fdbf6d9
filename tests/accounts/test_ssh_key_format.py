"""The SSH public key parser (accounts/ssh_keys.py): what it accepts, how it normalises, and the
reason it gives for everything else."""

from __future__ import annotations

import base64
import re

import pytest

from accounts.ssh_keys import MAX_LENGTH, PATTERN, SshKeyInvalid, ssh_public_key_parse
from tests.support.ssh_keys import sk_line, ssh_line

# Made with `ssh-keygen -t ed25519 -C me@host`; `ssh-keygen -lf` printed the fingerprint.
ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDaBCEfkQtI0nTKu0EPpyfy4DddK9aL4x+/W4aTR77uw me@host"
ED25519_FINGERPRINT = "SHA256:hcGLcC7TxouL1/dHqtPy19N/uvDHsOWkm9Rt3omkNkE"


def test_fingerprint_is_what_ssh_keygen_prints_and_the_line_is_normalised() -> None:
    spaced = ED25519.replace(" me@host", "   me \t at  host")
    key = ssh_public_key_parse(f"  {spaced}\r\n")
    assert key.fingerprint == ED25519_FINGERPRINT
    assert key.key_type == "ssh-ed25519"
    assert key.comment == "me at host"
    assert key.line == ED25519.replace("me@host", "me at host")
    assert ssh_public_key_parse(ED25519.rsplit(" ", 1)[0]).line == ED25519.rsplit(" ", 1)[0]


@pytest.mark.parametrize(
    ("line", "key_type"),
    [
        (ssh_line("ed25519"), "ssh-ed25519"),
        (ssh_line("nistp256"), "ecdsa-sha2-nistp256"),
        (ssh_line("nistp384"), "ecdsa-sha2-nistp384"),
        (ssh_line("nistp521"), "ecdsa-sha2-nistp521"),
        (ssh_line("rsa", bits=2048), "ssh-rsa"),
        (sk_line("ed25519"), "sk-ssh-ed25519@openssh.com"),
        (sk_line("ecdsa"), "sk-ecdsa-sha2-nistp256@openssh.com"),
    ],
    ids=lambda value: None if value.count(" ") == 0 else "fresh key",  # the same ids in every xdist worker
)
def test_every_supported_type_is_accepted(line: str, key_type: str) -> None:
    key = ssh_public_key_parse(line)
    assert key.key_type == key_type
    assert key.line == line
    assert key.fingerprint.startswith("SHA256:") and not key.fingerprint.endswith("=")
    assert len(key.fingerprint) == len("SHA256:") + 43
    assert re.search(PATTERN, f" {line}\t comment with  spaces\r\n")  # the description's pattern admits it


@pytest.mark.parametrize("separator", ["\u2003", "\x0b", "\x1c", "\xa0"])
def test_only_spaces_and_tabs_separate_fields_as_the_described_pattern_says(separator: str) -> None:
    line = ED25519.replace(" ", separator, 1)
    assert not re.search(PATTERN, line)
    with pytest.raises(SshKeyInvalid):
        ssh_public_key_parse(line)
    with pytest.raises(SshKeyInvalid):
        ssh_public_key_parse(separator + ED25519)


def _retyped(line: str, key_type: str) -> str:
    return f"{key_type} {line.split()[1]}"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "Paste a public key"),
        ("ssh-ed25519", "expected one line `type base64 [comment]`"),
        (
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----",
            "that is a private key; paste the .pub file",
        ),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----", "that is a private key"),
        ("PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none", "that is a private key"),
        (f"---- BEGIN SSH2 PUBLIC KEY ----\n{ED25519.split()[1]}\n---- END SSH2 PUBLIC KEY ----", "ssh-keygen -i -f"),
        (f"{ED25519}\n{ED25519}", "single line"),
        (ED25519 + "\x00", "NUL"),
        ("ssh-ed25519 " + "A" * MAX_LENGTH, f"at most {MAX_LENGTH}"),
        ("ssh-dss AAAAB3NzaC1kc3MAAACBAP", "Unsupported key type 'ssh-dss'"),
        ("ssh-ed25519-cert-v01@openssh.com AAAA", "Unsupported key type"),
        ("ssh-ed25519 not*base64", "base64 part does not decode"),
        (_retyped(ED25519, "ssh-rsa"), "says it is ssh-rsa but its data is a 'ssh-ed25519' key"),
        (_retyped(ssh_line("nistp384"), "ecdsa-sha2-nistp256"), "says it is ecdsa-sha2-nistp256"),
        ("ssh-ed25519 " + ED25519.split()[1][:-8], "corrupt or truncated"),
        ("ssh-ed25519 " + base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519").decode(), "corrupt or truncated"),
        ("ssh-ed25519 AAAA", "truncated"),
        (ssh_line("rsa", bits=1024), "This RSA key has 1024 bits; RSA keys need at least 2048"),
    ],
    ids=lambda value: "text" if value.startswith(("ssh-", "ecdsa-")) else None,  # fresh keys: stable ids for xdist
)
def test_what_is_not_a_supported_public_key_is_refused_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(SshKeyInvalid) as refused:
        ssh_public_key_parse(text)
    assert reason.lower() in str(refused.value).lower()
