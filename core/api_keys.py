"""API keys: generation, hashing and constant-time verification.

A key looks like ``rk_<prefix>_<secret>``. The prefix (visible, unique) finds the row;
only the SHA-256 of the whole key is stored. Keys carry 256 bits of randomness, so a fast
hash is enough (no password stretching needed), and ``hmac.compare_digest`` keeps the
comparison constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

KEY_SCHEME = "rk"
PREFIX_BYTES = 6  # 12 hex chars: visible in listings and logs, identifies the key
SECRET_BYTES = 32


@dataclass(frozen=True, slots=True)
class NewKey:
    """A freshly generated key: ``plaintext`` is shown once and never stored."""

    prefix: str
    plaintext: str
    key_hash: str


def generate_key() -> NewKey:
    prefix = secrets.token_hex(PREFIX_BYTES)
    plaintext = f"{KEY_SCHEME}_{prefix}_{secrets.token_urlsafe(SECRET_BYTES)}"
    return NewKey(prefix=prefix, plaintext=plaintext, key_hash=hash_key(plaintext))


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def parse_prefix(plaintext: str) -> str | None:
    """The prefix of a well-formed key, or None for anything else."""
    parts = plaintext.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_SCHEME or len(parts[1]) != PREFIX_BYTES * 2:
        return None
    return parts[1]


def key_matches(plaintext: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_key(plaintext), stored_hash)
