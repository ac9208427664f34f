"""Which e-mail addresses sign-up and invitations accept (ORG-1, INV-1): host names only."""

from __future__ import annotations

import pytest

from gardien.resolvers.accounts import normalise_email
from gardien.resolvers.errors import DomainError, ErrorCode

GOOD = [
    ("anna@example.ch", "anna@example.ch"),
    (" Anna.Legal+billing@Sub.Example.CO.UK ", "anna.legal+billing@sub.example.co.uk"),
    ("a@ex-ample.ch", "a@ex-ample.ch"),
    ("a@1example.ch", "a@1example.ch"),
    ("a@x.io", "a@x.io"),
    # IDN in punycode, both in a label and as the TLD.
    ("hans@xn--bcher-kva.ch", "hans@xn--bcher-kva.ch"),
    ("ivan@example.xn--p1ai", "ivan@example.xn--p1ai"),
    (f"a@{'l' * 63}.ch", f"a@{'l' * 63}.ch"),
]

BAD = [
    "a@[127.0.0.1]",  # IP literal
    "a@[ipv6:::1]",
    "a@127.0.0.1",  # a dotted quad: its TLD is not letters
    "a@-.ch",
    "a@-ex.ch",
    "a@ex-.ch",
    "a@e..ch",
    "a@.ch",
    "a@ch.",
    "a@example.ch.",
    "a@localhost",  # no dot-separated domain
    "a@example.c",  # one-letter TLD
    "a@example.c0m",  # TLD with a digit
    "a@example.xn--",  # empty punycode TLD
    "a@exa_mple.ch",
    "a@exämple.ch",  # Unicode: punycode only
    f"a@{'l' * 64}.ch",  # label over 63 characters
    "a@b@example.ch",
    "@example.ch",
    "a example@example.ch",
]


@pytest.mark.parametrize(("given", "stored"), GOOD)
def test_org1_inv1_email_with_a_host_name_domain_is_accepted(given: str, stored: str) -> None:
    assert normalise_email(given) == stored


@pytest.mark.parametrize("given", BAD)
def test_org1_inv1_email_with_ip_literal_or_bad_domain_labels_is_refused(given: str) -> None:
    with pytest.raises(DomainError) as raised:
        normalise_email(given)
    assert (raised.value.code, raised.value.field) == (ErrorCode.INVALID_INPUT, "email")
