from django.db import migrations, models


class Migration(migrations.Migration):
    """The admin's filter by category (newest first) and search by PaymentIntent use an index, at any size."""

    dependencies = [("ledger", "0002_journal_balances_and_is_append_only")]

    operations = [
        migrations.AddIndex(
            model_name="balancetransaction",
            index=models.Index(fields=["reporting_category", "-stripe_created"], name="txn_category_created"),
        ),
        migrations.AddIndex(
            model_name="balancetransaction",
            index=models.Index(fields=["payment_intent_id"], name="txn_payment_intent"),
        ),
    ]
