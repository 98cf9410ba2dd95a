"""Checkpoint keys: an HMAC-SHA256 secret file, or an Ed25519 key in PEM.

HMAC needs nothing beyond the standard library but the verifier holds the
same secret as the writer.  Ed25519 (through ``cryptography``, when it is
installed) lets the verifier hold only the public key, so whoever verifies
the log cannot forge it; the private key stays with dockgate.
"""

from __future__ import annotations

import hashlib
from typing import Any

from dockgate.audit.chain import HmacKey

__all__ = ["Ed25519Key", "HmacKey", "load_key"]


class Ed25519Key:
    """An Ed25519 key: signs when it is private, verifies either way."""

    alg = "ed25519"

    def __init__(self, private: Any | None, public: Any) -> None:
        from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

        self._private = private
        self._public = public
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.key_id = hashlib.sha256(raw).hexdigest()[:16]

    def sign(self, message: bytes) -> str:
        """Hex signature; only a private key can sign."""
        if self._private is None:
            raise ValueError("an Ed25519 public key cannot sign checkpoints")
        return str(self._private.sign(message).hex())

    def verify(self, message: bytes, signature: str) -> bool:
        """Whether ``signature`` (hex) is valid for ``message``."""
        from cryptography.exceptions import InvalidSignature  # noqa: PLC0415

        try:
            self._public.verify(bytes.fromhex(signature), message)
        except (InvalidSignature, ValueError):
            return False
        return True


def _ed25519(data: bytes, path: str) -> Ed25519Key:
    try:
        from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
        from cryptography.hazmat.primitives.asymmetric import ed25519  # noqa: PLC0415
    except ImportError:
        raise ValueError(f"{path}: a PEM key needs the 'cryptography' package") from None
    if b"PRIVATE KEY" in data:
        private = serialization.load_pem_private_key(data, password=None)
        if not isinstance(private, ed25519.Ed25519PrivateKey):
            raise ValueError(f"{path}: not an Ed25519 private key")
        return Ed25519Key(private, private.public_key())
    public = serialization.load_pem_public_key(data)
    if not isinstance(public, ed25519.Ed25519PublicKey):
        raise ValueError(f"{path}: not an Ed25519 public key")
    return Ed25519Key(None, public)


def load_key(path: str) -> HmacKey | Ed25519Key:
    """Read a checkpoint key: PEM means Ed25519, anything else is an HMAC secret.

    Trailing whitespace of an HMAC secret is ignored (``echo secret > key``
    must give the same key as ``printf secret > key``).

    Raises:
        OSError: unreadable file; ValueError: not a usable key.
    """
    with open(path, "rb") as f:
        data = f.read()
    if data.lstrip().startswith(b"-----BEGIN"):
        return _ed25519(data, path)
    try:
        return HmacKey(data.rstrip())
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
