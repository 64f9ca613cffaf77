"""Encryption for secrets we must store (chat bot tokens, signing secrets).

Fernet (AES-128-CBC + HMAC-SHA256) with a key derived from ``RAGKB_SECRET_KEY``. In the
embedded mode, when the variable is unset, a random key is created once in the data
directory (mode 0600); production sets the variable (and keeps it out of the database).
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from core.settings import Settings

_KEY_FILE = "secret.key"


class SecretBox:
    def __init__(self, key_material: str) -> None:
        # Any string works as key material: derive the 32 bytes Fernet needs from it.
        digest = hashlib.sha256(key_material.encode("utf-8")).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        if settings.security.secret_key is not None:
            return cls(settings.security.secret_key.get_secret_value())
        return cls(_embedded_key(settings.storage.data_dir / _KEY_FILE))

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except InvalidToken as exc:
            raise ValueError(
                "cannot decrypt a stored secret: was RAGKB_SECRET_KEY changed?"
            ) from exc


def _embedded_key(path: Path) -> str:
    if path.exists():
        return path.read_text("ascii").strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    return key
