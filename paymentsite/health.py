from django.db.utils import Error as DatabaseError
from django.http import JsonResponse
from django.views.decorators.cache import never_cache

from webhooks.queue import queue_figures


@never_cache
def healthz(request):
    """
    200 when the database answers, 503 otherwise. Also says how far behind the
    background workers are (`jobs.oldest_pending_seconds`: how long the oldest
    due job has waited; it grows when no worker runs): a monitor alerts on it,
    while the site itself is up and keeps storing Stripe's events meanwhile.
    """
    try:
        jobs = queue_figures()
    except DatabaseError:
        return JsonResponse({"status": "unavailable", "database": "down"}, status=503)
    return JsonResponse(
        {
            "status": "ok",
            "database": "up",
            "jobs": {
                "pending": jobs.pending,
                "failed": jobs.failed,
                "oldest_pending_seconds": round(jobs.oldest_pending_seconds, 1),
            },
        }
    )
