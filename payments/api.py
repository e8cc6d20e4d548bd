"""
The storefront's payments API: one thin view per operation, with its input and
output serializers beside it. Views validate, call a service, serialize.
"""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field, inline_serializer
from rest_framework import generics, serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from core.idempotency import PAYMENT_ID_METADATA_KEY
from payments import services
from payments.currencies import CURRENCIES, MAXIMUM_AMOUNT
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

    class Meta:
        model = Payment
        fields = [
            "id",
            "stripe_payment_intent_id",
            "amount",
            "currency",
            "status",
            "refunded_amount",
            "description",
            "metadata",
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
    amount = StrictIntegerField()
    currency = serializers.CharField(max_length=3)
    description = serializers.CharField(max_length=1000, required=False, allow_blank=True, default="")
    metadata = MetadataField(required=False, default=dict)

    def validate_currency(self, value: str) -> str:
        if value.lower() not in CURRENCIES:
            raise ValidationError(f"Unsupported currency. Supported: {', '.join(sorted(CURRENCIES))}.")
        return value.lower()

    def validate(self, data):
        currency = CURRENCIES[data["currency"]]
        if data["amount"] < currency.minimum:
            raise ValidationError(
                {"amount": [f"At least {currency.minimum} ({currency.format(currency.minimum)}) for {currency.code}."]}
            )
        if data["amount"] > MAXIMUM_AMOUNT:
            raise ValidationError({"amount": [f"At most {MAXIMUM_AMOUNT}."]})
        return data


class PaymentListCreateView(generics.ListAPIView):
    """The signed-in user's payments, newest first; POST starts a new one."""

    serializer_class = PaymentSerializer

    @extend_schema(
        parameters=[OpenApiParameter("status", OpenApiTypes.STR, enum=Payment.Status.values)],
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
    )
    def post(self, request, payment_id):
        payment = services.payment_cancel(payment=own_payment(request, payment_id))
        return Response(PaymentSerializer(payment).data)
