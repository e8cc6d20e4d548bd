"""
The storefront's payments API: one thin view per operation, with its input and
output serializers beside it. Views validate, call a service, serialize.
"""

import copy

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
)
from rest_framework import generics, serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import STRIPE_ERROR_CODES, merge_codes
from core.idempotency import PAYMENT_ID_METADATA_KEY
from payments import services
from payments.currencies import CURRENCIES, MAXIMUM_AMOUNT
from payments.models import Payment

IDEMPOTENCY_HEADER = "Idempotency-Key"
IDEMPOTENCY_KEY_MAX_LENGTH = 255
# Stripe's documented rules for metadata (docs.stripe.com/metadata), so that a
# request we accept is one Stripe accepts: up to 50 keys, keys up to 40
# characters and without square brackets, values strings of up to 500 characters.
METADATA_MAX_KEYS = 49  # 50 at Stripe, one kept for our payment_id
METADATA_KEY_MAX_LENGTH = 40
METADATA_VALUE_MAX_LENGTH = 500
METADATA_KEY_FORBIDDEN_CHARACTERS = "[]"

IDEMPOTENCY_PARAMETER = OpenApiParameter(
    IDEMPOTENCY_HEADER,
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=True,
    description=(
        "1 to 255 characters, UTF-8 (counted in characters, not bytes). "
        "The same key with the same body replays the first answer."
    ),
)


def header_text(value: str) -> str:
    """
    A header's value as the client wrote it in UTF-8. WSGI servers hand headers
    over decoded as latin-1 (PEP 3333), so "é" arrives as two characters "Ã©";
    its bytes are recovered and decoded as UTF-8. Raises UnicodeDecodeError
    when they are not UTF-8.
    """
    try:
        raw = value.encode("latin-1")
    except UnicodeEncodeError:
        # Not from a WSGI server: already text.
        return value
    return raw.decode("utf-8")


def idempotency_key_from(request) -> str:
    """The request's Idempotency-Key header as UTF-8 text, or a 400 naming the header."""
    try:
        key = header_text(request.headers.get(IDEMPOTENCY_HEADER, ""))
    except UnicodeDecodeError:
        raise ValidationError(
            {IDEMPOTENCY_HEADER: [serializers.ErrorDetail("The header must be UTF-8.", code="invalid")]}
        ) from None
    if not key:
        raise ValidationError({IDEMPOTENCY_HEADER: [serializers.ErrorDetail("This header is required.", "required")]})
    if len(key) > IDEMPOTENCY_KEY_MAX_LENGTH:
        raise ValidationError(
            {
                IDEMPOTENCY_HEADER: [
                    serializers.ErrorDetail(f"At most {IDEMPOTENCY_KEY_MAX_LENGTH} characters.", "max_length")
                ]
            }
        )
    if not key.isprintable():
        raise ValidationError(
            {IDEMPOTENCY_HEADER: [serializers.ErrorDetail("Only printable characters are allowed.", "invalid")]}
        )
    return key


class StrictIntegerField(serializers.IntegerField):
    """An integer that is a JSON integer: no strings, no floats, no booleans."""

    default_error_messages = {"invalid": "A whole number of minor units is required (e.g. 2000 for $20.00)."}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


@extend_schema_field(
    {
        "type": "object",
        "description": (
            f"Stripe's rules: at most {METADATA_MAX_KEYS} keys (Stripe's 50, one kept for our `payment_id`), "
            f"keys of 1 to {METADATA_KEY_MAX_LENGTH} characters without `[` or `]`, "
            f"values strings of at most {METADATA_VALUE_MAX_LENGTH} characters."
        ),
        "additionalProperties": {"type": "string", "maxLength": METADATA_VALUE_MAX_LENGTH},
        "maxProperties": METADATA_MAX_KEYS,
        "example": {"order_id": "1001"},
    }
)
class MetadataField(serializers.Field):
    """A flat map of strings to strings, within Stripe's documented rules."""

    default_error_messages = {
        "not_an_object": "Must be an object mapping strings to strings.",
        "too_many_keys": f"At most {METADATA_MAX_KEYS} keys.",
        "value_not_a_string": "The value of {name!r} must be a string.",
        "key_length": f"Keys must be 1 to {METADATA_KEY_MAX_LENGTH} characters.",
        "key_characters": "Keys may not contain square brackets ([ or ]): {name!r}.",
        "value_length": f"Values must be at most {METADATA_VALUE_MAX_LENGTH} characters.",
        "reserved_key": "{name!r} is reserved: paymentsite sets it to the payment's id.",
    }

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            self.fail("not_an_object")
        if len(data) > METADATA_MAX_KEYS:
            self.fail("too_many_keys")
        for key, value in data.items():
            if not isinstance(value, str):
                self.fail("value_not_a_string", name=key)
            if not key or len(key) > METADATA_KEY_MAX_LENGTH:
                self.fail("key_length")
            if any(character in key for character in METADATA_KEY_FORBIDDEN_CHARACTERS):
                self.fail("key_characters", name=key)
            if len(value) > METADATA_VALUE_MAX_LENGTH:
                self.fail("value_length")
            if key == PAYMENT_ID_METADATA_KEY:
                self.fail("reserved_key", name=key)
        return dict(data)

    def to_representation(self, value):
        return value


