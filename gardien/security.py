"""Security primitives: password hashing, tokens, keyed digests, encryption at rest."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import os
import secrets
import threading
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
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


# argon2id is deliberately slow, so it runs off the event loop, in threads of its own (argon2-cffi
# releases the GIL): one per CPU, as many as can hash at once; more would only share the cores
# and hold 19 MiB each. They run at a lower scheduling priority (a higher nice value), so that a
# burst of sign-ins uses the CPU the event loop leaves idle instead of delaying every other
# request: the event loop thread is scheduled first whenever it has work.
HASHING_THREADS = os.cpu_count() or 1
HASHING_NICENESS = 10


def _lower_hashing_priority() -> None:
    # On Linux, setpriority() given a thread id changes that thread only (see setpriority(2)).
    # Elsewhere, or where refused, hashing keeps the normal priority.
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASHING_NICENESS)


_HASHING_POOL = ThreadPoolExecutor(
    max_workers=HASHING_THREADS,
    thread_name_prefix="argon2",
    initializer=_lower_hashing_priority,
)


async def hash_password(password: str) -> str:
    """argon2id in a hashing thread, off the event loop."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_HASHING_POOL, _HASHER.hash, normalise_password(password))


async def verify_password(password_hash: str | None, password: str) -> bool:
    """argon2id in a hashing thread, off the event loop."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(
        _HASHING_POOL, _verify_sync, password_hash, normalise_password(password)
    )


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
        # Derived once per purpose: a sign-in signs and checks a device cookie.
        self._signing_keys: dict[str, bytes] = {}

    def _derive(self, purpose: bytes) -> bytes:
        return hmac.digest(self._secret_key, b"gardien/" + purpose, "sha256")

    def sign(self, message: bytes, purpose: str) -> bytes:
        """A MAC under the purpose's own derived key (a device cookie's, say)."""
        key = self._signing_keys.get(purpose)
        if key is None:
            key = self._signing_keys[purpose] = self._derive(purpose.encode())
        return hmac.digest(key, message, "sha256")

    def verify_signature(self, message: bytes, signature: bytes, purpose: str) -> bool:
        return hmac.compare_digest(self.sign(message, purpose), signature)

    def token_digest(self, token: str, purpose: str) -> str:
        """Keyed digest stored instead of a high-entropy token; looked up by equality.

        A keyed HMAC rather than a password hash: tokens carry 256 random bits, so a fast digest
        is safe, and a stolen database alone does not let anyone forge a matching token.
        """
        # hmac.digest: the one-shot form of hmac.new(...).hexdigest(), the same value, in C.
        return hmac.digest(
            self._secret_key, purpose.encode() + b"\x00" + token.encode(), "sha256"
        ).hex()

    def encrypt(self, plaintext: bytes, context: str) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, plaintext, context.encode())

    def decrypt(self, ciphertext: bytes, context: str) -> bytes:
        return self._aead.decrypt(ciphertext[:12], ciphertext[12:], context.encode())


# OWASP "Slow down online guessing attacks with device cookies": a browser that completed a sign-in
# keeps a signed nonce bound to the user and to the user's current credentials, and earns a
# guessing budget of its own. Nothing is stored per cookie: binding the MAC to the credential
# version is what revokes every cookie of a user at once (a password change moves it).
DEVICE_COOKIE_PURPOSE = "device-cookie"
# Long enough that a returning owner keeps their budget, short enough that a forgotten copy dies.
DEVICE_COOKIE_LIFETIME = timedelta(days=90)
_DEVICE_NONCE_BYTES = 16
_CLOCK_SKEW_SECONDS = 300


@dataclass(frozen=True)
class DeviceCookie:
    nonce: str
    value: str  # what the browser keeps: nonce.issued.signature


def _device_message(nonce: str, issued: int, user_id: int, credential_version: str) -> bytes:
    return f"{nonce}\x00{issued}\x00{user_id}\x00{credential_version}".encode()


def issue_device_cookie(
    keyring: Keyring,
    user_id: int,
    credential_version: str,
    now: datetime,
    nonce: str | None = None,
) -> DeviceCookie:
    """A device cookie for the user who just completed a sign-in.

    `nonce` renews a cookie the browser already holds (same nonce, so the same budget and lock);
    without it the browser is new and gets a new nonce.
    """
    nonce = nonce or secrets.token_urlsafe(_DEVICE_NONCE_BYTES)
    issued = int(now.timestamp())
    signature = keyring.sign(
        _device_message(nonce, issued, user_id, credential_version), DEVICE_COOKIE_PURPOSE
    )
    encoded = base64.urlsafe_b64encode(signature).rstrip(b"=").decode()
    return DeviceCookie(nonce=nonce, value=f"{nonce}.{issued}.{encoded}")


def read_device_cookie(
    keyring: Keyring, value: str | None, user_id: int, credential_version: str, now: datetime
) -> DeviceCookie | None:
    """The cookie when it is genuine, unexpired and was issued to this user under the
    credentials the user still has; else None."""
    if not value or len(value) > 200:
        return None
    parts = value.split(".")
    if len(parts) != 3 or not (parts[1].isascii() and parts[1].isdigit()):
        return None
    nonce, issued_text, encoded = parts
    try:
        signature = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except ValueError:
        return None
    issued = int(issued_text)
    if not keyring.verify_signature(
        _device_message(nonce, issued, user_id, credential_version),
        signature,
        DEVICE_COOKIE_PURPOSE,
    ):
        return None
    # A little slack ahead: replicas' clocks are never exactly in step.
    earliest = now.timestamp() - DEVICE_COOKIE_LIFETIME.total_seconds()
    if not earliest < issued <= now.timestamp() + _CLOCK_SKEW_SECONDS:
        return None
    return DeviceCookie(nonce=nonce, value=value)
