"""The SSH public key format an organization's pods accept: one OpenSSH line, `type base64 [comment]`.

Parsing is strict because a key that sshd would not accept fails only later, inside a pod, where
the person who pasted it cannot see why. The base64 blob is the SSH wire encoding (RFC 4253 §6.6):
its first field repeats the type, which must match the declared one; `cryptography` then checks
the rest of the structure (and the curve of ECDSA keys) and gives RSA keys their size.

Pure: no database. Refusals raise SshKeyInvalid with a message a person can act on.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from dataclasses import dataclass

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_ssh_public_key

MAX_LENGTH = 16 * 1024  # characters; a 16384-bit RSA key is ~2.8 KB, so nothing real comes near
RSA_MIN_BITS = 2048
SUPPORTED_TYPES = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)
# What separates the fields, and what may surround the line, as sshd reads authorized_keys (and
# as the pattern below says): spaces and tabs, plus a line break at either end.
_FIELD_SEPARATOR = re.compile("[ \t]+")
_BLANK = " \t\r\n"
PATTERN = (
    "^[ \\t\\r\\n]*(" + "|".join(t.replace(".", "\\.") for t in SUPPORTED_TYPES) + ")[ \\t]+[A-Za-z0-9+/]+={0,2}"
    "([ \\t][^\\r\\n]*)?[ \\t\\r\\n]*$"
)  # the form of an acceptable line (its base64 must also decode to a key of its type)
_PRIVATE_MARKERS = ("PRIVATE KEY", "PuTTY-User-Key-File-")
_SSH2_MARKER = "---- BEGIN SSH2 PUBLIC KEY ----"
_CONVERT = "ssh-keygen -i -f key.pub"


class SshKeyInvalid(ValueError):
    """The text is no OpenSSH public key we accept; str() says why and what to do instead."""


@dataclass(frozen=True)
class SshPublicKey:
    key_type: str
    blob: bytes  # the decoded wire encoding: what the fingerprint is taken over
    comment: str

    @property
    def line(self) -> str:
        """The normalised form: `type base64 [comment]`, single spaces, no line break."""
        text = f"{self.key_type} {base64.b64encode(self.blob).decode()}"
        return f"{text} {self.comment}" if self.comment else text

    @property
    def fingerprint(self) -> str:
        """As `ssh-keygen -l` prints it: SHA256 of the blob, base64 without padding."""
        digest = base64.b64encode(hashlib.sha256(self.blob).digest()).decode().rstrip("=")
        return f"SHA256:{digest}"


def ssh_public_key_parse(text: str) -> SshPublicKey:
    """The key in `text` (surrounding whitespace ignored), or SshKeyInvalid."""
    _refuse_what_is_not_one_line(text)
    fields = _FIELD_SEPARATOR.split(text.strip(_BLANK), maxsplit=2)
    if len(fields) < 2:
        raise SshKeyInvalid(
            "That is not an OpenSSH public key: expected one line `type base64 [comment]`, as in ~/.ssh/id_ed25519.pub."
        )
    key_type, encoded = fields[0], fields[1]
    comment = _FIELD_SEPARATOR.sub(" ", fields[2]) if len(fields) > 2 else ""
    if key_type not in SUPPORTED_TYPES:
        raise SshKeyInvalid(f"Unsupported key type {key_type[:60]!r}; use one of {', '.join(SUPPORTED_TYPES)}.")
    blob = _decode(encoded)
    embedded = _embedded_type(blob)
    if embedded != key_type:
        raise SshKeyInvalid(f"The key says it is {key_type} but its data is a {embedded[:60]!r} key.")
    _check_structure(key_type, encoded)
    return SshPublicKey(key_type=key_type, blob=blob, comment=comment)


def _refuse_what_is_not_one_line(text: str) -> None:
    if len(text) > MAX_LENGTH:
        raise SshKeyInvalid(f"That is {len(text)} characters; a public key is one line of at most {MAX_LENGTH}.")
    if "\x00" in text:
        raise SshKeyInvalid("The key contains a NUL character; paste the text of the .pub file.")
    if not text.strip(_BLANK):
        raise SshKeyInvalid("Paste a public key: the one line in a .pub file such as ~/.ssh/id_ed25519.pub.")
    if any(marker in text for marker in _PRIVATE_MARKERS):
        raise SshKeyInvalid(
            "That is a private key; paste the .pub file (e.g. ~/.ssh/id_ed25519.pub) instead, "
            "and keep the private key to yourself."
        )
    if _SSH2_MARKER in text:
        raise SshKeyInvalid(
            f"That is an SSH2 (PuTTY) public key block; convert it to OpenSSH format with `{_CONVERT}` "
            "and paste the one line it prints."
        )
    if "\n" in text.strip(_BLANK) or "\r" in text.strip(_BLANK):
        raise SshKeyInvalid("Paste one key on a single line: `type base64 [comment]`.")


def _decode(encoded: str) -> bytes:
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise SshKeyInvalid("The key's base64 part does not decode; check that it was copied in full.") from None


def _embedded_type(blob: bytes) -> str:
    """The first field of the wire encoding: a uint32 length, then the type name."""
    if len(blob) < 4:
        raise SshKeyInvalid("The key's data is truncated; check that it was copied in full.")
    (length,) = struct.unpack(">I", blob[:4])
    name = blob[4 : 4 + length]
    if length > len(blob) - 4 or not name.isascii():
        raise SshKeyInvalid("The key's data is corrupt or truncated; check that it was copied in full.")
    return name.decode()


def _check_structure(key_type: str, encoded: str) -> None:
    try:
        key = load_ssh_public_key(f"{key_type} {encoded}".encode())
    except (ValueError, UnsupportedAlgorithm):
        raise SshKeyInvalid("The key's data is corrupt or truncated; check that it was copied in full.") from None
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < RSA_MIN_BITS:
        raise SshKeyInvalid(
            f"This RSA key has {key.key_size} bits; RSA keys need at least {RSA_MIN_BITS}. "
            "Make a new key with `ssh-keygen -t ed25519`."
        )