class CurrencyField(serializers.ChoiceField):
    """One of the currencies in payments.currencies (the schema's `CurrencyEnum`); upper case is taken too."""

    default_error_messages = {"invalid_choice": "Unsupported currency. Supported: {supported}."}

    def __init__(self, **kwargs):
        super().__init__(choices=[(code, code) for code in sorted(CURRENCIES)], **kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str) or data.lower() not in CURRENCIES:
            self.fail("invalid_choice", supported=", ".join(CURRENCIES))
        return data.lower()


class PaymentSerializer(serializers.ModelSerializer):
    metadata = MetadataField()
    # Empty when not given: a plain string, not the schema's `email` format.
    customer_email = serializers.CharField(read_only=True, help_text="The shopper's email; empty when not given.")

    class Meta:
        model = Payment
        fields = [
            "id",
            "stripe_payment_intent_id",
            "amount",
            "currency",
            "status",
            "capture_method",
            "amount_capturable",
            "amount_received",
            "capture_before",
            "refunded_amount",
            "order_reference",
            "customer_email",
            "customer_name",
            "card_brand",
            "card_last4",
            "description",
            "metadata",
            "failure_code",
            "failure_message",
            "dispute_status",
            "amount_lost_to_disputes",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_fields(self):
        # ModelSerializer builds its fields from the model's on every instance
        # (0.8 ms, the largest cost of an answer under py-spy); they depend on the
        # class alone, so they are built once per class and each instance gets a copy.
        built = type(self).__dict__.get("_built_fields")
        if built is None:
            built = super().get_fields()
            type(self)._built_fields = built
        return copy.deepcopy(built)


class PaymentCreatedSerializer(PaymentSerializer):
    client_secret = serializers.CharField(read_only=True)

    class Meta(PaymentSerializer.Meta):
        fields = PaymentSerializer.Meta.fields + ["client_secret"]
        read_only_fields = fields


SMALLEST_MINIMUM = min(currency.smallest_amount for currency in CURRENCIES.values())
MINIMUMS = ", ".join(f"{code} {CURRENCIES[code].smallest_amount}" for code in ("usd", "eur", "gbp", "jpy"))


@extend_schema_field({"type": "integer", "minimum": SMALLEST_MINIMUM, "maximum": MAXIMUM_AMOUNT})
class AmountField(StrictIntegerField):
    """
    A payment's amount. The minimum depends on the currency, so it is checked with
    it (PaymentCreateInputSerializer.validate, whose message names it); the schema
    states the smallest of them.
    """


class PaymentCreateInputSerializer(serializers.Serializer):
    amount = AmountField(
        max_value=MAXIMUM_AMOUNT,
        help_text=(
            "In the currency's minor unit (2000 is $20.00; 500 is ¥500). At least Stripe's minimum charge "
            f"for the currency (e.g. {MINIMUMS}), at most {MAXIMUM_AMOUNT}; three-decimal currencies "
            "(bhd, jod, kwd, omr, tnd) in multiples of 10."
        ),
    )
    currency = CurrencyField()
    description = serializers.CharField(max_length=1000, required=False, allow_blank=True, default="")
    metadata = MetadataField(required=False, default=dict)
    capture_method = serializers.ChoiceField(
        choices=Payment.CaptureMethod.choices,
        required=False,
        default=Payment.CaptureMethod.AUTOMATIC,
        help_text="`manual`: the card is only authorized; capture it with `capture/` (or void it with `cancel/`).",
    )
    order_reference = serializers.CharField(
        max_length=255, required=False, allow_blank=True, default="", help_text="Your own order id."
    )
    customer_email = serializers.EmailField(
        max_length=254, required=False, allow_blank=True, default="", help_text="Stripe emails the receipt there."
    )
    customer_name = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")

    def validate_order_reference(self, value: str) -> str:
        if not value.isprintable():
            raise ValidationError("Only printable characters are allowed.")
        return value

    def validate(self, data):
        currency = CURRENCIES[data["currency"]]
        amount = data["amount"]
        problem = currency.amount_problem(amount)
        if problem:
            if amount < currency.smallest_amount:
                code = "min_value"
            elif amount > MAXIMUM_AMOUNT:
                code = "max_value"
            else:
                code = "invalid_step"
            raise ValidationError({"amount": [serializers.ErrorDetail(problem, code=code)]})
        return data


CREATE_EXAMPLES = [
    OpenApiExample(
        "usd",
        summary="A $20.00 payment",
        value={"amount": 2000, "currency": "usd", "description": "Order 1001", "metadata": {"order_id": "1001"}},
        request_only=True,
    ),
    OpenApiExample(
        "jpy", summary="A ¥500 payment (no minor unit)", value={"amount": 500, "currency": "jpy"}, request_only=True
    ),
]


class PaymentListCreateView(generics.ListAPIView):
    """The signed-in user's payments, newest first; POST starts a new one."""

    serializer_class = PaymentSerializer
    throttle_scopes = {"POST": "payment_create"}
    error_codes = {
        "post": merge_codes(
            STRIPE_ERROR_CODES,
            {"409": ["idempotency_key_in_use"], "422": ["idempotency_key_reused"]},
        )
    }

    @extend_schema(
        parameters=[
            OpenApiParameter("status", OpenApiTypes.STR, enum=Payment.Status.values),
            OpenApiParameter("order_reference", OpenApiTypes.STR, description="Your order id, exactly."),
        ],
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        payments = Payment.objects.filter(user=self.request.user).order_by("-created_at", "-id")
        wanted = self.request.query_params.get("status")
        if wanted is not None:
            if wanted not in Payment.Status.values:
                raise ValidationError(
                    {
                        "status": [
                            serializers.ErrorDetail(f"One of: {', '.join(Payment.Status.values)}.", "invalid_choice")
                        ]
                    }
                )
            payments = payments.filter(status=wanted)
        order_reference = self.request.query_params.get("order_reference")
        if order_reference is not None:
            payments = payments.filter(order_reference=order_reference)
        return payments

    @extend_schema(
        request=PaymentCreateInputSerializer,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={201: PaymentCreatedSerializer},
        examples=CREATE_EXAMPLES,
    )
    def post(self, request):
        key = idempotency_key_from(request)
        data = PaymentCreateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        payment, replayed = services.payment_create(user=request.user, idempotency_key=key, **data.validated_data)
        response = Response(PaymentCreatedSerializer(payment).data, status=status.HTTP_201_CREATED)
        if replayed:
            response["Idempotent-Replayed"] = "true"
        return response


def own_payment(request, payment_id) -> Payment:
    """The signed-in user's payment; anyone else's is a 404, never a 403."""
    return generics.get_object_or_404(Payment, pk=payment_id, user=request.user)


class PaymentDetailView(APIView):
    @extend_schema(responses=PaymentSerializer)
    def get(self, request, payment_id):
        return Response(PaymentSerializer(own_payment(request, payment_id)).data)


class PaymentCancelView(APIView):
    throttle_scopes = {"POST": "payment_change"}
    error_codes = {"post": merge_codes(STRIPE_ERROR_CODES, {"409": ["invalid_state"]})}

    @extend_schema(
        request=None,
        responses={200: PaymentSerializer},
        description="Cancel a payment not yet paid; for an authorized one (`requires_capture`) a void: the "
        "authorization is released, nothing is captured or refunded. 409 once captured.",
    )
    def post(self, request, payment_id):
        payment = services.payment_cancel(payment=own_payment(request, payment_id))
        return Response(PaymentSerializer(payment).data)


class PaymentCaptureInputSerializer(serializers.Serializer):
    amount = StrictIntegerField(
        required=False,
        help_text="In minor units, at most `amount_capturable`; all of it when omitted. Stripe releases the rest.",
    )


class PaymentCaptureView(APIView):
    throttle_scopes = {"POST": "payment_change"}
    error_codes = {
        "post": merge_codes(
            STRIPE_ERROR_CODES,
            {
                "400": ["capture_amount_invalid"],
                "409": ["not_capturable", "capture_refused", "idempotency_key_in_use"],
                "422": ["idempotency_key_reused"],
            },
        )
    }

    @extend_schema(
        request=PaymentCaptureInputSerializer,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={200: PaymentSerializer},
        examples=[
            OpenApiExample("all", summary="Capture all that is authorized", value={}, request_only=True),
            OpenApiExample("part", summary="Capture $15.00 of it", value={"amount": 1500}, request_only=True),
        ],
        description=(
            "Capture an authorized payment (`requires_capture`, made with `capture_method: manual`): all of it, or "
            "`amount` of it; what is not captured is released to the shopper, never refunded. The answer's "
            "`amount_received` is what was captured. The same key replays the answer (`Idempotent-Replayed: true`)."
        ),
    )
    def post(self, request, payment_id):
        payment = own_payment(request, payment_id)
        key = idempotency_key_from(request)
        data = PaymentCaptureInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        payment, replayed = services.payment_capture(
            payment=payment, amount=data.validated_data.get("amount"), idempotency_key=key
        )
        response = Response(PaymentSerializer(payment).data)
        if replayed:
            response["Idempotent-Replayed"] = "true"
        return response
