"""Where domain and Stripe errors become HTTP answers: the one mapping for the API."""

import logging

from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from payments import stripe_gateway
from payments.exceptions import DomainError

logger = logging.getLogger(__name__)


def exception_handler(exc, context):
    if isinstance(exc, DomainError):
        return Response({"detail": exc.message, "code": exc.code, **exc.extra}, status=exc.http_status)
    if isinstance(exc, stripe_gateway.StripeError):
        return _stripe_error_response(exc)
    return drf_exception_handler(exc, context)


def _stripe_error_response(exc: stripe_gateway.StripeError) -> Response:
    # Only our own message and Stripe's error code are logged: never request data.
    logger.warning("Stripe call failed: %s (%s, code=%s)", type(exc).__name__, exc.http_status, exc.code)
    if isinstance(exc, stripe_gateway.StripeUnavailable):
        detail = "Stripe did not answer. Retry the request with the same Idempotency-Key; it will not be charged twice."
        return Response({"detail": detail, "code": "stripe_unavailable"}, status=503)
    if isinstance(exc, stripe_gateway.StripeServerError):
        detail = (
            "Stripe failed to process the request. Retry with the same Idempotency-Key; it will not be charged twice."
        )
        return Response({"detail": detail, "code": "stripe_error"}, status=502)
    return Response(
        {"detail": f"Stripe refused the request: {exc.message}", "code": exc.code or "stripe_refused"},
        status=502,
    )
