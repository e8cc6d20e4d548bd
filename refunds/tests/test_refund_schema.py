"""The refunds API in the OpenAPI schema."""

import pytest


@pytest.mark.django_db
def test_openapi_schema_describes_the_refunds_api(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    refunds = schema["paths"]["/api/payments/{payment_id}/refunds/"]
    assert set(refunds) >= {"get", "post"}
    assert any(p["name"] == "Idempotency-Key" and p["required"] for p in refunds["post"]["parameters"])
    assert {"201", "400", "403", "404", "409", "422", "429", "502", "503"} <= set(refunds["post"]["responses"])
    refund = schema["components"]["schemas"]["Refund"]
    assert set(refund["properties"]) == {
        "id",
        "payment",
        "stripe_refund_id",
        "amount",
        "status",
        "reason",
        "failure_reason",
        "created_at",
        "note",
        "created_by",
    }
    # The staff-only fields are optional, and say who sees them.
    assert {"note", "created_by"}.isdisjoint(refund["required"])
    assert "refunds.view_refund" in refund["properties"]["note"]["description"]
    assert "RefundStatusEnum" in schema["components"]["schemas"]
