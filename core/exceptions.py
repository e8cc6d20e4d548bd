"""
The domain's own errors. Each carries the HTTP status it answers with, mapped in
one place (core.api.exception_handler), so services never build responses.
"""


class DomainError(Exception):
    http_status = 400
    code = "invalid"

    def __init__(self, message: str, **extra):
        super().__init__(message)
        self.message = message
        # Machine-readable details for the answer (e.g. how much is left to refund).
        self.extra = extra


class IdempotencyKeyReused(DomainError):
    """The key was already used with a different request body."""

    http_status = 422
    code = "idempotency_key_reused"


class IdempotencyKeyInUse(DomainError):
    """A request with the same key is still being processed."""

    http_status = 409
    code = "idempotency_key_in_use"


class InvalidState(DomainError):
    """The object's state does not allow the operation (cancel a paid payment...)."""

    http_status = 409
    code = "invalid_state"


class RefundAmountInvalid(DomainError):
    """
    The refund's amount is not positive, or more than the payment's refundable
    amount (what a new refund may still take); then `extra["refundable_amount"]`
    says how much that is, in minor units.
    """

    http_status = 400
    code = "refund_amount_invalid"


class NotRefundable(DomainError):
    """The payment cannot be refunded (not paid, fully refunded, or its dispute was lost)."""

    http_status = 409
    code = "not_refundable"


class RefundRefused(DomainError):
    """Stripe definitely refused the refund: it is recorded `failed` and its amount is free again."""

    http_status = 409
    code = "refund_refused"


class NotCapturable(DomainError):
    """
    Only an authorized payment (`requires_capture`) can be captured: this one was
    captured, voided or expired, or another capture of it is under way
    (`extra["status"]` says what it is).
    """

    http_status = 409
    code = "not_capturable"


class CaptureAmountInvalid(DomainError):
    """The amount to capture is not positive, above `extra["amount_capturable"]`, or not in the currency's steps."""

    http_status = 400
    code = "capture_amount_invalid"


class CaptureRefused(DomainError):
    """Stripe definitely refused the capture while the payment is still authorized."""

    http_status = 409
    code = "capture_refused"
