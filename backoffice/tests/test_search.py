"""
The support desk's search box (backoffice/search.py): how typed text is read,
and that each kind of identifier a customer or Stripe gives finds the payment
and only it, in the admin's payment list.
"""

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from backoffice.search import AmountTerm, parse_amount, parse_search
from payments.models import Dispute, Payment
from payments.tests.factories import PaymentFactory, UserFactory
from refunds.tests.factories import PaidPaymentFactory, RefundFactory
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.usefixtures("fast_password_hashing")

CHANGELIST = "/admin/payments/payment/"
PAYMENT_ID = uuid.UUID("ebb697fc-1c2d-4e5f-8a9b-0c1d2e3f4a5b")


# --- Reading the text (no database) ---------------------------------------------


def test_a_whole_number_is_read_in_every_currency_exponent():
    """'24' is $24.00 (2400), ¥24 (24) or KWD 24.000 (24000): the currency's exponent decides."""
    assert set(parse_amount("24")) == {
        AmountTerm(minor=24, decimals=0),
        AmountTerm(minor=2400, decimals=2),
        AmountTerm(minor=24000, decimals=3),
    }


def test_decimals_rule_out_zero_decimal_currencies():
    assert set(parse_amount("24.50")) == {AmountTerm(minor=2450, decimals=2), AmountTerm(minor=24500, decimals=3)}
    assert set(parse_amount("24.00")) >= {AmountTerm(minor=2400, decimals=2)}


def test_a_symbol_or_code_names_the_currency():
    assert parse_amount("¥500") == (AmountTerm(minor=500, currencies=frozenset({"jpy"})),)
    assert parse_amount("$24") == (AmountTerm(minor=2400, currencies=frozenset({"usd"})),)
    assert parse_amount("24.00 EUR") == (AmountTerm(minor=2400, currencies=frozenset({"eur"})),)
    assert parse_amount("KWD 5.12") == (AmountTerm(minor=5120, currencies=frozenset({"kwd"})),)
    assert parse_amount("$1,234.50") == (AmountTerm(minor=123450, currencies=frozenset({"usd"})),)


def test_text_that_is_not_an_amount_is_not_read_as_one():
    for text in ("pi_123", "ana@example.com", "¥5.5", "24 XYZ", "12abc", "", "0"):
        assert parse_amount(text) == (), text


def test_the_order_pages_short_number_is_a_range_of_our_ids():
    """'Order ebb697fc' (the order page's heading) and 'ebb697fc' both read as every id starting so."""
    for text in ("ebb697fc", "Order ebb697fc", "EBB697FC", "order #ebb697fc"):
        parsed = parse_search(text)
        assert parsed.payment_id_range == (
            uuid.UUID("ebb697fc-0000-0000-0000-000000000000"),
            uuid.UUID("ebb697fc-ffff-ffff-ffff-ffffffffffff"),
        ), text


def test_fewer_than_8_characters_of_an_id_are_not_an_id():
    assert parse_search("ebb697f").payment_id_range is None


def test_a_whole_id_is_an_id():
    assert parse_search(f" {PAYMENT_ID} ").payment_id == PAYMENT_ID


def test_stripe_ids_are_read_by_their_prefix():
    assert parse_search("ch_3Abc").charge_id == "ch_3Abc"
    assert parse_search("re_3Abc").refund_id == "re_3Abc"
    assert parse_search("dp_1Abc").dispute_id == "dp_1Abc"
    assert parse_search("pi_3Abc").charge_id is None
    assert "PaymentIntent id" in parse_search("pi_3Abc").kinds


def test_card_last4_and_email():
    assert parse_search("4242").card_last4 == "4242"
    assert parse_search("•••• 4242").card_last4 == "4242"
    assert parse_search("42424").card_last4 is None
    assert parse_search("Ana@Example.com").email == "Ana@Example.com"


# --- Finding the payment ----------------------------------------------------------


