"""
The refunds API: staff issue refunds, owners and staff list them. Thin views over
refunds.services; errors map to HTTP in core.api.
"""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from payments.api import IDEMPOTENCY_PARAMETER, StrictIntegerField, idempotency_key_from
from payments.models import Payment
from refunds import services
from refunds.models import Refund

REFUND_PERMISSION = "refunds.add_refund"


class RefundSerializer(serializers.ModelSerializer):
    class Meta:
        model = Refund
        fields = ["id", "payment", "stripe_refund_id", "amount", "status", "reason", "note", "created_at"]
        read_only_fields = fields


class RefundCreateInputSerializer(serializers.Serializer):
    amount = StrictIntegerField(
        min_value=1, required=False, help_text="In minor units; all that is left to refund when omitted."
    )
    reason = serializers.ChoiceField(choices=Refund.Reason.choices, required=False, allow_blank=True, default="")
    note = serializers.CharField(required=False, allow_blank=True, default="", max_length=5000)


def can_refund(user) -> bool:
    return user.is_staff and user.has_perm(REFUND_PERMISSION)


def visible_payment(request, payment_id) -> Payment:
    """The payment if the user may see it (its owner, or staff); a 404 otherwise, never a 403."""
    # One lookup among what the user may see: someone else's payment answers
    # exactly like one that does not exist.
    visible = Payment.objects.all() if request.user.is_staff else Payment.objects.filter(user=request.user)
    return generics.get_object_or_404(visible, pk=payment_id)


class PaymentRefundsView(generics.ListAPIView):
    """A payment's refunds, newest first; POST (staff allowed to refund) issues one."""

    serializer_class = RefundSerializer

    def get_queryset(self):
        payment = visible_payment(self.request, self.kwargs["payment_id"])
        return payment.refunds.order_by("-created_at", "-id")

    @extend_schema(
        request=RefundCreateInputSerializer,
        parameters=[IDEMPOTENCY_PARAMETER],
        # Error bodies: the shared Error schema (core.api.document_errors).
        responses={
            201: RefundSerializer,
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
        response = Response(RefundSerializer(refund).data, status=status.HTTP_201_CREATED)
        if replayed:
            response["Idempotent-Replayed"] = "true"
        return response
