"""A software security key for the tests (MFA-2): EC P-256 (ES256), "none" attestation.

It does what a roaming authenticator and the browser do together for navigator.credentials
create()/get() with the standard JSON forms: builds the client data, the authenticator data (real
CBOR and COSE encoding), signs with its private key and answers RegistrationResponseJSON or
AuthenticationResponseJSON. Each knob a test turns (origin, RP ID, challenge, counter, key) is a
keyword, so every bad answer is a real, well-formed WebAuthn answer with one thing wrong."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import secrets
import struct
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from fido2 import cbor

# Authenticator data flags (WebAuthn §6.1).
USER_PRESENT = 0x01
ATTESTED_CREDENTIAL_DATA = 0x40
# COSE (RFC 9052/9053): kty EC2, alg ES256, curve P-256.
_COSE_KTY, _COSE_ALG, _COSE_CRV, _COSE_X, _COSE_Y = 1, 3, -1, -2, -3
_KTY_EC2, _ALG_ES256, _CRV_P256 = 2, -7, 1


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class CredentialExcluded(Exception):
    """The authenticator holds a credential of excludeCredentials (InvalidStateError)."""


class NoAllowedCredential(Exception):
    """None of allowCredentials is this authenticator's (NotAllowedError)."""


class SoftAuthenticator:
    """One credential, made at the first create(); its counter grows at each signature."""

    def __init__(self, origin: str, *, counter_step: int = 1) -> None:
        self.origin = origin
        # 0: a key that keeps no signature counter (WebAuthn allows it; the counter stays 0).
        self.counter_step = counter_step
        self.credential_id = secrets.token_bytes(32)
        self.private_key = ec.generate_private_key(ec.SECP256R1())
        self.sign_count = 0
        self.aaguid = bytes(16)  # "none" attestation: the AAGUID may be zeroed (§6.5.1)
        self.user_handle: bytes | None = None

    def clone(self) -> SoftAuthenticator:
        """A copy of the key (same credential, same private key), counter included."""
        return copy.deepcopy(self)

    def cose_public_key(self, algorithm: int = _ALG_ES256) -> bytes:
        numbers = self.private_key.public_key().public_numbers()
        return cbor.encode(
            {
                _COSE_KTY: _KTY_EC2,
                _COSE_ALG: algorithm,
                _COSE_CRV: _CRV_P256,
                _COSE_X: numbers.x.to_bytes(32, "big"),
                _COSE_Y: numbers.y.to_bytes(32, "big"),
            }
        )

    def _client_data(self, type_: str, challenge: str, origin: str | None) -> bytes:
        return json.dumps(
            {
                "type": type_,
                "challenge": challenge,
                "origin": origin or self.origin,
                "crossOrigin": False,
            }
        ).encode()

    def _authenticator_data(self, rp_id: str, flags: int, attested: bytes = b"") -> bytes:
        rp_id_hash = hashlib.sha256(rp_id.encode()).digest()
        return rp_id_hash + bytes([flags]) + struct.pack(">I", self.sign_count) + attested

    def create(
        self,
        options: dict[str, Any],
        *,
        origin: str | None = None,
        rp_id: str | None = None,
        challenge: str | None = None,
        user_present: bool = True,
        algorithm: int = _ALG_ES256,
        public_key: dict[int, Any] | None = None,
    ) -> dict[str, Any]:
        """navigator.credentials.create({publicKey: options}).toJSON(); `algorithm` labels the
        public key with another COSE algorithm, as a key answering outside the options would;
        `public_key` presents that COSE key instead of the authenticator's own."""
        excluded = {d["id"] for d in options.get("excludeCredentials", [])}
        if b64url(self.credential_id) in excluded:
            raise CredentialExcluded(b64url(self.credential_id))
        assert {"type": "public-key", "alg": _ALG_ES256} in options["pubKeyCredParams"]
        self.user_handle = unb64url(options["user"]["id"])
        client_data = self._client_data(
            "webauthn.create", challenge or options["challenge"], origin
        )
        attested = (
            self.aaguid
            + struct.pack(">H", len(self.credential_id))
            + self.credential_id
            + (
                cbor.encode(public_key)
                if public_key is not None
                else self.cose_public_key(algorithm)
            )
        )
        flags = (USER_PRESENT if user_present else 0) | ATTESTED_CREDENTIAL_DATA
        auth_data = self._authenticator_data(rp_id or options["rp"]["id"], flags, attested)
        attestation_object = cbor.encode({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return {
            "id": b64url(self.credential_id),
            "rawId": b64url(self.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "attestationObject": b64url(attestation_object),
                "transports": ["usb"],
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "cross-platform",
        }

    def get(
        self,
        options: dict[str, Any],
        *,
        origin: str | None = None,
        rp_id: str | None = None,
        challenge: str | None = None,
        signing_key: ec.EllipticCurvePrivateKey | None = None,
        ignore_allow_list: bool = False,
        user_present: bool = True,
    ) -> dict[str, Any]:
        """navigator.credentials.get({publicKey: options}).toJSON(); the counter moves on."""
        allowed = {d["id"] for d in options.get("allowCredentials", [])}
        if not ignore_allow_list and b64url(self.credential_id) not in allowed:
            raise NoAllowedCredential(b64url(self.credential_id))
        self.sign_count += self.counter_step
        client_data = self._client_data("webauthn.get", challenge or options["challenge"], origin)
        auth_data = self._authenticator_data(
            rp_id or options["rpId"], USER_PRESENT if user_present else 0
        )
        signature = (signing_key or self.private_key).sign(
            auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256())
        )
        response = {
            "clientDataJSON": b64url(client_data),
            "authenticatorData": b64url(auth_data),
            "signature": b64url(signature),
        }
        if self.user_handle is not None:
            response["userHandle"] = b64url(self.user_handle)
        return {
            "id": b64url(self.credential_id),
            "rawId": b64url(self.credential_id),
            "type": "public-key",
            "response": response,
            "clientExtensionResults": {},
            "authenticatorAttachment": "cross-platform",
        }
