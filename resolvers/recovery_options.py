"""Recovery options as the asker sees them (REC-1): masked, and decoys for unknown logins."""

from __future__ import annotations

from dataclasses import dataclass

import phonenumbers

from gardien.models.enums import RecoveryChannel
from gardien.models.users import User
from gardien.security import Keyring

DECOY_PURPOSE = "recovery-decoy"
OPTION_PURPOSE = "recovery-option"
# Offered in this order, whatever the account: the order says nothing either.
CHANNEL_ORDER = (RecoveryChannel.LOGIN_EMAIL, RecoveryChannel.RECOVERY_EMAIL, RecoveryChannel.SMS)
# Decoys look like the accounts this platform serves: Swiss, French, Belgian and German mobiles
# (country code, national digits), and the mail providers their recovery addresses use.
_DECOY_PHONES = (("41", 9), ("33", 9), ("32", 9), ("49", 11))
_DECOY_MAIL_DOMAINS = (
    "gmail.com",
    "bluewin.ch",
    "outlook.com",
    "gmx.ch",
    "yahoo.fr",
    "hotmail.com",
    "orange.fr",
    "gmx.de",
    "proton.me",
    "icloud.com",
)
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class RecoveryOption:
    id: str
    channel: RecoveryChannel
    masked_destination: str


def mask_email(address: str) -> str:
    """`anna.muster@example.ch` → `a***@e***.ch`: enough for the owner to recognise it."""
    local, _, domain = address.partition("@")
    labels = domain.split(".")
    top = labels[-1] if len(labels) > 1 else ""
    return f"{local[:1]}***@{domain[:1]}***" + (f".{top}" if top else "")


def mask_phone(e164: str) -> str:
    """`+41791234567` → `+41 ** *** ** 67`: the country and the last two digits only."""
    digits = e164.lstrip("+")
    # The country code as phonenumbers reads it (1 to 3 digits), not a table kept here.
    code = str(phonenumbers.parse(e164).country_code)
    national = digits[len(code) :]
    hidden = len(national) - 2
    # Grouped from the end as 2 (shown), 2, 3, then the rest, like a Swiss mobile is written.
    groups = [national[-2:]]
    for size in (2, 3):
        if hidden <= 0:
            break
        take = min(size, hidden)
        groups.insert(0, "*" * take)
        hidden -= take
    if hidden > 0:
        groups.insert(0, "*" * hidden)
    return f"+{code} " + " ".join(groups)


def option_id(keyring: Keyring, recovery_id: str, channel: RecoveryChannel) -> str:
    """Opaque, and new with each request: it names a channel of this request only."""
    return keyring.token_digest(f"{recovery_id}\x00{channel.value}", OPTION_PURPOSE)[:24]


def account_destinations(user: User) -> dict[RecoveryChannel, str]:
    """Where the account's codes may go, unmasked (for sending only, never for an answer)."""
    found = {
        RecoveryChannel.LOGIN_EMAIL: user.email,
        RecoveryChannel.RECOVERY_EMAIL: user.recovery_email,
        RecoveryChannel.SMS: user.recovery_phone,
    }
    return {channel: value for channel, value in found.items() if value}


def decoy_destinations(keyring: Keyring, login_key: str) -> dict[RecoveryChannel, str]:
    """Plausible destinations for a login that matches no account, derived from the login with
    the secret key: the same login gets the same decoys every time, and nobody without the key
    can tell them from real ones. A login that is an address shows itself as the login e-mail,
    as a real account's does."""
    seed = keyring.sign(login_key.encode(), DECOY_PURPOSE)
    found: dict[RecoveryChannel, str] = {}
    if "@" in login_key:
        found[RecoveryChannel.LOGIN_EMAIL] = login_key
    # Most accounts have a recovery address and phone; some have neither.
    if seed[0] % 4 != 0:
        letter = _LETTERS[seed[1] % len(_LETTERS)]
        domain = _DECOY_MAIL_DOMAINS[seed[2] % len(_DECOY_MAIL_DOMAINS)]
        found[RecoveryChannel.RECOVERY_EMAIL] = f"{letter}@{domain}"
    if seed[3] % 4 != 0:
        code, length = _DECOY_PHONES[seed[4] % len(_DECOY_PHONES)]
        national = "7" + "".join(str(byte % 10) for byte in seed[5 : 5 + length - 1])
        found[RecoveryChannel.SMS] = f"+{code}{national}"
    return found


def masked_options(
    keyring: Keyring, recovery_id: str, destinations: dict[RecoveryChannel, str]
) -> list[RecoveryOption]:
    masks = {
        RecoveryChannel.LOGIN_EMAIL: mask_email,
        RecoveryChannel.RECOVERY_EMAIL: mask_email,
        RecoveryChannel.SMS: mask_phone,
    }
    return [
        RecoveryOption(
            id=option_id(keyring, recovery_id, channel),
            channel=channel,
            masked_destination=masks[channel](destinations[channel]),
        )
        for channel in CHANNEL_ORDER
        if channel in destinations
    ]
