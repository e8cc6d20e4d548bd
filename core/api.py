"""
Where domain and Stripe errors become HTTP answers: the one mapping for the API.

Every error under /api/ is JSON `{"detail", "code", ...}` with a stable `code`:
DRF's own errors (401, 403, 404, 405, 406, 415, 429), bad input (400, each
field's errors with their own codes under `errors`), the domain's errors, Stripe's,
and what Django answers before a view runs (unknown paths, oversized bodies,
server errors). The OpenAPI schema lists each operation's codes (core.schema.AutoSchema,
from the tables below).
"""

import logging

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.http import Http404, HttpResponse, JsonResponse, QueryDict
from django.views.defaults import bad_request, page_not_found, permission_denied, server_error
from rest_framework import exceptions
from rest_framework.parsers import JSONParser
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle

import core.stripe_gateway as stripe_gateway
from core.exceptions import DomainError
from core.storable import MAX_JSON_DEPTH, json_depth_exceeds, unstorable_string_problem, unstorable_text_problem

logger = logging.getLogger(__name__)

API_PREFIX = "/api/"


def is_api_request(request) -> bool:
    return request.path.startswith(API_PREFIX)


# --- Reading bodies -----------------------------------------------------------


class StrictJSONParser(JSONParser):
    """JSON whose every string PostgreSQL can store (see core.storable), nested at most MAX_JSON_DEPTH deep."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            # The decoder itself gave up: far deeper than anything we take.
            data = None
            too_deep = True
        else:
            too_deep = json_depth_exceeds(data)
        if too_deep:
            raise exceptions.ParseError(
                f"JSON parse error - nested more than {MAX_JSON_DEPTH} levels deep.", code="too_deep"
            )
        problem = unstorable_string_problem(data)
        if problem:
            raise exceptions.ParseError(f"JSON parse error - {problem}.", code="invalid_character")
        return data


class RefuseUnstorableInputMiddleware:
    """
    A NUL character in the path, the query string or a form field reaches the
    database through admin filters and searches and is refused there (a 500).
    Refused up front instead: a 400 (JSON with a code under /api/), one log line.
    Form bodies too big or with too many fields are answered 413 / 400 the same way.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            problem = self._problem(request)
        except RequestDataTooBig:
            return error_answer(request, 413, "request_too_large", too_large_detail())
        except TooManyFieldsSent:
            return error_answer(request, 400, "too_many_fields", "The request has too many form fields.")
        if problem:
            return error_answer(request, 400, "invalid_character", f"The request is not valid: {problem}.")
        return self.get_response(request)

    @staticmethod
    def _problem(request) -> str | None:
        if problem := unstorable_text_problem(request.path):
            return f"the path: {problem}"
        for name, data in (("query string", request.GET), ("form", _form_fields(request))):
            for key, values in data.lists():
                for text in (key, *values):
                    if isinstance(text, str) and (problem := unstorable_text_problem(text)):
                        return f"the {name}: {problem}"
        return None


def _form_fields(request):
    # Only form bodies: reading a JSON body here would take it from the view.
    if request.method == "POST" and request.content_type in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        return request.POST
    return QueryDict()


def too_large_detail() -> str:
    return f"The request body is larger than the {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes accepted."


def error_answer(request, status: int, code: str, detail: str) -> HttpResponse:
    """An error answered before any view: JSON under /api/, plain text elsewhere."""
    if is_api_request(request):
        return JsonResponse({"detail": detail, "code": code}, status=status)
    return HttpResponse(detail, status=status, content_type="text/plain; charset=utf-8")


# --- Throttling the calls that move money or call Stripe ------------------------


class MoneyThrottle(SimpleRateThrottle):
    """
    Per user and per kind of call: a view names the scope of each method in
    `throttle_scopes` (e.g. `{"POST": "payment_create"}`); the rates are
    settings.API_THROTTLE_RATES ("N/second|minute|hour|day", or None: off),
    read at each request. The answer past the rate is a 429 with `Retry-After`.
    """

    def __init__(self):
        # The rate depends on the view; it is read in allow_request.
        self.rate = None

    def allow_request(self, request, view):
        self.scope = getattr(view, "throttle_scopes", {}).get(request.method)
        if not self.scope or not settings.API_THROTTLING:
            return True
        self.rate = settings.API_THROTTLE_RATES.get(self.scope)
        if not self.rate:
            return True
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)

    def get_cache_key(self, request, view):
        if not request.user or not request.user.is_authenticated:
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.user.pk}


