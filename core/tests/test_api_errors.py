"""
Every API error is JSON with a stable `code` (core.api): whatever the status, the
endpoint, and whether DRF, Django or our own code answered; and the OpenAPI schema
lists, per operation, the codes it can answer with, and real request examples.
"""

import uuid

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import RequestDataTooBig

from core import stripe_gateway
from core.api import exception_handler
from payments.models import Payment
from payments.tests.factories import PaymentFactory, UserFactory, api_client_for
from refunds.tests.factories import PaidPaymentFactory

PAYMENT = "00000000-0000-4000-8000-000000000000"
# Every POST of the API, with a body that passes validation (cancel and setup-intent read none).
WRITES = {
    "/api/payments/": {"amount": 2000, "currency": "usd"},
    "/api/payments/{id}/cancel/": {},
    "/api/payments/{id}/setup-intent/": {},
    "/api/payments/{id}/confirm/": {"payment_method": "pm_card_visa"},
    "/api/payments/{id}/refunds/": {"amount": 100},
}
READS = ["/api/payments/", "/api/payments/{id}/", "/api/payments/{id}/refunds/"]


def url(path, payment_id=PAYMENT):
    return path.replace("{id}", str(payment_id))


def assert_error(response, status, code):
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["code"] == code, body
    assert isinstance(body["detail"], str) and body["detail"]
    return body


@pytest.mark.django_db
@pytest.mark.parametrize("path", [*WRITES, *READS])
def test_anonymous_gets_401_not_authenticated(client, path):
    method = client.post if path in WRITES else client.get

    assert_error(method(url(path), content_type="application/json"), 401, "not_authenticated")


@pytest.mark.django_db
@pytest.mark.parametrize("path", [*WRITES, *READS])
def test_a_bad_token_gets_401_authentication_failed(path):
    api = api_client_for(None)
    api.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    method = api.post if path in WRITES else api.get

    assert_error(method(url(path), {}, format="json"), 401, "authentication_failed")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path",
    [
        "/api/payments/not-a-uuid/",
        "/api/payments/not-a-uuid/refunds/",
        "/api/payments/not-a-uuid/cancel/",
        "/api/nothing-here/",
        "/api/payments/00000000-0000-4000-8000-000000000000/nothing/",
    ],
)
def test_paths_that_match_no_route_are_404_json(owner_api, path):
    assert_error(owner_api.get(path), 404, "not_found")
    assert_error(owner_api.post(path, {}, format="json"), 404, "not_found")


@pytest.mark.django_db
@pytest.mark.parametrize("path", [p for p in [*READS, *WRITES] if "{id}" in p])
def test_an_unknown_payment_is_404_json(staff_api, path):
    method = staff_api.post if path in WRITES else staff_api.get

    assert_error(method(url(path, uuid.uuid4()), WRITES.get(path, {}), HTTP_IDEMPOTENCY_KEY="k"), 404, "not_found")


@pytest.mark.django_db
def test_a_page_past_the_end_is_404_json(owner_api):
    assert_error(owner_api.get("/api/payments/", {"page": 99}), 404, "not_found")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "method, path",
    [
        ("put", "/api/payments/"),
        ("delete", "/api/payments/"),
        ("patch", "/api/payments/{id}/"),
        ("post", "/api/payments/{id}/"),
        ("get", "/api/payments/{id}/cancel/"),
        ("get", "/api/payments/{id}/confirm/"),
        ("delete", "/api/payments/{id}/refunds/"),
    ],
)
def test_a_method_not_allowed_is_405_json(owner_api, owner, method, path):
    payment = PaymentFactory(user=owner)

    assert_error(getattr(owner_api, method)(url(path, payment.id), {}, format="json"), 405, "method_not_allowed")


@pytest.mark.django_db
@pytest.mark.parametrize("path", [path for path, body in WRITES.items() if body])
def test_a_body_that_is_not_json_is_415_json(staff_api, staff, path):
    payment = PaidPaymentFactory(user=staff)

    response = staff_api.post(
        url(path, payment.id), "amount=2000", content_type="application/x-www-form-urlencoded", HTTP_IDEMPOTENCY_KEY="k"
    )

    assert_error(response, 415, "unsupported_media_type")


@pytest.mark.django_db
@pytest.mark.parametrize("path", READS)
def test_asking_for_anything_but_json_is_406_json(owner_api, owner, path):
    """The API answers JSON only: no HTML page, not even for a browser's Accept header."""
    payment = PaymentFactory(user=owner)

    response = owner_api.get(url(path, payment.id), HTTP_ACCEPT="text/html")

    assert_error(response, 406, "not_acceptable")


