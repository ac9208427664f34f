"""Security primitives: password hashing, tokens, keyed digests, encryption at rest."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import secrets
import unicodedata
from functools import cache
from importlib import resources

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

# OWASP Password Storage Cheat Sheet: argon2id, m=19 MiB, t=2, p=1.
_HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1, hash_len=32, type=Type.ID)
# Verified against when a login matches no account, so both answers cost the same time.
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))

PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 256
SESSION_TOKEN_BYTES = 32  # 256 bits; NIST SP 800-63B asks at least 64, ASVS V3.2.2 at least 128.


def normalise_password(password: str) -> str:
    """NIST SP 800-63B 5.1.1.2: NFKC, so "ｐａｓｓ" (full width) and "pass" are one password.

    Applied before hashing and before verifying alike. Hashes made before normalisation was
    introduced are not tried in their raw form (that would cost a second argon2 run on every
    failure); no account predates it.
    """
    return unicodedata.normalize("NFKC", password)


async def hash_password(password: str) -> str:
    """argon2id is deliberately slow: it runs in a worker thread, off the event loop."""
    return await asyncio.to_thread(_HASHER.hash, normalise_password(password))


async def verify_password(password_hash: str | None, password: str) -> bool:
    return await asyncio.to_thread(_verify_sync, password_hash, normalise_password(password))


def _verify_sync(password_hash: str | None, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def password_needs_rehash(password_hash: str) -> bool:
    return _HASHER.check_needs_rehash(password_hash)


@cache
def common_passwords() -> frozenset[str]:
    text = resources.files("gardien").joinpath("data/common-passwords.txt").read_text("utf-8")
    return frozenset(
        line.strip().lower() for line in text.splitlines() if line and not line.startswith("#")
    )


def new_token(nbytes: int = SESSION_TOKEN_BYTES) -> str:
    return secrets.token_urlsafe(nbytes)


class Keyring:
    """Keys derived from the one GARDIEN_SECRET_KEY, one per purpose."""

    def __init__(self, secret_key: bytes) -> None:
        self._secret_key = secret_key
        self._aead = AESGCM(self._derive(b"encryption-at-rest"))

    def _derive(self, purpose: bytes) -> bytes:
        return hmac.new(self._secret_key, b"gardien/" + purpose, hashlib.sha256).digest()

    def token_digest(self, token: str, purpose: str) -> str:
        """Keyed digest stored instead of a high-entropy token; looked up by equality.

        A keyed HMAC rather than a password hash: tokens carry 256 random bits, so a fast digest
        is safe, and a stolen database alone does not let anyone forge a matching token.
        """
        return hmac.new(
            self._secret_key, purpose.encode() + b"\x00" + token.encode(), hashlib.sha256
        ).hexdigest()

    def encrypt(self, plaintext: bytes, context: str) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, plaintext, context.encode())

    def decrypt(self, ciphertext: bytes, context: str) -> bytes:
        return self._aead.decrypt(ciphertext[:12], ciphertext[12:], context.encode())
