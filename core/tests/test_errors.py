"""
core.errors (issue 16, fault 4): no error text, log line or admin page carries
the row PostgreSQL quotes when a constraint fails, nor a Stripe secret.
"""

import logging
import sys

import pytest
from django.db import IntegrityError, transaction

from core.errors import REDACTED, SafeFormatter, redact_secrets, safe_error_text, scrub
from payments.models import Payment
from payments.tests.factories import PaymentFactory

SECRET = "pi_3Row_secret_Tz9Leak"


def row_error(**fields) -> IntegrityError:
    """A real IntegrityError from PostgreSQL, whose text quotes a payment's row, its client secret included."""
    try:
        with transaction.atomic():
            PaymentFactory(client_secret=SECRET, **fields)
    except IntegrityError as exc:
        return exc
    raise AssertionError("the row was stored")


@pytest.mark.django_db
def test_a_failed_check_is_told_by_its_constraint_never_its_row():
    """PostgreSQL's "Failing row contains (…)" (the client secret in it) never reaches the safe text."""
    exc = row_error(amount=-5)
    assert "Failing row contains" in str(exc) and SECRET in str(exc)

    text = safe_error_text(exc)

    assert text.startswith("IntegrityError: CheckViolation (constraint payment_")
    assert "Failing row" not in text and SECRET not in text and "-5" not in text


@pytest.mark.django_db
def test_a_duplicate_key_is_told_by_its_constraint_never_its_value():
    """ "Key (…)=(…) already exists" quotes the value: only the constraint is told."""
    PaymentFactory(stripe_payment_intent_id="pi_taken_once")
    exc = row_error(stripe_payment_intent_id="pi_taken_once")

    text = safe_error_text(exc)

    assert "UniqueViolation" in text and "constraint" in text
    assert "pi_taken_once" not in text and "Key (" not in text


@pytest.mark.django_db
def test_an_error_raised_from_a_database_error_is_told_the_same_way():
    """An exception raised while handling a database error does not smuggle its row out."""
    cause = row_error(amount=-5)
    try:
        raise ValueError(f"could not save: {cause}") from cause
    except ValueError as exc:
        text = safe_error_text(exc)

    assert text.startswith("ValueError from IntegrityError: CheckViolation")
    assert SECRET not in text and "Failing row" not in text


def test_other_errors_keep_their_first_line_without_secrets():
    """Our own messages say what happened; anything shaped like a Stripe secret is taken out."""
    text = safe_error_text(RuntimeError(f"Stripe said no for {SECRET} with sk_live_abc123 and whsec_xyz\nmore"))

    assert text == f"RuntimeError: Stripe said no for {REDACTED} with {REDACTED} and {REDACTED}"


def test_scrub_takes_detail_lines_and_secrets_out_of_any_text():
    text = scrub(f'violates check constraint "x"\nDETAIL:  Failing row contains (1, {SECRET}).\nok')

    assert text == 'violates check constraint "x"\nDETAIL: [row data removed]\nok'


def test_redact_secrets_hides_every_secret_key_and_leaves_the_rest():
    """Stripe payloads shown to staff: every `*secret*` key's value is redacted, at any depth; the original is kept."""
    payload = {
        "id": "evt_1",
        "data": {"object": {"id": "pi_1", "client_secret": SECRET, "amount": 500, "metadata": {"Webhook_Secret": "x"}}},
        "list": [{"client_secret": SECRET}, f"copied {SECRET}", 3, None, True],
    }

    shown = redact_secrets(payload)

    assert shown["data"]["object"] == {
        "id": "pi_1",
        "client_secret": REDACTED,
        "amount": 500,
        "metadata": {"Webhook_Secret": REDACTED},
    }
    assert shown["list"] == [{"client_secret": REDACTED}, f"copied {REDACTED}", 3, None, True]
    assert payload["data"]["object"]["client_secret"] == SECRET


@pytest.mark.django_db
def test_the_sites_log_lines_are_scrubbed_tracebacks_included():
    """The console handler settings.LOGGING configures formats with SafeFormatter: a traceback loses the row."""
    handler = next(h for h in logging.getLogger().handlers if h.name == "console")
    assert isinstance(handler.formatter, SafeFormatter)
    exc = row_error(amount=-5)
    try:
        raise exc
    except IntegrityError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed for %s", (SECRET,), sys.exc_info())

    line = handler.formatter.format(record)

    assert "CheckViolation" in line or "IntegrityError" in line
    assert SECRET not in line and "Failing row" not in line
    assert Payment.objects.count() == 0
