import json

import factory
from django.db import connection

from notifications.models import Endpoint

# Nothing listens there: a delivery to it is refused (tests that send use devkit.receiver).
CLOSED_URL = "http://127.0.0.1:9/notifications"


class EndpointFactory(factory.django.DjangoModelFactory):
    """An enabled endpoint wanting every type; no owner (an operator's, hearing of every payment) unless given."""

    class Meta:
        model = Endpoint

    url = CLOSED_URL
    owner = None


def queued_jobs(task_name: str = "notifications.deliver") -> list[dict]:
    """procrastinate's jobs of `task_name` still to run (or running), oldest first: their arguments and time."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT args, scheduled_at, status FROM procrastinate_jobs WHERE task_name = %s ORDER BY id",
            [task_name],
        )
        rows = cursor.fetchall()
    # Django's connection leaves JSON undecoded.
    return [
        {"args": json.loads(args) if isinstance(args, str) else args, "scheduled_at": at, "status": status}
        for args, at, status in rows
    ]