@pytest.mark.django_db
def test_a_staff_member_without_the_refund_permission_gets_403_json(owner, fake_stripe):
    clerk = UserFactory(username="clerk", is_staff=True)
    clerk.user_permissions.add(Permission.objects.get(codename="view_refund"))
    payment = PaidPaymentFactory(user=owner)

    response = api_client_for(clerk).post(url("/api/payments/{id}/refunds/", payment.id), {}, HTTP_IDEMPOTENCY_KEY="k")

    assert_error(response, 403, "permission_denied")


@pytest.mark.django_db
def test_a_session_write_without_csrf_is_403_json(owner):
    from rest_framework.test import APIClient

    browser = APIClient(enforce_csrf_checks=True)
    browser.force_login(owner)

    response = browser.post("/api/payments/", WRITES["/api/payments/"], format="json", HTTP_IDEMPOTENCY_KEY="k")

    assert_error(response, 403, "permission_denied")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path, body, field, code",
    [
        ("/api/payments/", {"currency": "usd"}, "amount", "required"),
        (
            "/api/payments/",
            {"amount": 2000, "currency": "usd", "description": 5 * "x" * 201},
            "description",
            "max_length",
        ),
        ("/api/payments/{id}/confirm/", {"payment_method": "card_1"}, "payment_method", "invalid"),
        ("/api/payments/{id}/confirm/", {}, "payment_method", "required"),
        ("/api/payments/{id}/refunds/", {"amount": 0}, "amount", "min_value"),
        ("/api/payments/{id}/refunds/", {"reason": "because"}, "reason", "invalid_choice"),
        ("/api/payments/{id}/refunds/", {"note": "x" * 5001}, "note", "max_length"),
    ],
)
def test_field_errors_are_under_errors_each_with_a_code(staff_api, staff, path, body, field, code):
    payment = PaidPaymentFactory(user=staff)

    response = staff_api.post(url(path, payment.id), body, format="json", HTTP_IDEMPOTENCY_KEY="k")

    answer = assert_error(response, 400, "invalid")
    assert set(answer) == {"detail", "code", "errors"}
    assert [error["code"] for error in answer["errors"][field]] == [code]
    assert all(set(error) == {"message", "code"} for errors in answer["errors"].values() for error in errors)


@pytest.mark.django_db
def test_a_bad_filter_is_a_field_error_with_a_code(owner_api):
    answer = assert_error(owner_api.get("/api/payments/", {"status": "paid"}), 400, "invalid")

    assert answer["errors"]["status"][0]["code"] == "invalid_choice"


