"""
The one module that talks to Stripe.

It builds the SDK client from settings (STRIPE_SECRET_KEY, STRIPE_API_BASE,
STRIPE_TIMEOUT in seconds), requires an idempotency key on every write (ValueError
without one), answers each Stripe object as a plain dict with amounts in the
currency's minor unit, and turns the SDK's errors into three exceptions the rest
of the project understands, all `StripeError`s:

- `StripeUnavailable`: no answer (connection refused or lost, timeout). Stripe
  may or may not have done the work; retrying with the same idempotency key is
  the only safe move.
- `StripeServerError`: Stripe answered 5xx or 429, or 409 (our earlier request
  with the key is still running). Also ambiguous, also retried with the same key.
- `StripeRefused`: a definite 4xx answer (bad request, declined card, a state
  that does not allow the call, an unknown id). Retrying the same request gets
  the same answer.

It sends what real Stripe expects (a PaymentIntent's description and receipt
email, a refund's reason...) with no switch for the local Stripe: the development
kit's layer in front of localstripe takes what localstripe refuses.

No other production module imports `stripe` (core/tests/test_house.py holds this);
only tests and the development kit use the SDK directly.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import stripe
from django.conf import settings


class StripeError(Exception):
    """Base of the errors a Stripe call can end in."""

    # Whether Stripe may have done the work: the caller must keep its row pending.
    ambiguous = True

    def __init__(self, message: str, *, code: str = "", http_status: int | None = None):
        super().__init__(message)
        self.message = message
        self.code = code or ""
        self.http_status = http_status


class StripeUnavailable(StripeError):
    """Stripe did not answer."""


class StripeServerError(StripeError):
    """Stripe answered with a server error or rate limit."""


class StripeRefused(StripeError):
    """Stripe definitely refused the request; nothing was done there."""

    ambiguous = False

    def __init__(
        self,
        message: str,
        *,
        code: str = "",
        http_status: int | None = None,
        decline_code: str = "",
        error_type: str = "",
        stripe_object: dict | None = None,
    ):
        super().__init__(message, code=code, http_status=http_status)
        self.decline_code = decline_code or ""
        self.error_type = error_type or ""
        # For a declined card Stripe also returns the PaymentIntent as it now is.
        self.stripe_object = stripe_object


# The API version every call is made in (the SDK's own): the shape of what Stripe answers.
API_VERSION: str = stripe.api_version


@functools.lru_cache(maxsize=8)
def _client(api_key: str, api_base: str, timeout: float) -> stripe.StripeClient:
    return stripe.StripeClient(
        api_key,
        base_addresses={"api": api_base},
        # Our own retry commands resend with the same key; the SDK retrying a
        # timed-out write inside a web request would only make the caller wait.
        max_network_retries=0,
        http_client=stripe.RequestsClient(timeout=timeout),
    )


def get_client() -> stripe.StripeClient:
    """The SDK client for the current settings (cached per key, base and timeout); StripeRefused when no key is set."""
    if not settings.STRIPE_SECRET_KEY:
        raise StripeRefused("Stripe is not configured: STRIPE_SECRET_KEY is empty.", code="not_configured")
    return _client(settings.STRIPE_SECRET_KEY, settings.STRIPE_API_BASE, settings.STRIPE_TIMEOUT)


class StripeAnswer(dict):
    """
    A Stripe object as a plain dict, with `stripe_time`: when the state it
    shows was true at Stripe, by Stripe's own clock (see `answered_at`), or
    None when the answer did not say. Anything that copies it (`{**answer}`)
    is a plain dict again, and falls back to the object's own `created`.
    """

    stripe_time: datetime | None = None


def _as_dict(obj: Any, *, headers=None) -> dict:
    # The SDK's objects hold nested objects; to_dict() turns the whole tree into plain dicts.
    answer = StripeAnswer(obj.to_dict() if hasattr(obj, "to_dict") else dict(obj))
    if headers is None:
        response = getattr(obj, "last_response", None)
        headers = getattr(response, "headers", None)
    answer.stripe_time = _stripe_time(answer, headers)
    return answer


def _stripe_time(answer: dict, headers) -> datetime | None:
    """
    When Stripe held the state `answer` shows: the `Date` of Stripe's HTTP
    answer; for an idempotent replay (`Idempotent-Replayed: true`: the first
    answer, sent again later) the object's `created`, the earliest it can be.
    """
    if not headers:
        return None
    # Header names are case-insensitive (HTTP/2 sends them in lower case).
    lowered = {str(name).lower(): value for name, value in dict(headers).items()}
    if str(lowered.get("idempotent-replayed", "")).lower() == "true":
        return _created(answer)
    try:
        date = parsedate_to_datetime(str(lowered.get("date") or ""))
    except (TypeError, ValueError, IndexError):
        return None
    return date.astimezone(UTC) if date.tzinfo else date.replace(tzinfo=UTC)


def _created(stripe_object: dict) -> datetime | None:
    created = stripe_object.get("created")
    if isinstance(created, int) and not isinstance(created, bool):
        return datetime.fromtimestamp(created, tz=UTC)
    return None


def answered_at(stripe_object: dict) -> datetime:
    """
    When the state a Stripe object shows was true at Stripe, on Stripe's clock
    only, never ours: for an object this module answered, the `Date` of Stripe's
    HTTP answer (for an idempotent replay, the object's `created`); otherwise
    the object's own `created` (Unix seconds), the earliest it can be; with
    neither, the start of the Unix epoch, older than any news. Used to order
    an answer against Stripe's events (their `created`); to the second, as
    both are.
    """
    stamped = getattr(stripe_object, "stripe_time", None)
    if stamped is not None:
        return stamped
    return _created(stripe_object) or datetime.fromtimestamp(0, tz=UTC)


def _call(method, *args, idempotency_key: str | None = None, write: bool, **params) -> dict:
    """One SDK call with `params`, answered as a dict; a write without an idempotency key is a ValueError."""
    if write and not idempotency_key:
        raise ValueError("Every write to Stripe needs an idempotency key.")
    options = {"idempotency_key": idempotency_key} if idempotency_key else {}
    with _translated_errors():
        return _as_dict(method(*args, params=params, options=options))


@contextlib.contextmanager
def _translated_errors() -> Iterator[None]:
    """Turn the SDK's errors raised inside the block into StripeUnavailable, StripeServerError or StripeRefused."""
    try:
        yield
    except stripe.APIConnectionError as exc:
        raise StripeUnavailable("Stripe could not be reached or did not answer in time.", code="unreachable") from exc
    except (stripe.APIError, stripe.RateLimitError) as exc:
        raise StripeServerError(
            f"Stripe answered with an error ({exc.http_status}).",
            code=getattr(exc, "code", "") or "",
            http_status=exc.http_status,
        ) from exc
    except stripe.StripeError as exc:
        if exc.http_status is None or exc.http_status >= 500:
            raise StripeServerError("Stripe failed to answer the request.", http_status=exc.http_status) from exc
        if exc.http_status == 409:
            # Our earlier request with this key is still running at Stripe: its
            # outcome is unknown yet, so this is no refusal.
            raise StripeServerError(
                "Stripe is still processing an earlier request with this key.",
                code=getattr(exc, "code", "") or "idempotency_key_in_use",
                http_status=409,
            ) from exc
        error = exc.error
        raise StripeRefused(
            exc.user_message or str(getattr(error, "message", "") or "Stripe refused the request."),
            code=getattr(exc, "code", "") or "",
            http_status=exc.http_status,
            decline_code=getattr(error, "decline_code", "") or "",
            error_type=getattr(error, "type", "") or "",
            stripe_object=(
                _as_dict(error.payment_intent, headers=exc.headers) if getattr(error, "payment_intent", None) else None
            ),
        ) from exc


# --- PaymentIntents ---------------------------------------------------------
#
# Each function below answers the Stripe object as a plain dict (its JSON: for a
# PaymentIntent `id`, `status`, `amount`, `amount_received`, `amount_capturable`,
# `capture_method`, `latest_charge`...), amounts in the currency's minor unit. Those
# that answer a PaymentIntent which may have a charge expand its `latest_charge`
# (the charge object instead of its id): the charge says what the card is
# (`payment_method_details.card.brand`, `.last4`) and until when an authorization
# may be captured (`.capture_before`). Each write takes an `idempotency_key`
# (ValueError without one): resending the call with the same key is always safe,
# Stripe answers its first result instead of doing the work twice. Each call
# raises StripeUnavailable or StripeServerError when the outcome is unknown
# (resend with the same key), StripeRefused when Stripe definitely said no.


def payment_intent_create(
    *,
    amount: int,
    currency: str,
    metadata: dict[str, str],
    idempotency_key: str,
    description: str = "",
    receipt_email: str = "",
    capture_method: str = "automatic",
    **extra: Any,
) -> dict:
    """
    Create a PaymentIntent of `amount` (minor units) in `currency` (lowercase ISO
    code) with `metadata`; `description` and `receipt_email` (Stripe emails the
    shopper a receipt there) are sent when not empty, `capture_method` when
    `manual` (authorize now, capture later: `payment_intent_capture`), `extra`
    (e.g. `payment_method`, `confirm`) as given. Answers the PaymentIntent. A
    write: `idempotency_key` required. Raises StripeUnavailable /
    StripeServerError (unknown outcome) or StripeRefused (bad parameters, an
    amount below Stripe's minimum; a declined card on `confirm=True`, the
    PaymentIntent then in `stripe_object`).
    """
    if description:
        extra["description"] = description
    if receipt_email:
        extra["receipt_email"] = receipt_email
    if capture_method == "manual":
        extra["capture_method"] = "manual"
    return _call(
        get_client().v1.payment_intents.create,
        idempotency_key=idempotency_key,
        write=True,
        amount=amount,
        currency=currency,
        metadata=metadata,
        **extra,
    )


def payment_intent_update(payment_intent_id: str, *, idempotency_key: str, **params: Any) -> dict:
    """
    Update a PaymentIntent with Stripe's parameters (e.g. `payment_method`, `description`);
    answers it. A write: `idempotency_key` required. Raises StripeUnavailable /
    StripeServerError, or StripeRefused (unknown id, a state that allows no update).
    """
    return _call(
        get_client().v1.payment_intents.update, payment_intent_id, idempotency_key=idempotency_key, write=True, **params
    )


LATEST_CHARGE = ["latest_charge"]


def payment_intent_confirm(payment_intent_id: str, *, idempotency_key: str) -> dict:
    """
    Confirm a PaymentIntent with the payment method it already has; answers it
    (`succeeded`, `requires_action`, `requires_capture`, `processing`), its
    `latest_charge` expanded. A write: `idempotency_key` required. Raises
    StripeUnavailable / StripeServerError, or StripeRefused (a declined card: code
    `card_declined` and its `decline_code`).
    """
    return _call(
        get_client().v1.payment_intents.confirm,
        payment_intent_id,
        idempotency_key=idempotency_key,
        write=True,
        expand=LATEST_CHARGE,
    )


def payment_intent_capture(payment_intent_id: str, *, idempotency_key: str, amount_to_capture: int | None) -> dict:
    """
    Capture an authorized PaymentIntent (`requires_capture`): `amount_to_capture`
    minor units, at most its `amount_capturable`, or all of it when None; Stripe
    releases the rest. Answers it (`succeeded`, `amount_received` = what was
    captured), its `latest_charge` expanded. A write: `idempotency_key` required.
    Raises StripeUnavailable / StripeServerError (unknown outcome: resend with the
    same key), or StripeRefused (not capturable: already captured, canceled,
    expired; an amount above what is capturable).
    """
    params: dict[str, Any] = {"expand": LATEST_CHARGE}
    if amount_to_capture is not None:
        params["amount_to_capture"] = amount_to_capture
    return _call(
        get_client().v1.payment_intents.capture,
        payment_intent_id,
        idempotency_key=idempotency_key,
        write=True,
        **params,
    )


def payment_intent_cancel(payment_intent_id: str, *, idempotency_key: str) -> dict:
    """
    Cancel a PaymentIntent not yet paid (a void when only authorized: nothing is
    captured, nothing refunded); answers it, its `latest_charge` expanded. A
    write: `idempotency_key` required. Raises StripeUnavailable /
    StripeServerError, or StripeRefused (already paid or canceled).
    """
    return _call(
        get_client().v1.payment_intents.cancel,
        payment_intent_id,
        idempotency_key=idempotency_key,
        write=True,
        expand=LATEST_CHARGE,
    )


def payment_intent_retrieve(payment_intent_id: str) -> dict:
    """
    The PaymentIntent as Stripe holds it now, its `latest_charge` expanded. Raises
    StripeUnavailable / StripeServerError, or StripeRefused (an unknown id: 404).
    """
    return _call(get_client().v1.payment_intents.retrieve, payment_intent_id, write=False, expand=LATEST_CHARGE)


# --- Refunds ----------------------------------------------------------------


def refund_create(
    *, payment_intent_id: str, amount: int, idempotency_key: str, metadata: dict[str, str], reason: str = ""
) -> dict:
    """
    Refund `amount` (minor units) of a PaymentIntent's charge, with `metadata` and,
    when given, Stripe's `reason` (`duplicate`, `fraudulent`,
    `requested_by_customer`). Answers the refund (`id`, `amount`, `reason`,
    `status`: `pending`, `requires_action`, `succeeded`, `failed` or `canceled`).
    A write: `idempotency_key` required. Raises StripeUnavailable /
    StripeServerError (unknown outcome), or StripeRefused (more than is left to
    refund, an unpaid PaymentIntent, a bad reason); the caller checks the amount first.
    """
    params: dict[str, Any] = {"payment_intent": payment_intent_id, "amount": amount, "metadata": metadata}
    if reason:
        params["reason"] = reason
    return _call(get_client().v1.refunds.create, idempotency_key=idempotency_key, write=True, **params)


def refund_retrieve(refund_id: str) -> dict:
    """
    The refund as Stripe holds it now. Raises StripeUnavailable /
    StripeServerError, or StripeRefused (an unknown id: 404).
    """
    return _call(get_client().v1.refunds.retrieve, refund_id, write=False)


def refund_list(*, payment_intent_id: str) -> list[dict]:
    """
    Every refund of a PaymentIntent (a list of refund dicts, newest first): pages
    of 100 are read one after the other until Stripe has no more. Raises
    StripeUnavailable / StripeServerError, or StripeRefused (an unknown id), also
    when a later page fails: never a partial list.
    """
    with _translated_errors():
        first_page = get_client().v1.refunds.list(params={"payment_intent": payment_intent_id, "limit": 100})
        return [_as_dict(refund) for refund in first_page.auto_paging_iter()]


# --- SetupIntents (the checkout page collects a card through one) ------------


def setup_intent_create(*, idempotency_key: str, **params: Any) -> dict:
    """
    Create a SetupIntent with Stripe's parameters (e.g. `metadata`); answers it,
    with its `client_secret`. A write: `idempotency_key` required. Raises
    StripeUnavailable / StripeServerError, or StripeRefused.
    """
    return _call(get_client().v1.setup_intents.create, idempotency_key=idempotency_key, write=True, **params)


def setup_intent_retrieve(setup_intent_id: str) -> dict:
    """
    The SetupIntent as Stripe holds it now (`status`, `payment_method`). Raises
    StripeUnavailable / StripeServerError, or StripeRefused (an unknown id: 404).
    """
    return _call(get_client().v1.setup_intents.retrieve, setup_intent_id, write=False)


# --- Webhooks ---------------------------------------------------------------


class InvalidWebhook(Exception):
    """The body is not a Stripe event signed with our webhook secret."""


WEBHOOK_TOLERANCE_SECONDS = 300


def webhook_verify(payload: bytes, signature_header: str) -> None:
    """
    Check `Stripe-Signature` against each secret in STRIPE_WEBHOOK_SECRET
    (comma-separated: during a rotation both the old and the new endpoint
    secret verify); its timestamp must be within Stripe's 300 s of now, in the
    past as in the future. Makes no network call. Raises InvalidWebhook.
    """
    secrets = [secret.strip() for secret in settings.STRIPE_WEBHOOK_SECRET.split(",") if secret.strip()]
    if not secrets:
        raise InvalidWebhook("STRIPE_WEBHOOK_SECRET is not set: webhooks are refused until it is.")
    if not signature_header:
        raise InvalidWebhook("Missing Stripe-Signature header.")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidWebhook("The body is not UTF-8.") from exc
    timestamp = _signature_timestamp(signature_header)
    # The SDK refuses only a timestamp too far in the past; one from the future is as suspect.
    if timestamp > time.time() + WEBHOOK_TOLERANCE_SECONDS:
        raise InvalidWebhook("Bad signature: the timestamp is in the future.")
    problem = "Bad signature."
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(text, signature_header, secret, tolerance=WEBHOOK_TOLERANCE_SECONDS)
            return
        except stripe.SignatureVerificationError as exc:
            problem = f"Bad signature: {exc.user_message or exc}"
        except (ValueError, IndexError) as exc:
            raise InvalidWebhook("Malformed Stripe-Signature header.") from exc
    raise InvalidWebhook(problem)


def _signature_timestamp(signature_header: str) -> int:
    """The `t=` of a Stripe-Signature header (Unix seconds); InvalidWebhook when there is none."""
    for item in signature_header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            try:
                return int(value)
            except ValueError:
                break
    raise InvalidWebhook("Malformed Stripe-Signature header.")


def webhook_sign(payload: str, *, secret: str, timestamp: int) -> str:
    """A `Stripe-Signature` header for `payload`, as Stripe makes them (tests and tools)."""
    return stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp=timestamp)


