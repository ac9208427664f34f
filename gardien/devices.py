"""What a user agent says about the device behind a request (ACT-1, ACT-2), via ua-parser."""

from __future__ import annotations

from dataclasses import dataclass

import ua_parser

# Parsing is regular-expression work: a bounded input keeps a hostile header cheap, and no real
# browser sends more than this.
MAX_USER_AGENT = 512
MAX_LABEL = 200


@dataclass(frozen=True)
class Device:
    label: str  # for people: "Chrome 124 on Windows 10", shown in e-mails and session lists
    family: str  # for recognising the device again: browser and OS families, without versions


def _printable(text: str) -> str:
    return "".join(character for character in text if character.isprintable()).strip()


def _versioned(family: str, *parts: str | None) -> str:
    version = ".".join(part for part in parts if part)
    return f"{family} {version}" if version else family


def describe(user_agent: str | None) -> Device | None:
    """The device a User-Agent header describes, or None without one.

    A client the parser does not know (a script, an API library) keeps its own product token,
    so a session list still tells "python-httpx/0.28" from a browser.
    """
    raw = _printable((user_agent or "")[:MAX_USER_AGENT])
    if not raw:
        return None
    parsed = ua_parser.parse(raw)
    browser, system, hardware = parsed.user_agent, parsed.os, parsed.device
    if browser is None and system is None:
        token = raw.split(" ", 1)[0][:MAX_LABEL]
        return Device(label=token, family=token.split("/", 1)[0])
    browser_name = _versioned(browser.family, browser.major) if browser else "Unknown browser"
    label = browser_name
    if system is not None:
        label += " on " + _versioned(system.family, system.major, system.minor)
    if hardware is not None and hardware.family not in ("Other", "Mac", "Spider"):
        label += f" ({hardware.family})"
    family = f"{browser.family if browser else '?'}/{system.family if system else '?'}"
    return Device(label=label[:MAX_LABEL], family=family[:MAX_LABEL])
