"""
Unbounded input is refused quickly with a clear 400 (JSON with a code on the API)
and one log line without a traceback: JSON nested deeper than anything we take,
NUL characters in query strings, paths and forms (the admin's filters and
searches included), and bodies over the size limit.
"""

import logging

import pytest
from django.contrib.auth.models import Permission

from core.storable import MAX_JSON_DEPTH, json_depth_exceeds, unstorable_string_problem
from payments.models import Payment
from payments.tests.factories import PaymentFactory, UserFactory, api_client_for
from refunds.models import Refund
from refunds.tests.factories import PaidPaymentFactory, RefundFactory

# Every API call that reads a JSON body.
JSON_WRITES = ["/api/payments/", "/api/payments/{id}/confirm/", "/api/payments/{id}/refunds/"]


@pytest.fixture
def api(staff, staff_api):
    """Staff allowed to refund, with a paid payment of their own: every JSON write reaches its parser."""
    staff.user_permissions.add(Permission.objects.get(codename="view_refund"))
    payment = PaidPaymentFactory(user=staff, status=Payment.Status.REQUIRES_PAYMENT_METHOD)
    staff_api.payment = payment
    return staff_api


def post_raw(api, path, body: str):
    return api.post(
        path.replace("{id}", str(api.payment.id)), body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="k"
    )


def nested(depth: int, kind: str) -> str:
    if kind == "array":
        return "[" * depth + "]" * depth
    if kind == "object":
        return '{"a":' * depth + "1" + "}" * depth
    # Deep inside an otherwise valid payment.
    return '{"amount": 2000, "currency": "usd", "metadata": {"k": ' + "[" * depth + "]" * depth + "}}"


def warnings_and_worse(caplog) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.levelno >= logging.WARNING]


@pytest.mark.django_db
@pytest.mark.parametrize("path", JSON_WRITES)
@pytest.mark.parametrize("kind", ["array", "object", "inside a payment"])
@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 300, 1000, 100_000])
def test_json_nested_too_deep_is_400_with_one_log_line(api, path, kind, depth, caplog):
    caplog.set_level(logging.INFO)

    response = post_raw(api, path, nested(depth, kind))

    assert response.status_code == 400
    assert response.json()["code"] == "too_deep"
    assert f"nested more than {MAX_JSON_DEPTH} levels" in response.json()["detail"]
    [logged] = warnings_and_worse(caplog)
    assert logged.exc_info is None and "Bad Request" in logged.getMessage()
    assert Payment.objects.count() == 1 and not Refund.objects.exists()


@pytest.mark.django_db
def test_json_as_deep_as_allowed_is_read(api):
    """At the limit the body is parsed, and answered on its merits."""
    response = post_raw(api, "/api/payments/", nested(MAX_JSON_DEPTH - 1, "object"))

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"  # a body that is no payment, but read


def test_the_storable_checks_walk_any_depth_without_recursion():
    deep = current = []
    for _ in range(200_000):
        current.append([])
        current = current[0]
    current.append("\x00")

    assert json_depth_exceeds(deep)
    assert not json_depth_exceeds([[["x"]]], limit=3)
    assert "NUL" in unstorable_string_problem(deep)


@pytest.mark.django_db
@pytest.mark.parametrize("path", JSON_WRITES)
def test_a_body_over_the_size_limit_is_413_json_with_one_log_line(api, path, settings, caplog):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    caplog.set_level(logging.INFO)

    response = post_raw(api, path, '{"note": "' + "x" * 20_000 + '"}')

    assert response.status_code == 413
    assert response["Content-Type"] == "application/json"
    assert response.json()["code"] == "request_too_large"
    [logged] = warnings_and_worse(caplog)
    assert logged.exc_info is None


# --- NUL characters in query strings, paths and forms ---------------------------------

ADMIN_LISTS = [
    "/admin/payments/payment/",
    "/admin/payments/dispute/",
    "/admin/refunds/refund/",
    "/admin/webhooks/webhookevent/",
    "/admin/auth/user/",
]
NUL_QUERIES = [
    "status=%00",
    "status__exact=a%00b",
    "currency=%00",
    "q=%00",
    "q=pi_%00",
    "q=a%40b%00.com",
    "created_at__gte=%00",
    "o=%00",
    "p=%00",
    "%00=1",
]


@pytest.fixture
def desk(client, superuser):
    PaymentFactory()
    RefundFactory()
    client.force_login(superuser)
    return client


@pytest.mark.django_db
@pytest.mark.parametrize("path", ADMIN_LISTS)
@pytest.mark.parametrize("query", NUL_QUERIES)
def test_a_nul_in_an_admin_filter_or_search_is_400_with_one_log_line(desk, path, query, caplog):
    caplog.set_level(logging.INFO)

    response = desk.get(f"{path}?{query}")

    assert response.status_code == 400
    assert "NUL" in response.content.decode()
    [logged] = warnings_and_worse(caplog)
    assert logged.exc_info is None


@pytest.mark.django_db
@pytest.mark.parametrize("path", ADMIN_LISTS)
def test_the_same_lists_without_a_nul_answer_as_before(desk, path):
    assert desk.get(f"{path}?q=nothing").status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path",
    ["/admin/payments/payment/%00/change/", "/admin/webhooks/webhookevent/1%00/change/", "/checkout/%00/"],
)
def test_a_nul_in_a_path_is_400(desk, path):
    assert desk.get(path).status_code == 400


@pytest.mark.django_db
def test_a_nul_in_an_admin_form_is_400(desk):
    response = desk.post(
        "/admin/webhooks/webhookevent/", {"action": "reprocess", "_selected_action": "1\x00", "index": "0"}
    )

    assert response.status_code == 400


@pytest.mark.django_db
@pytest.mark.parametrize("query", ["status=%00", "page=%00", "%00=x"])
def test_a_nul_in_an_api_query_string_is_400_json(owner_api, query):
    response = owner_api.get(f"/api/payments/?{query}")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_character"


@pytest.mark.django_db
def test_a_nul_in_the_sign_in_form_is_400_not_a_sign_in_attempt(client, fast_password_hashing):
    UserFactory(username="shop", password="right-password")

    response = client.post("/accounts/login/", {"username": "shop\x00", "password": "right-password"})

    assert response.status_code == 400
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_an_admin_form_over_the_size_limit_is_413_with_one_log_line(desk, settings, caplog):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    caplog.set_level(logging.INFO)

    response = desk.post("/admin/payments/payment/", {"q": "x" * 20_000})

    assert response.status_code == 413
    [logged] = warnings_and_worse(caplog)
    assert logged.exc_info is None


@pytest.mark.django_db
def test_the_api_answers_its_own_users_normally(owner, owner_api):
    """The checks refuse only what cannot be stored: ordinary queries pass through."""
    PaymentFactory(user=owner)

    assert api_client_for(owner).get("/api/payments/?status=succeeded").status_code == 200
    assert owner_api.get("/api/payments/?page=1").status_code == 200
