"""
The support desk finds payments by the customer's email (`email__iexact`, which
PostgreSQL runs as UPPER(email) = UPPER(...)): an expression index on the user
table makes that an index lookup instead of a scan of every user. The user
model belongs to django.contrib.auth, so the index is made here, next to the
search that needs it.
"""

from django.conf import settings
from django.db import migrations

INDEX_NAME = "payments_user_email_upper"


def user_table(apps, schema_editor) -> str:
    return schema_editor.quote_name(apps.get_model(settings.AUTH_USER_MODEL)._meta.db_table)


def create_index(apps, schema_editor):
    schema_editor.execute(f'CREATE INDEX IF NOT EXISTS "{INDEX_NAME}" ON {user_table(apps, schema_editor)} (UPPER("email"))')


def drop_index(apps, schema_editor):
    schema_editor.execute(f'DROP INDEX IF EXISTS "{INDEX_NAME}"')


class Migration(migrations.Migration):
    dependencies = [
        ("payments", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [migrations.RunPython(create_index, drop_index)]
