"""
The refunds API: staff issue refunds, owners and staff list them. Thin views over
refunds.services; errors map to HTTP in core.api.

A refund's `note` and who made it (`created_by`) are the support desk's: only
staff holding `refunds.view_refund` see them, and only they see the refunds of
payments that are not their own.
"""

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, extend_schema_serializer
from rest_framework import generics, serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from core.api import STRIPE_ERROR_CODES, merge_codes
from payments.api import IDEMPOTENCY_PARAMETER, StrictIntegerField, idempotency_key_from
from payments.models import Payment
from refunds import services
from refunds.models import Refund

REFUND_PERMISSION = "refunds.add_refund"
VIEW_REFUND_PERMISSION = "refunds.view_refund"


class RefundSerializer(serializers.ModelSerializer):
    """A refund as its payment's owner may see it: no internal note, not who made it."""

    class Meta:
        model = Refund
        fields = ["id", "payment", "stripe_refund_id", "amount", "status", "reason", "failure_reason", "created_at"]
        read_only_fields = fields


class StaffRefundSerializer(RefundSerializer):
    """A refund as the support desk sees it: with its internal note and who made it."""

    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta(RefundSerializer.Meta):
        fields = RefundSerializer.Meta.fields + ["note", "created_by"]
        read_only_fields = fields


def sees_staff_notes(user) -> bool:
    return bool(user.is_staff and user.has_perm(VIEW_REFUND_PERMISSION))


def refund_serializer_class(user) -> type[RefundSerializer]:
    return StaffRefundSerializer if sees_staff_notes(user) else RefundSerializer


@extend_schema_serializer(component_name="Refund")
class RefundAnswerSerializer(RefundSerializer):
    """
    The refund as the OpenAPI schema states it: both shapes in one, the staff-only
    fields optional (drf-spectacular makes every read-only field required, so
    these two are declared writable; this serializer only describes answers).
    """

    note = serializers.CharField(required=False, help_text="Staff holding refunds.view_refund only.")
    created_by = serializers.CharField(
        required=False,
        allow_null=True,
        help_text="Who made it (a username; null when made in Stripe). Staff holding refunds.view_refund only.",
    )

    class Meta(RefundSerializer.Meta):
        fields = RefundSerializer.Meta.fields + ["note", "created_by"]
        read_only_fields = RefundSerializer.Meta.fields


class RefundCreateInputSerializer(serializers.Serializer):
    amount = StrictIntegerField(
        min_value=1, required=False, help_text="In minor units; all that is left to refund when omitted."
    )
    reason = serializers.ChoiceField(choices=Refund.Reason.choices, required=False, allow_blank=True, default="")
    note = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=5000,
        help_text="Internal: seen by staff holding refunds.view_refund only, never by the payment's owner.",
    )


def can_refund(user) -> bool:
    return user.is_staff and user.has_perm(REFUND_PERMISSION)


def visible_payment(request, payment_id) -> Payment:
    """
    The payment if the user may see its refunds (its owner, or staff holding
    refunds.view_refund); a 404 otherwise, never a 403.
    """
    # One lookup among what the user may see: someone else's payment answers
    # exactly like one that does not exist.
    visible = Payment.objects.all() if sees_staff_notes(request.user) else Payment.objects.filter(user=request.user)
    return generics.get_object_or_404(visible, pk=payment_id)


REFUND_EXAMPLES = [
    OpenApiExample(
        "part",
        summary="Refund $5.00 of it",
        value={"amount": 500, "reason": "requested_by_customer", "note": "Ticket 1234: one item returned"},
        request_only=True,
    ),
    OpenApiExample("all", summary="Refund all that is left", value={}, request_only=True),
]


class PaymentRefundsView(generics.ListAPIView):
    """
    A payment's refunds, newest first, for its owner (without the staff's notes)
    or staff holding refunds.view_refund; POST (staff allowed to refund) issues one.
    """

    throttle_scopes = {"POST": "refund_create"}
    error_codes = {
        "post": merge_codes(
            {"400": ["refund_amount_invalid"]},
            STRIPE_ERROR_CODES,
            {"409": ["not_refundable", "idempotency_key_in_use", "refund_refused"], "422": ["idempotency_key_reused"]},
        )
    }

    def get_serializer_class(self):
        if getattr(self, "swagger_fake_view", False):  # the OpenAPI schema
            return RefundAnswerSerializer
        return refund_serializer_class(self.request.user)

    def get_queryset(self):
        payment = visible_payment(self.request, self.kwargs["payment_id"])
        return payment.refunds.select_related("created_by").order_by("-created_at", "-id")

    @extend_schema(
        request=RefundCreateInputSerializer,
        parameters=[IDEMPOTENCY_PARAMETER],
        examples=REFUND_EXAMPLES,
        # Error bodies: the shared Error schema, with their codes (core.api.AutoSchema).
        responses={
            201: RefundAnswerSerializer,
            400: OpenApiResponse(description="Bad input, or more than is left to refund."),
            403: OpenApiResponse(description="Not staff holding refunds.add_refund."),
            404: OpenApiResponse(description="No such payment."),
            409: OpenApiResponse(
                description="Not refundable (not paid, fully refunded, dispute lost); the key is still in use; "
                "or Stripe refused the refund (code refund_refused: the refund is kept as failed).",
            ),
            422: OpenApiResponse(description="The key was used with a different request."),
            502: OpenApiResponse(description="Stripe failed: retry with the same key."),
            503: OpenApiResponse(description="Stripe did not answer: retry with the same key."),
        },
    )
    def post(self, request, payment_id):
        if not can_refund(request.user):
            raise PermissionDenied("Only staff allowed to refund (refunds.add_refund) may issue refunds.")
        payment = generics.get_object_or_404(Payment, pk=payment_id)
        key = idempotency_key_from(request)
        data = RefundCreateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        refund, replayed = services.refund_create(
            payment=payment,
            amount=data.validated_data.get("amount"),
            reason=data.validated_data["reason"],
            note=data.validated_data["note"],
            created_by=request.user,
            idempotency_key=key,
        )
        response = Response(refund_serializer_class(request.user)(refund).data, status=status.HTTP_201_CREATED)
        if replayed:
            response["Idempotent-Replayed"] = "true"
        return response