@pytest.mark.django_db
def test_an_unexpected_failure_is_500_json_without_details(owner_api, owner, monkeypatch):
    """A bug answers 500 JSON with a code (Django's handler500 under /api/), and shows nothing of it."""
    payment = PaymentFactory(user=owner)
    owner_api.raise_request_exception = False

    def broken(**kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr("payments.services.payment_cancel", broken)
    response = owner_api.post(url("/api/payments/{id}/cancel/", payment.id))

    assert_error(response, 500, "server_error")
    assert "secret internals" not in response.content.decode()


@pytest.mark.django_db
def test_a_request_django_refuses_before_any_view_is_400_json(owner_api):
    """Here a Host header the site does not serve: Django's own 400 (handler400) is JSON under /api/."""
    response = owner_api.get("/api/payments/", HTTP_HOST="evil.example")

    assert_error(response, 400, "bad_request")


def test_outside_the_api_django_keeps_its_pages(client):
    response = client.get("/no-such-page/")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


# --- Stripe's answers ---------------------------------------------------------------


def stripe_answer(exc):
    return exception_handler(exc, {})


@pytest.mark.parametrize(
    "exc, status, code",
    [
        (stripe_gateway.StripeUnavailable("no answer"), 503, "stripe_unavailable"),
        (stripe_gateway.StripeServerError("boom", http_status=500), 502, "stripe_error"),
        (
            stripe_gateway.StripeRefused(
                "Your card was declined.",
                code="card_declined",
                http_status=402,
                error_type="card_error",
                decline_code="insufficient_funds",
            ),
            402,
            "card_declined",
        ),
        (
            stripe_gateway.StripeRefused(
                "Invalid metadata", code="parameter_invalid", http_status=400, error_type="invalid_request_error"
            ),
            400,
            "stripe_invalid_request",
        ),
        (
            stripe_gateway.StripeRefused(
                "No such payment_method", code="resource_missing", http_status=404, error_type="invalid_request_error"
            ),
            400,
            "stripe_invalid_request",
        ),
        (stripe_gateway.StripeRefused("Invalid API Key", http_status=401), 502, "stripe_refused"),
        (stripe_gateway.StripeRefused("not configured", code="not_configured"), 502, "stripe_refused"),
    ],
)
def test_stripe_errors_map_to_one_status_and_code_each(exc, status, code):
    """A definite refusal of the caller's request is 400 or 402 (never a "retry" 502); only failures are 5xx."""
    response = stripe_answer(exc)

    assert (response.status_code, response.data["code"]) == (status, code)
    if status in (400, 402):
        assert "retry" not in response.data["detail"].lower()
        assert response.data["stripe_code"] == exc.code
    if code == "card_declined":
        assert response.data["decline_code"] == "insufficient_funds"


def test_an_oversized_body_read_in_a_view_is_413_json():
    response = exception_handler(RequestDataTooBig("too big"), {})

    assert (response.status_code, response.data["code"]) == (413, "request_too_large")


# --- The schema -------------------------------------------------------------------------


@pytest.fixture
def schema(client, db):
    return client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()


def error_codes(operation, status) -> list[str]:
    content = operation["responses"][status]["content"]["application/json"]
    return content["schema"]["allOf"][1]["properties"]["code"]["enum"]


def test_every_operation_lists_its_error_codes(schema):
    operations = [
        (path, method, operation)
        for path, methods in schema["paths"].items()
        if path.startswith("/api/") and path != "/api/schema/"
        for method, operation in methods.items()
    ]
    assert len(operations) >= 8
    for path, method, operation in operations:
        errors = {status for status in operation["responses"] if status[0] in "45"}
        assert {"400", "401", "403", "405", "406"} <= errors, (path, method)
        for status in errors:
            content = operation["responses"][status]["content"]["application/json"]
            assert content["schema"]["allOf"][0] == {"$ref": "#/components/schemas/Error"}, (path, method, status)
            assert error_codes(operation, status), (path, method, status)
        if "{payment_id}" in path:
            assert "not_found" in error_codes(operation, "404")
        if "requestBody" in operation:
            assert {"invalid", "parse_error", "too_deep"} <= set(error_codes(operation, "400"))
            assert error_codes(operation, "413") == ["request_too_large"]
            assert error_codes(operation, "415") == ["unsupported_media_type"]
        if method == "post":
            assert error_codes(operation, "429") == ["throttled"]
            assert "Retry-After" in operation["responses"]["429"]["headers"]
    assert schema["components"]["schemas"]["Error"]["required"] == ["detail", "code"]


def test_the_create_operation_lists_its_own_codes_and_a_real_example(schema):
    create = schema["paths"]["/api/payments/"]["post"]

    assert error_codes(create, "409") == ["idempotency_key_in_use"]
    assert error_codes(create, "422") == ["idempotency_key_reused"]
    assert "stripe_invalid_request" in error_codes(create, "400")
    assert error_codes(create, "402") == ["card_declined"]
    assert error_codes(create, "503") == ["stripe_unavailable"]
    examples = create["requestBody"]["content"]["application/json"]["examples"]
    assert {"amount": 2000, "currency": "usd", "description": "Order 1001", "metadata": {"order_id": "1001"}} in [
        example["value"] for example in examples.values()
    ]


def test_the_create_input_states_the_amount_limits_and_the_currencies(schema):
    from payments.currencies import CURRENCIES, MAXIMUM_AMOUNT

    create_input = schema["components"]["schemas"]["PaymentCreateInput"]["properties"]
    amount = create_input["amount"]
    assert amount["maximum"] == MAXIMUM_AMOUNT
    assert amount["minimum"] == min(currency.minimum for currency in CURRENCIES.values())
    assert "krw 700" in amount["description"] and "usd 50" in amount["description"]
    currency = schema["components"]["schemas"][create_input["currency"]["$ref"].rsplit("/", 1)[1]]
    assert currency["enum"] == list(CURRENCIES)
    assert create_input["metadata"]["maxProperties"] == 49


def test_every_write_has_a_valid_request_example(schema, owner_api, staff, staff_api, fake_stripe):
    """The examples are requests that work: each one, sent, is accepted (nothing 4xx for its body)."""
    for path, methods in schema["paths"].items():
        operation = methods.get("post")
        if not operation or "requestBody" not in operation:
            continue
        examples = operation["requestBody"]["content"]["application/json"].get("examples")
        assert examples, path
        for example in examples.values():
            payment = PaidPaymentFactory(user=staff, status=Payment.Status.SUCCEEDED)
            response = staff_api.post(
                path.replace("{payment_id}", str(payment.id)),
                example["value"],
                format="json",
                HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()),
            )
            if response.status_code == 400:
                assert response.json()["code"] != "invalid", (path, example, response.json())