# --- Reading Stripe objects -----------------------------------------------------


def id_of(value) -> str | None:
    """
    The id (`str`) of a reference in a Stripe object, such as a refund's `payment_intent`,
    whether Stripe sent the id or the expanded object; None when it is empty.
    """
    if isinstance(value, dict):
        value = value.get("id")
    return str(value) if value else None


# --- Balance transactions and payouts (the books) ------------------------------
#
# Reads only: no idempotency key. Each raises StripeUnavailable / StripeServerError
# (try again later) or StripeRefused (an unknown id, a filter Stripe refuses).


def balance_transaction_list(**filters: Any) -> Iterator[dict]:
    """
    Every balance transaction matching Stripe's list `filters` (`payout`, `source`,
    `type`, `currency`, `created` as a dict of `gt`/`gte`/`lt`/`lte` Unix seconds),
    newest first, each a dict (`id`, `type`, `reporting_category`, `amount`, `fee`,
    `fee_details`, `net` in minor units, `currency`, `exchange_rate`, `source`
    expanded to its object, `available_on`, `created`), read in pages of 100 as the
    caller iterates. A failure on any page raises: the caller gets no silent gap.
    """
    params: dict[str, Any] = {**filters, "limit": 100, "expand": ["data.source"]}
    client = get_client()
    while True:
        # The same GET the SDK's list makes, its JSON read as plain dicts: at 100,000
        # transactions, building the SDK's objects would take most of a sync's time.
        with _translated_errors():
            page = client.raw_request("get", "/v1/balance_transactions", **params).data
        yield from page["data"]
        if not page.get("has_more") or not page["data"]:
            return
        params["starting_after"] = page["data"][-1]["id"]


def payout_retrieve(payout_id: str) -> dict:
    """
    The payout as Stripe holds it now (`id`, `amount`, `currency`, `status`,
    `automatic`, `arrival_date`, `created`, `reconciliation_status`). Raises
    StripeUnavailable / StripeServerError, or StripeRefused (an unknown id: 404).
    """
    return _call(get_client().v1.payouts.retrieve, payout_id, write=False)
