"""
The API against its own OpenAPI schema: schemathesis generates requests from
/api/schema/ (valid and invalid ones) and sends them to the site in process, as
a customer and as staff; no answer may be a 5xx or break the schema. Half the
requests name a real payment, paid at the local Stripe, instead of a random id,
so refunds and cancels get past the 404 and through the services.
"""

import collections
import contextlib
import random

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis import checks
from schemathesis.specs.openapi import checks as openapi_checks

from payments.tests.factories import api_client_for
from paymentsite.wsgi import application
from refunds.tests.factories import paid_payment_at_stripe

schema = schemathesis.openapi.from_wsgi("/api/schema/", application)

CHECKS = [
    checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
    openapi_checks.response_headers_conformance,
]
EXAMPLES_PER_OPERATION = 100

# Answers by role and status code, printed at the end of the module.
SENT: collections.Counter = collections.Counter()


@pytest.fixture(scope="module", autouse=True)
def report_requests_sent(request):
    yield
    by_role = collections.Counter()
    by_status = collections.Counter()
    for (role, status), count in SENT.items():
        by_role[role] += count
        by_status[status] += count
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(
            f"\nschemathesis sent {sum(SENT.values())} requests; by user {dict(by_role)}; "
            f"by status {dict(sorted(by_status.items()))}"
        )


@contextlib.contextmanager
def connection_kept_open():
    """
    The test's transaction lives on one database connection; the WSGI handler
    closes it after each request. Django's test client detaches that hook while
    it serves (and attaches it again after); so does this, around each request
    sent to the WSGI app directly.
    """
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


@pytest.fixture
def real_payment(owner_api, fake_stripe):
    return paid_payment_at_stripe(owner_api, amount=50_000)


def call(case, user, payment) -> None:
    if "payment_id" in (case.path_parameters or {}) and random.random() < 0.5:
        case.path_parameters["payment_id"] = str(payment.id)
    token = api_client_for(user)._credentials["HTTP_AUTHORIZATION"]
    with connection_kept_open():
        response = case.call_and_validate(headers={"Authorization": token}, checks=CHECKS)
    SENT[(user.username, response.status_code)] += 1


@pytest.mark.django_db
@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_as_a_customer(case, owner, real_payment):
    call(case, owner, real_payment)


@pytest.mark.django_db
@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_as_staff_allowed_to_refund(case, staff, real_payment):
    call(case, staff, real_payment)