# --- Errors raised in a view ---------------------------------------------------


def exception_handler(exc, context):
    if isinstance(exc, DomainError):
        return Response({"detail": exc.message, "code": exc.code, **exc.extra}, status=exc.http_status)
    if isinstance(exc, stripe_gateway.StripeError):
        return _stripe_error_response(exc)
    if isinstance(exc, RequestDataTooBig):
        return Response({"detail": too_large_detail(), "code": "request_too_large"}, status=413)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    # Imported here: DRF's views import this module while they load (DEFAULT_PARSER_CLASSES).
    from rest_framework.views import exception_handler as drf_exception_handler

    response = drf_exception_handler(exc, context)
    if response is None:
        # Not an API error: a bug, answered 500 by Django (JSON, see api_server_error).
        return None
    if isinstance(exc, exceptions.ValidationError):
        response.data = {
            "detail": "The request is not valid: see `errors`.",
            "code": "invalid",
            "errors": field_errors(exc.detail),
        }
    else:
        response.data = {"detail": str(exc.detail), "code": _single_code(exc)}
        if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
            response.data["retry_after"] = exc.wait
    return response


def _single_code(exc: exceptions.APIException) -> str:
    codes = exc.get_codes()
    return codes if isinstance(codes, str) else exc.default_code


def field_errors(detail, prefix: str = "") -> dict[str, list[dict[str, str]]]:
    """DRF's error detail as `{field: [{"message", "code"}, ...]}`; nested fields as `field.key`."""
    found: dict[str, list[dict[str, str]]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            for field, errors in field_errors(value, f"{prefix}.{key}" if prefix else str(key)).items():
                found.setdefault(field, []).extend(errors)
    elif isinstance(detail, list) and all(isinstance(item, exceptions.ErrorDetail) for item in detail):
        found[prefix or "non_field_errors"] = [{"message": str(item), "code": item.code} for item in detail]
    elif isinstance(detail, list):
        for index, value in enumerate(detail):
            for field, errors in field_errors(value, f"{prefix}.{index}" if prefix else str(index)).items():
                found.setdefault(field, []).extend(errors)
    else:
        found[prefix or "non_field_errors"] = [{"message": str(detail), "code": getattr(detail, "code", "invalid")}]
    return found


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
    # A definite refusal: the same request can never succeed, so no "retry" here.
    extra = {"stripe_code": exc.code} if exc.code else {}
    if exc.http_status == 402 or getattr(exc, "error_type", "") == "card_error":
        if getattr(exc, "decline_code", ""):
            extra["decline_code"] = exc.decline_code
        return Response({"detail": f"The card was declined: {exc.message}", "code": "card_declined", **extra}, 402)
    if exc.http_status in (400, 404):
        return Response(
            {"detail": f"Stripe refused the request: {exc.message}", "code": "stripe_invalid_request", **extra}, 400
        )
    # Refused for our own credentials or configuration (401, 403, no key): nothing the caller can change.
    return Response(
        {
            "detail": "Stripe refused our credentials or configuration; this is a problem on our side.",
            "code": "stripe_refused",
            **extra,
        },
        status=502,
    )


# --- Errors Django answers before any view ------------------------------------


def api_not_found(request, exception=None):
    """A 404 under /api/ answers JSON, like every other API error; elsewhere Django's page."""
    if is_api_request(request):
        return JsonResponse({"detail": "Not found.", "code": "not_found"}, status=404)
    return page_not_found(request, exception)


def api_bad_request(request, exception=None):
    if is_api_request(request):
        return JsonResponse({"detail": "Bad request.", "code": "bad_request"}, status=400)
    return bad_request(request, exception)


def api_permission_denied(request, exception=None):
    if is_api_request(request):
        return JsonResponse(
            {"detail": "You do not have permission to perform this action.", "code": "permission_denied"}, status=403
        )
    return permission_denied(request, exception)


def api_server_error(request):
    if is_api_request(request):
        return JsonResponse({"detail": "Server error.", "code": "server_error"}, status=500)
    return server_error(request)


# --- The errors, as the OpenAPI schema states them ----------------------------

ERROR_DESCRIPTIONS = {
    "400": "Bad input: `errors` maps each field to its errors (`message`, `code`); or `detail` and `code`.",
    "401": "Not signed in, or the token is not valid.",
    "402": "The card was declined (`decline_code` says why).",
    "403": "Signed in without the permission this call needs (or a session call without its CSRF token).",
    "404": "No such object among those this user may see, or no such page.",
    "405": "This method is not allowed here.",
    "406": "The API answers JSON only.",
    "409": "The object's state does not allow this, or a request with this Idempotency-Key is still running.",
    "413": "The request body is too large.",
    "415": "The body must be JSON (`Content-Type: application/json`).",
    "422": "This Idempotency-Key was already used with a different request body.",
    "429": "Too many such calls: wait the `Retry-After` seconds.",
    "502": "Stripe failed (`stripe_error`: retry with the same Idempotency-Key) or refused our configuration.",
    "503": "Stripe did not answer; retry with the same Idempotency-Key.",
}
ERROR_EXAMPLES = {
    "invalid": {
        "detail": "The request is not valid: see `errors`.",
        "code": "invalid",
        "errors": {"amount": [{"message": "A whole number of minor units is required.", "code": "invalid"}]},
    },
    "parse_error": {"detail": "JSON parse error - Expecting value: line 1 column 1 (char 0)", "code": "parse_error"},
    "not_authenticated": {"detail": "Authentication credentials were not provided.", "code": "not_authenticated"},
    "permission_denied": {"detail": "You do not have permission to perform this action.", "code": "permission_denied"},
    "not_found": {"detail": "Not found.", "code": "not_found"},
    "method_not_allowed": {"detail": 'Method "PUT" not allowed.', "code": "method_not_allowed"},
    "not_acceptable": {"detail": "Could not satisfy the request Accept header.", "code": "not_acceptable"},
    "request_too_large": {
        "detail": "The request body is larger than the 2621440 bytes accepted.",
        "code": "request_too_large",
    },
    "unsupported_media_type": {
        "detail": 'Unsupported media type "text/plain" in request.',
        "code": "unsupported_media_type",
    },
    "throttled": {
        "detail": "Request was throttled. Expected available in 42 seconds.",
        "code": "throttled",
        "retry_after": 42,
    },
    "card_declined": {
        "detail": "The card was declined: Your card was declined.",
        "code": "card_declined",
        "stripe_code": "card_declined",
        "decline_code": "generic_decline",
    },
    "stripe_error": {
        "detail": "Stripe failed to process the request. Retry with the same Idempotency-Key; "
        "it will not be charged twice.",
        "code": "stripe_error",
    },
    "stripe_unavailable": {
        "detail": "Stripe did not answer. Retry the request with the same Idempotency-Key; "
        "it will not be charged twice.",
        "code": "stripe_unavailable",
    },
}

# What any operation can answer, whatever it does.
COMMON_ERROR_CODES = {
    "400": ["invalid_character", "bad_request"],
    "401": ["not_authenticated", "authentication_failed"],
    "403": ["permission_denied"],
    "405": ["method_not_allowed"],
    "406": ["not_acceptable"],
}
# What an operation that takes a JSON body can answer too.
BODY_ERROR_CODES = {
    "400": ["invalid", "parse_error", "too_deep", "invalid_character"],
    "413": ["request_too_large"],
    "415": ["unsupported_media_type"],
}
# What an operation that calls Stripe can answer too (see _stripe_error_response).
STRIPE_ERROR_CODES = {
    "400": ["stripe_invalid_request"],
    "402": ["card_declined"],
    "502": ["stripe_error", "stripe_refused"],
    "503": ["stripe_unavailable"],
}


def merge_codes(*tables: dict[str, list[str]]) -> dict[str, list[str]]:
    merged: dict[str, list[str]] = {}
    for table in tables:
        for status, codes in table.items():
            merged.setdefault(str(status), [])
            merged[str(status)] += [code for code in codes if code not in merged[str(status)]]
    return merged


ERROR_SCHEMA = {
    "type": "object",
    "description": "Every error: `detail` for people, `code` for programs; `errors` for bad input.",
    "properties": {
        "detail": {"type": "string"},
        "code": {"type": "string"},
        "errors": {
            "type": "object",
            "description": "For `code: invalid`: each field (or `non_field_errors`) and its errors.",
            "additionalProperties": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"message": {"type": "string"}, "code": {"type": "string"}},
                    "required": ["message", "code"],
                },
            },
        },
    },
    "required": ["detail", "code"],
    "additionalProperties": True,
}


def document_errors(result, generator, request, public):
    """drf-spectacular postprocessing hook: the one Error schema every error answer refers to."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    return result
