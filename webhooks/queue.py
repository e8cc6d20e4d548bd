"""
The background job queue (procrastinate's tables, in the site's database) as the
operators see it: `/healthz` reports how far behind the workers are, the desk's
dashboard what is waiting and what failed. Most of its jobs apply Stripe's events.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection


@dataclass(frozen=True)
class QueueFigures:
    # Jobs waiting for a worker or running now ("todo", "doing"), retries waiting for their time included.
    pending: int
    # Jobs that ended in an error and will not be run again unless someone retries them.
    failed: int
    # How long the oldest job that is due has waited for a worker, in seconds; 0 when none waits.
    # With the workers keeping up this stays near 0: it is the lag between a webhook's 200 and its apply.
    oldest_pending_seconds: float


def queue_figures() -> QueueFigures:
    """
    The queue's counts and lag, in one read-only query over procrastinate's
    tables (a due job waits since it was queued, or since its retry time). Locks
    nothing; raises django.db's DatabaseError when the database does not answer.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT
                (SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')),
                (SELECT count(*) FROM procrastinate_jobs WHERE status = 'failed'),
                (SELECT coalesce(extract(epoch FROM now() - min(coalesce(job.scheduled_at, queued.at))), 0)
                   FROM procrastinate_jobs job
                   JOIN procrastinate_events queued ON queued.job_id = job.id AND queued.type = 'deferred'
                  WHERE job.status = 'todo' AND (job.scheduled_at IS NULL OR job.scheduled_at <= now()))
            """
        )
        pending, failed, oldest = cursor.fetchone()
    return QueueFigures(pending=pending, failed=failed, oldest_pending_seconds=max(0.0, float(oldest)))
