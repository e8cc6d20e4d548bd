"""
The API against its own OpenAPI schema: schemathesis generates requests from
/api/schema/ (valid and invalid ones) and sends them to the site in process, as
a customer and as staff; no answer may be a 5xx or break the schema.
"""

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis import checks
from schemathesis.specs.openapi import checks as openapi_checks

from paymentsite.wsgi import application

schema = schemathesis.openapi.from_wsgi("/api/schema/", application)

CHECKS = [
    checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
    openapi_checks.response_headers_conformance,
]


@pytest.fixture
def keep_the_test_connection():
    """
    The test's transaction lives on one database connection; the WSGI handler
    closes it after each request. Django's test client detaches that hook while
    it serves; so does this, for requests sent to the WSGI app directly.
    """
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.mark.django_db
@schema.parametrize()
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_as_a_customer(case, owner, fake_stripe, keep_the_test_connection):
    from conftest import api_client_for

    token = api_client_for(owner)._credentials["HTTP_AUTHORIZATION"]
    case.call_and_validate(headers={"Authorization": token}, checks=CHECKS)
