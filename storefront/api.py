"""
The two API calls a card-collecting page makes beyond `POST /api/payments/`
(see templates/checkout/checkout.html for the flow): a SetupIntent for
Stripe.js to collect the card, and the confirmation of the payment with the
card it yields. Owner only; anyone else's payment is a 404.
"""

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import STRIPE_ERROR_CODES, merge_codes
from payments import services
from payments.api import PaymentSerializer, own_payment

# Error bodies: the shared Error schema (core.api.document_errors).
CONFLICT = OpenApiResponse(description="The payment is paid or canceled, or still being created at Stripe.")
# Both calls reach Stripe: the card-testing throttle counts them together, per user.
CARD_ERROR_CODES = {"post": merge_codes(STRIPE_ERROR_CODES, {"409": ["invalid_state"]})}


class SetupIntentSerializer(serializers.Serializer):
    id = serializers.CharField()
    client_secret = serializers.CharField()


class PaymentSetupIntentView(APIView):
    throttle_scopes = {"POST": "payment_card"}
    error_codes = CARD_ERROR_CODES

    @extend_schema(
        request=None,
        responses={
            201: SetupIntentSerializer,
            404: OpenApiResponse(description="No such payment of yours."),
            409: CONFLICT,
        },
        description=(
            "A new Stripe SetupIntent for collecting one card with Stripe.js (`confirmCardSetup`). "
            "Its `payment_method` is then sent to `confirm/`. 409 once the payment is paid or canceled."
        ),
    )
    def post(self, request, payment_id):
        setup_intent = services.payment_setup_intent_create(payment=own_payment(request, payment_id))
        return Response(SetupIntentSerializer(setup_intent).data, status=201)


class PaymentConfirmInputSerializer(serializers.Serializer):
    payment_method = serializers.RegexField(r"^pm_[A-Za-z0-9_]+$", max_length=255)


class PaymentConfirmedSerializer(PaymentSerializer):
    class Meta(PaymentSerializer.Meta):
        fields = PaymentSerializer.Meta.fields + ["failure_code", "failure_message"]
        read_only_fields = fields


class PaymentConfirmView(APIView):
    throttle_scopes = {"POST": "payment_card"}
    error_codes = CARD_ERROR_CODES

    @extend_schema(
        request=PaymentConfirmInputSerializer,
        examples=[
            OpenApiExample(
                "card", summary="A card from Stripe.js", value={"payment_method": "pm_card_visa"}, request_only=True
            )
        ],
        responses={
            200: PaymentConfirmedSerializer,
            404: OpenApiResponse(description="No such payment of yours."),
            409: CONFLICT,
            400: OpenApiResponse(description="Bad input, or Stripe refused the request (not a decline)."),
            502: OpenApiResponse(description="Stripe failed: retry."),
            503: OpenApiResponse(description="Stripe did not answer: retry with the same payment method."),
        },
        description=(
            "Pay with a card's PaymentMethod (`pm_...`). The answer's `status` is the outcome: `succeeded`, "
            "`requires_action` (complete 3-D Secure with Stripe.js `confirmCardPayment(client_secret)`), "
            "`processing`, or `failed` with Stripe's `failure_code` and `failure_message`. Sending the same "
            "PaymentMethod again never charges twice. 409 once the payment is paid or canceled."
        ),
    )
    def post(self, request, payment_id):
        payment = own_payment(request, payment_id)
        data = PaymentConfirmInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        payment = services.payment_confirm(payment=payment, payment_method=data.validated_data["payment_method"])
        return Response(PaymentConfirmedSerializer(payment).data)
