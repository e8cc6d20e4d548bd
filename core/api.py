"""Where domain and Stripe errors become HTTP answers: the one mapping for the API."""

import logging

from django.http import JsonResponse
from django.views.defaults import page_not_found
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

import core.stripe_gateway as stripe_gateway
from core.exceptions import DomainError
from core.storable import unstorable_string_problem

logger = logging.getLogger(__name__)


class StrictJSONParser(JSONParser):
    """JSON whose every string PostgreSQL can store (see core.storable)."""

    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        problem = unstorable_string_problem(data)
        if problem:
            raise ParseError(f"JSON parse error - {problem}.")
        return data


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


# --- The errors, as the OpenAPI schema states them ----------------------------

ERROR_SCHEMA = {
    "type": "object",
    "description": "`detail` and `code` for an error; field names mapping to their messages for bad input.",
    "properties": {"detail": {"type": "string"}, "code": {"type": "string"}},
    "additionalProperties": True,
}
ERROR_DESCRIPTIONS = {
    "400": "Bad input: field errors, or `detail` and `code`.",
    "401": "Not signed in.",
    "403": "Signed in without the permission this call needs.",
    "404": "No such object among those this user may see, or no such page.",
    "409": "The object's state does not allow this, or a request with this Idempotency-Key is still running.",
    "422": "This Idempotency-Key was already used with a different request body.",
    "502": "Stripe failed or refused; retry with the same Idempotency-Key.",
    "503": "Stripe did not answer; retry with the same Idempotency-Key.",
}


def document_errors(result, generator, request, public):
    """
    drf-spectacular postprocessing hook: every operation documents the error
    answers `exception_handler` can give it, with one shared Error schema (a
    view's own description of an error answer is kept).
    """
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            codes = ["400", "401", "403"]
            parameters = {p.get("name") for p in operation.get("parameters", [])}
            if "{" in path or "page" in parameters:
                codes.append("404")
            if method == "post":
                codes += ["409", "502", "503"]
                if "Idempotency-Key" in parameters:
                    codes.append("422")
            responses = operation.setdefault("responses", {})
            for code in codes:
                responses.setdefault(code, {"description": ERROR_DESCRIPTIONS[code]})
            for code, response in responses.items():
                # A view may describe an error answer in its own words; its body is still an Error.
                if code[0] in "45" and "content" not in response:
                    response["content"] = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    return result


def api_not_found(request, exception=None):
    """A 404 under /api/ answers JSON, like every other API error; elsewhere Django's page."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found.", "code": "not_found"}, status=404)
    return page_not_found(request, exception)
