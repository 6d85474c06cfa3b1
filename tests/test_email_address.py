"""One canonical email address: what we validate is exactly what the mail library sends to.

Crafted addresses that a header parser reads differently (a display name, a comment, a list)
are refused wherever an email enters (the API's customer, Shopify's order email, a helpdesk
requester), and every address we accept reads back unchanged, with no display name, through
``email.utils.parseaddr``, ``email.headerregistry.Address`` and sendgrid-python's helper."""

from __future__ import annotations

import json
import string
from email.headerregistry import Address
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from sendgrid.helpers.mail import Mail, To

from starters.api.webhooks_helpdesk import parse_gorgias, parse_zendesk
from trackflow.email_address import canonical_email
from trackflow.models import Customer
from trackflow.sources.shopify import parse_fulfillment
from trackflow.tickets import InboundTicket

CRAFTED = [
    "a,b@example.com",  # two addresses to the helper: it raises before any request
    "a>b@example.com",
    "x<victim@example.com",  # sent to victim@example.com, past its suppression
    "Ada <ada@example.com>",
    "a(comment)@example.com",  # a comment: sent to a@example.com
    "a;b@example.com",
    '"a b"@example.com',
    "a:b@example.com",
    "a@b@example.com",
    "a\\b@example.com",
    "a b@example.com",
    ".a@example.com",
    "a.@example.com",
    "a..b@example.com",
    "a@example.com.",
    "a@-example.com",
    "a@[127.0.0.1]",
    "a@localhost",
    "=?utf-8?q?victim?=@example.com",
    "josé@example.com",
    "a@exämple.com",
    "@example.com",
    "a@",
    "a" * 65 + "@example.com",
]


def sendgrid_recipient(address: str) -> dict[str, Any]:
    mail = Mail(
        from_email="shop@example.com", to_emails=To(address), subject="s", plain_text_content="b"
    )
    (recipient,) = mail.get()["personalizations"][0]["to"]
    return dict(recipient)


@pytest.mark.parametrize("address", CRAFTED)
def test_a_crafted_address_is_refused_naming_the_field(address: str) -> None:
    with pytest.raises(ValueError):
        canonical_email(address)
    with pytest.raises(ValidationError) as refused:
        Customer(email=address)
    assert [error["loc"] for error in refused.value.errors()] == [("email",)]


def test_the_domain_is_lower_cased_the_local_part_kept() -> None:
    assert Customer(email="  Ada.Lovelace+Orders@Example.COM ").email == (
        "Ada.Lovelace+Orders@example.com"
    )
    assert Customer(email="").email is None


@pytest.mark.parametrize(
    "address",
    [
        "ada@example.com",
        "o'brien@example.co.uk",
        "a!#$%&'*+/^_`{|}~=-?z@sub-domain.example.com",
        "first.last@x1.example",
    ],
)
def test_a_plain_address_is_accepted_as_the_library_reads_it(address: str) -> None:
    assert canonical_email(address) == address
    assert sendgrid_recipient(address) == {"email": address}


_ALPHABET = string.ascii_letters[:6] + string.digits[:3] + string.punctuation + " é\t"


@settings(max_examples=400, deadline=None)
@given(
    st.text(alphabet=_ALPHABET, min_size=1, max_size=12),
    st.text(alphabet=_ALPHABET, min_size=1, max_size=12),
)
def test_every_accepted_address_reads_back_unchanged_through_the_mail_library(
    local: str, domain: str
) -> None:
    try:
        address = canonical_email(f"{local}@{domain}")
    except ValueError:
        return
    assert parseaddr(address) == ("", address)
    assert Address(addr_spec=address).addr_spec == address
    assert sendgrid_recipient(address) == {"email": address}


def _fulfillment() -> dict[str, Any]:
    path = Path(__file__).parent / "fixtures" / "shopify" / "shopify_fulfillments_create.json"
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def test_shopify_drops_a_crafted_order_email_and_keeps_the_phone() -> None:
    payload = _fulfillment()
    payload["email"] = "x<victim@example.com"
    payload["destination"]["phone"] = "+15025550123"
    [shipment] = parse_fulfillment(payload, shop_domain="example.myshopify.com").shipments
    assert (shipment.customer.email, shipment.customer.phone) == (None, "+15025550123")
    payload["email"] = "Steve@Example.COM"
    [shipment] = parse_fulfillment(payload, shop_domain="example.myshopify.com").shipments
    assert shipment.customer.email == "Steve@example.com"


def test_a_helpdesk_requester_with_a_crafted_address_is_an_unknown_requester() -> None:
    zendesk = parse_zendesk({"ticket_id": "1", "requester_email": "x<victim@example.com"})
    gorgias = parse_gorgias({"ticket_id": "2", "customer_email": "a(c)@Example.com"})
    assert (zendesk.requester_email, gorgias.requester_email) == (None, None)
    assert (
        parse_zendesk({"ticket_id": "3", "requester_email": "Ada@EXAMPLE.com"}).model_dump()[
            "requester_email"
        ]
        == "Ada@example.com"
    )
    with pytest.raises(ValidationError):
        InboundTicket.model_validate(
            parse_zendesk({"ticket_id": "4"}).model_dump() | {"requester_email": "a,b@example.com"}
        )
