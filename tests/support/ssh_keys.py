"""SSH public keys made fresh for a test, as `ssh-keygen` would print them (the .pub line)."""

from __future__ import annotations

import base64
import struct

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

_CURVES: dict[str, ec.EllipticCurve] = {
    "nistp256": ec.SECP256R1(),
    "nistp384": ec.SECP384R1(),
    "nistp521": ec.SECP521R1(),
}


def ssh_line(kind: str = "ed25519", comment: str = "", *, bits: int = 2048) -> str:
    """A new key's OpenSSH line: kind is ed25519, rsa, or a curve name (nistp256, nistp384, nistp521)."""
    public: PublicKeyTypes
    if kind == "ed25519":
        public = ed25519.Ed25519PrivateKey.generate().public_key()
    elif kind == "rsa":
        public = rsa.generate_private_key(public_exponent=65537, key_size=bits).public_key()
    else:
        public = ec.generate_private_key(_CURVES[kind]).public_key()
    line = public.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
    return f"{line} {comment}" if comment else line


def _field(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def sk_line(kind: str = "ed25519", comment: str = "") -> str:
    """A security-key (FIDO) public key line, built from its wire format (RFC 4253 strings, as
    OpenSSH's PROTOCOL.u2f gives them): making one with ssh-keygen needs the hardware."""
    if kind == "ed25519":
        key_type = "sk-ssh-ed25519@openssh.com"
        raw = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        blob = _field(key_type.encode()) + _field(raw) + _field(b"ssh:")
    else:
        key_type = "sk-ecdsa-sha2-nistp256@openssh.com"
        point = (
            ec.generate_private_key(ec.SECP256R1())
            .public_key()
            .public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        )
        blob = _field(key_type.encode()) + _field(b"nistp256") + _field(point) + _field(b"ssh:")
    line = f"{key_type} {base64.b64encode(blob).decode()}"
    return f"{line} {comment}" if comment else line
