"""
Every currency Stripe charges in (payments/currencies.py): created through the API
at its smallest amount, refused below Stripe's minimum and off its steps
(three-decimal amounts end in 0, ISK in whole krónur), shown with its decimals; and
any three-letter currency adopted from Stripe, known or not, shown and refundable.
"""

import pytest

from payments.currencies import CURRENCIES, MAXIMUM_AMOUNT, format_amount, get_currency
from payments.models import Payment
from refunds.tests.factories import request_refund
from webhooks.tests.factories import payment_intent_event, receive_and_apply

ZERO_DECIMAL = set("bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split())
THREE_DECIMAL = set("bhd jod kwd omr tnd".split())


def create(client, amount, currency, key):
    return client.post(
        "/api/payments/", {"amount": amount, "currency": currency}, format="json", HTTP_IDEMPOTENCY_KEY=key
    )


def test_the_table_knows_stripes_decimal_rules():
    assert {c.code for c in CURRENCIES.values() if c.decimals == 0} == ZERO_DECIMAL
    assert {c.code for c in CURRENCIES.values() if c.decimals == 3} == THREE_DECIMAL
    assert all(CURRENCIES[code].step == 10 for code in THREE_DECIMAL)
    assert (CURRENCIES["isk"].decimals, CURRENCIES["isk"].step) == (2, 100)
    assert len(CURRENCIES) >= 135
    assert (CURRENCIES["usd"].minimum, CURRENCIES["gbp"].minimum, CURRENCIES["huf"].minimum) == (50, 30, 17500)


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [
        (2050, "usd", "$20.50"),
        (500, "jpy", "¥500"),
        (5120, "kwd", "KWD 5.120"),
        (1234567, "mxn", "MX$12,345.67"),
        (500, "isk", "ISK 5.00"),
        (1234, "XTS", "XTS 12.34"),
        (-2050, "eur", "-€20.50"),
    ],
)
def test_amounts_are_shown_with_the_currencys_decimals(amount, currency, shown):
    assert format_amount(amount, currency) == shown


def test_a_currency_outside_the_table_is_generic_and_known_as_such():
    unknown = get_currency("xts")
    assert (unknown.code, unknown.decimals, unknown.minimum, unknown.known) == ("xts", 2, None, False)
    assert unknown.amount_problem(1) is None
    assert get_currency("usd").known


@pytest.mark.django_db
def test_every_currency_is_created_at_its_smallest_amount(owner_api, fake_stripe):
    """One payment per currency of the table, at Stripe's minimum (or its smallest step): 201, and so at Stripe."""
    refused = {}
    for code, currency in CURRENCIES.items():
        response = create(owner_api, currency.smallest_amount, code.upper(), key=f"smallest-{code}")
        if response.status_code != 201:
            refused[code] = response.json()
    assert refused == {}
    at_stripe = {(pi["currency"], pi["amount"]) for pi in fake_stripe.list("payment_intents")}
    assert at_stripe == {(code, currency.smallest_amount) for code, currency in CURRENCIES.items()}
    assert set(Payment.objects.values_list("currency", flat=True)) == set(CURRENCIES)


@pytest.mark.django_db
def test_amounts_below_minimum_off_step_or_too_big_are_400_and_nothing_is_written(owner_api, fake_stripe):
    wrong = [(currency.minimum - 1, code) for code, currency in CURRENCIES.items() if currency.minimum]
    wrong += [(5125, code) for code in THREE_DECIMAL] + [(550, "isk"), (MAXIMUM_AMOUNT + 1, "usd"), (0, "jpy")]
    answers = {(amount, code): create(owner_api, amount, code, key=f"wrong-{code}-{amount}") for amount, code in wrong}

    assert {key: response.status_code for key, response in answers.items()} == dict.fromkeys(answers, 400)
    assert "At least 50 ($0.50) for usd." in str(answers[(49, "usd")].json())
    assert "multiple of 10" in str(answers[(5125, "kwd")].json())
    assert not Payment.objects.exists()
    assert fake_stripe.list("payment_intents") == []


@pytest.mark.django_db
def test_a_currency_stripe_does_not_charge_in_is_400(owner_api, fake_stripe):
    response = create(owner_api, 1000, "xyz", key="xyz")
    assert response.status_code == 400
    assert "currency" in str(response.json())
    assert not Payment.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("code", [*sorted(CURRENCIES), "xts", "zzz"])
def test_a_payment_intent_adopted_from_stripe_in_any_currency_is_recorded_and_shown(code):
    """A PaymentIntent the app never made, in a currency of the table or not: adopted, shown, never a crash."""
    event = payment_intent_event("payment_intent.succeeded", amount=7770, currency=code)
    stored = receive_and_apply(event)

    assert stored.outcome == "processed", stored.error
    payment = Payment.objects.get()
    assert (payment.currency, payment.amount, payment.amount_received) == (code, 7770, 7770)
    assert payment.display_amount == get_currency(code).format(7770)
    assert str(payment)


@pytest.mark.django_db
def test_an_adopted_payment_in_an_unknown_currency_can_be_refunded(staff_api, fake_stripe):
    """The refund's message and limit speak its currency generically ("ZZZ 77.70")."""
    receive_and_apply(payment_intent_event("payment_intent.succeeded", amount=7770, currency="zzz"))
    payment = Payment.objects.get()

    response = request_refund(staff_api, payment, {"amount": 9999})

    assert response.status_code == 400
    assert "ZZZ 77.70" in response.json()["detail"]
