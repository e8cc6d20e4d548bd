"""
The storefront's payments API: one thin view per operation, with its input and
output serializers beside it. Views validate, call a service, serialize.
"""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import generics, serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from core.idempotency import PAYMENT_ID_METADATA_KEY
from payments import services
from payments.currencies import CURRENCIES
from payments.models import Payment

IDEMPOTENCY_HEADER = "Idempotency-Key"
IDEMPOTENCY_KEY_MAX_LENGTH = 255
# Stripe's own limits on metadata, so a request we accept is one Stripe accepts.
METADATA_MAX_KEYS = 49  # 50 at Stripe, one kept for our payment_id
METADATA_KEY_MAX_LENGTH = 40
METADATA_VALUE_MAX_LENGTH = 500

IDEMPOTENCY_PARAMETER = OpenApiParameter(
    IDEMPOTENCY_HEADER,
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=True,
    description="1 to 255 characters. The same key with the same body replays the first answer.",
)


def idempotency_key_from(request) -> str:
    """The request's Idempotency-Key header, or a 400 naming the header."""
    key = request.headers.get(IDEMPOTENCY_HEADER, "")
    if not key:
        raise ValidationError({IDEMPOTENCY_HEADER: ["This header is required."]})
    if len(key) > IDEMPOTENCY_KEY_MAX_LENGTH:
        raise ValidationError({IDEMPOTENCY_HEADER: [f"At most {IDEMPOTENCY_KEY_MAX_LENGTH} characters."]})
    if not key.isprintable():
        raise ValidationError({IDEMPOTENCY_HEADER: ["Only printable characters are allowed."]})
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
        "additionalProperties": {"type": "string", "maxLength": METADATA_VALUE_MAX_LENGTH},
        "maxProperties": METADATA_MAX_KEYS,
    }
)
class MetadataField(serializers.Field):
    """A flat map of strings to strings, within Stripe's limits."""

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise ValidationError("Must be an object mapping strings to strings.")
        if len(data) > METADATA_MAX_KEYS:
            raise ValidationError(f"At most {METADATA_MAX_KEYS} keys.")
        for key, value in data.items():
            if not isinstance(value, str):
                raise ValidationError(f"The value of {key!r} must be a string.")
            if not key or len(key) > METADATA_KEY_MAX_LENGTH:
                raise ValidationError(f"Keys must be 1 to {METADATA_KEY_MAX_LENGTH} characters.")
            if len(value) > METADATA_VALUE_MAX_LENGTH:
                raise ValidationError(f"Values must be at most {METADATA_VALUE_MAX_LENGTH} characters.")
            if key == PAYMENT_ID_METADATA_KEY:
                raise ValidationError(f"{key!r} is reserved: paymentsite sets it to the payment's id.")
        return dict(data)

    def to_representation(self, value):
        return value


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
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class PaymentCreatedSerializer(PaymentSerializer):
    client_secret = serializers.CharField(read_only=True)

    class Meta(PaymentSerializer.Meta):
        fields = PaymentSerializer.Meta.fields + ["client_secret"]
        read_only_fields = fields


class PaymentCreateInputSerializer(serializers.Serializer):
    amount = StrictIntegerField(help_text="In the currency's minor unit (2000 for $20.00, 500 for ¥500).")
    currency = serializers.CharField(max_length=3, help_text="Any currency Stripe charges in (ISO code).")
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

    def validate_currency(self, value: str) -> str:
        if value.lower() not in CURRENCIES:
            raise ValidationError(
                "Unsupported currency: use the lowercase ISO code of a currency Stripe charges in (e.g. usd, eur, jpy)."
            )
        return value.lower()

    def validate_order_reference(self, value: str) -> str:
        if not value.isprintable():
            raise ValidationError("Only printable characters are allowed.")
        return value

    def validate(self, data):
        problem = CURRENCIES[data["currency"]].amount_problem(data["amount"])
        if problem:
            raise ValidationError({"amount": [problem]})
        return data


class PaymentListCreateView(generics.ListAPIView):
    """The signed-in user's payments, newest first; POST starts a new one."""

    serializer_class = PaymentSerializer

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
                raise ValidationError({"status": [f"One of: {', '.join(Payment.Status.values)}."]})
            payments = payments.filter(status=wanted)
        order_reference = self.request.query_params.get("order_reference")
        if order_reference is not None:
            payments = payments.filter(order_reference=order_reference)
        return payments

    @extend_schema(
        request=PaymentCreateInputSerializer,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={201: PaymentCreatedSerializer},
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
    @extend_schema(
        request=None,
        responses={200: PaymentSerializer, 409: inline_serializer("Conflict", {"detail": serializers.CharField()})},
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
    @extend_schema(
        request=PaymentCaptureInputSerializer,
        parameters=[IDEMPOTENCY_PARAMETER],
        responses={
            200: PaymentSerializer,
            400: OpenApiResponse(description="Bad input, or an amount above what is capturable (`amount_capturable`)."),
            404: OpenApiResponse(description="No such payment of yours."),
            409: OpenApiResponse(
                description="Not authorized (code `not_capturable`: captured, voided, expired, or another capture "
                "under way), Stripe refused (`capture_refused`), or this key's capture is still running."
            ),
        },
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