@pytest.fixture
def wanted(db):
    """A paid $24.00 payment with every identifier set, among others that share none of them."""
    payment = PaidPaymentFactory(
        id=PAYMENT_ID,
        amount=2400,
        currency="usd",
        stripe_payment_intent_id="pi_3Wanted",
        order_reference="ORDER-1001",
        customer_email="ana@example.com",
        card_brand="visa",
        card_last4="4242",
    )
    RefundFactory(payment=payment, amount=500, stripe_refund_id="re_3Wanted")
    Dispute.objects.create(stripe_dispute_id="dp_1Wanted", payment=payment, amount=2400, status="needs_response")
    WebhookEvent.objects.create(
        stripe_event_id="evt_charge",
        type="charge.succeeded",
        payload={"id": "evt_charge", "created": 1, "data": {"object": {"id": "ch_3Wanted"}}},
        object_id="ch_3Wanted",
        payment=payment,
    )
    # Near misses: another id starting with the same 7 characters, another currency's 2400, other cards.
    PaidPaymentFactory(id=uuid.UUID("ebb697f0-0000-4000-8000-000000000000"), amount=2500, card_last4="1111")
    PaidPaymentFactory(amount=2400, currency="jpy", card_last4="2222", customer_email="bo@example.com")
    PaidPaymentFactory(amount=24, currency="eur", card_last4="3333", order_reference="ORDER-1002")
    PaymentFactory.create_batch(3, amount=999)
    return payment


def listed(client, text: str) -> set[str]:
    response = client.get(CHANGELIST, {"q": text})
    assert response.status_code == 200
    return {str(p.pk) for p in response.context["cl"].result_list}


@pytest.mark.django_db
@pytest.mark.parametrize(
    "text",
    [
        str(PAYMENT_ID),
        "ebb697fc",
        "Order ebb697fc",
        "ebb697fc-1c2d",
        "pi_3Wanted",
        "ch_3Wanted",
        "re_3Wanted",
        "dp_1Wanted",
        "ORDER-1001",
        "ana@example.com",
        "ANA@Example.COM",
        "24",
        "24.00",
        "$24.00",
        "24 usd",
        "4242",
    ],
)
def test_each_kind_of_search_finds_the_payment_and_only_it(client, support_viewer, wanted, text):
    client.force_login(support_viewer)

    assert listed(client, text) == {str(wanted.pk)}


@pytest.mark.django_db
def test_yen_amounts_use_the_yens_exponent(client, support_viewer, wanted):
    """'¥2,400' is 2400 jpy (zero decimals), not the $24.00 payment."""
    client.force_login(support_viewer)
    yen = PaidPaymentFactory(amount=500, currency="jpy")

    assert listed(client, "¥500") == {str(yen.pk)}
    assert str(wanted.pk) not in listed(client, "¥2,400")


@pytest.mark.django_db
def test_the_api_accounts_email_still_finds_its_payments(client, support_viewer):
    client.force_login(support_viewer)
    account = UserFactory(username="shopfront", email="shopfront@example.com")
    payment = PaymentFactory(user=account)
    PaymentFactory()

    assert listed(client, "ShopFront@example.com") == {str(payment.pk)}


@pytest.mark.django_db
def test_a_search_that_matches_nothing_says_so(client, support_viewer, wanted):
    client.force_login(support_viewer)

    response = client.get(CHANGELIST, {"q": "pi_nothing"})

    assert list(response.context["cl"].result_list) == []
    assert "No payment matches “pi_nothing”" in response.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("text", ["4242", "re_3Wanted", "ana@example.com"])
def test_search_takes_as_many_queries_for_21_payments_as_for_1(
    client, support_viewer, wanted, text, django_assert_num_queries
):
    """Whatever it finds, a search is the page's usual queries plus at most one look-up per other table."""
    client.force_login(support_viewer)
    with CaptureQueriesContext(connection) as one:
        client.get(CHANGELIST, {"q": text})
    PaidPaymentFactory.create_batch(20, amount=2400, card_last4="4242", customer_email="ana@example.com")
    for n, payment in enumerate(Payment.objects.exclude(pk=wanted.pk)[:20]):
        RefundFactory(payment=payment, stripe_refund_id=f"re_other{n}")

    with django_assert_num_queries(len(one.captured_queries)):
        client.get(CHANGELIST, {"q": text})


@pytest.mark.django_db
@pytest.mark.parametrize(
    "text", ["9" * 40, "$" + "9" * 30 + ".99", "0.000000000000000000000001", "x" * 300, "Order " + "f" * 31, "'; --"]
)
def test_huge_or_odd_text_finds_nothing_without_an_error(client, support_viewer, wanted, text):
    client.force_login(support_viewer)

    response = client.get(CHANGELIST, {"q": text})

    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == []
