from django.db import migrations, models


class Migration(migrations.Migration):
    """The support desk searches payments by amount (backoffice/search.py): an index on it."""

    dependencies = [
        ("payments", "0004_money_as_stripe_moves_it"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="payment",
            index=models.Index(fields=["amount"], name="payment_amount"),
        ),
    ]
