"""
The task app: what every background job of the site shares. The jobs themselves are
in each app's tasks.py (procrastinate finds them); here are their schedules (from
settings.JOBS_SCHEDULE, read once the app is ready), what wraps every job (a usable
database connection), and the recovery of jobs a dead worker left running.

A worker is `python manage.py procrastinate worker`. Every periodic job is queued by
whichever worker's clock reaches its time first: the database keeps one job per
tick, and each job's queueing lock keeps a second from waiting behind a first.

This module is not an app's tasks.py: procrastinate imports it through
PROCRASTINATE_ON_APP_READY, after the apps' tasks, so its job is added there.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import close_old_connections
from procrastinate import App, JobContext

logger = logging.getLogger(__name__)

# The queue of the periodic upkeep jobs, apart from Stripe's events (queue "webhooks").
MAINTENANCE_QUEUE = "maintenance"

# settings.JOBS_SCHEDULE's keys, and the task each one schedules.
SCHEDULED_TASKS = {
    "reconcile": "webhooks.reconcile_with_stripe",
    "retry_refunds": "refunds.retry_refunds",
    "overdue_payments": "webhooks.reread_overdue_payments",
    "stalled_jobs": "paymentsite.retry_stalled_jobs",
    "sync_ledger": "ledger.sync_ledger",
}


def on_app_ready(procrastinate_app: App) -> None:
    """
    Called by procrastinate's Django app once every app's tasks.py is imported
    (PROCRASTINATE_ON_APP_READY): add this module's job, schedule the periodic
    ones, and wrap every job in `fresh_database_connection`.
    """
    procrastinate_app.task(
        name="paymentsite.retry_stalled_jobs",
        queue=MAINTENANCE_QUEUE,
        queueing_lock="paymentsite.retry_stalled_jobs",
        pass_context=True,
    )(retry_stalled_jobs)
    for key, task_name in SCHEDULED_TASKS.items():
        cron = settings.JOBS_SCHEDULE.get(key, "")
        if cron:
            procrastinate_app.periodic(cron=cron)(procrastinate_app.tasks[task_name])
    defaults = procrastinate_app.worker_defaults
    procrastinate_app.worker_defaults = {
        **defaults,
        "task_middleware": [fresh_database_connection, *defaults.get("task_middleware", [])],
    }


def fresh_database_connection(call_next, context: JobContext, worker):
    """
    A job runs in a worker thread that keeps its Django connection between jobs.
    Django replaces a broken or expired one only around a web request, so a job
    does it itself, before and after: after a database restart the next job
    reconnects instead of failing on a dead connection.
    """
    close_old_connections()
    try:
        return call_next()
    finally:
        close_old_connections()


async def retry_stalled_jobs(context: JobContext, timestamp: int) -> int:
    """
    Put back in the queue every job a dead worker was running: one that stopped
    sending its heartbeat (SIGKILLed, out of memory, its machine gone) for longer
    than JOBS_STALLED_AFTER_SECONDS. Its job runs again from the start, so every
    job of the site is safe to run twice (the webhook apply looks at its event's
    outcome under the event's row lock). Answers how many were put back.
    """
    job_manager = context.app.job_manager
    stalled_after = float(settings.PROCRASTINATE_WORKER_DEFAULTS.get("stalled_worker_timeout", 30.0))
    stalled = list(await job_manager.get_stalled_jobs(seconds_since_heartbeat=stalled_after))
    for job in stalled:
        logger.warning("Job %s of a dead worker is queued again: %s", job.id, job.task_name)
        await job_manager.retry_job(job)
    return len(stalled)
