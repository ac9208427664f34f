"""The keyring's keyed digests and MACs are pinned: every stored session, token and rate-limit
key, and every device cookie a browser holds, was made with them, so their values never change."""

from __future__ import annotations

import hashlib
import hmac

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gardien.security import Keyring

SECRET = bytes(range(32))


def test_api6_token_digest_is_hmac_sha256_of_purpose_and_token_under_the_secret() -> None:
    keyring = Keyring(SECRET)

    digest = keyring.token_digest("a-token", "session")

    assert digest == hmac.new(SECRET, b"session\x00a-token", hashlib.sha256).hexdigest()
    assert digest == "7abbfa716150b08eed3c9966edd0dcef1ef1de3e3f57f3d7cc232dfd6450049a"


def test_api4_signatures_use_each_purposes_own_derived_key_every_time() -> None:
    keyring = Keyring(SECRET)
    purpose_key = hmac.new(SECRET, b"gardien/device-cookie", hashlib.sha256).digest()
    expected = hmac.new(purpose_key, b"message", hashlib.sha256).digest()

    first = keyring.sign(b"message", "device-cookie")
    again = keyring.sign(b"message", "device-cookie")

    assert first == again == expected
    assert keyring.sign(b"message", "other") != expected
    assert keyring.verify_signature(b"message", expected, "device-cookie")
    assert not keyring.verify_signature(b"massage", expected, "device-cookie")


def test_mfa1_secrets_encrypted_at_rest_stay_readable_under_the_derived_key() -> None:
    """TOTP secrets, support codes and the like are sealed under a key derived from the secret:
    a sealed value made with that derivation, independently, opens."""
    at_rest = hmac.new(SECRET, b"gardien/encryption-at-rest", hashlib.sha256).digest()
    nonce = bytes(12)
    sealed = nonce + AESGCM(at_rest).encrypt(nonce, b"JBSWY3DPEHPK3PXP", b"totp")

    assert Keyring(SECRET).decrypt(sealed, "totp") == b"JBSWY3DPEHPK3PXP"
