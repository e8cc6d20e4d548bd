"""
Queueing a background job in the caller's transaction, wherever the caller runs.

procrastinate's Django app defers on Django's connection in the web process, but a
worker (`manage.py procrastinate worker`) replaces the app's connector with a
psycopg pool of its own: a job deferred by a job (a notification's delivery
queued while a worker applies Stripe's event, a released refund's check) is then
committed at once on another connection, before the rows it names. A worker
taking it that soon finds nothing ("no such delivery") and the delivery waits
for ever; a rollback leaves the job behind. `job_defer_in_transaction` always
writes the job on Django's connection, so it commits or rolls back with the
rows it is about, as the outbox promises.
"""

from __future__ import annotations

from procrastinate import manager
from procrastinate.contrib.django.django_connector import DjangoConnector
from procrastinate.jobs import JobDeferrer

_JOB_MANAGER = manager.JobManager(DjangoConnector())


def job_defer_in_transaction(deferrer: JobDeferrer, **task_kwargs) -> int:
    """
    Queue the job `deferrer` describes (a task's `.configure(...)`: queue, lock,
    schedule), with `task_kwargs` (JSON values) as its arguments, on Django's
    `default` connection: inside the caller's transaction when there is one, so
    the job is committed with it or not at all. Answers the job's id. Workers hear
    of it at the commit (procrastinate's insert trigger). Raises procrastinate's
    AlreadyEnqueued when the job's queueing lock is taken, and DatabaseError
    when the insert fails (the caller's transaction is then unusable, as for any
    failed statement).
    """
    return _JOB_MANAGER.defer_job(deferrer.make_new_job(**task_kwargs)).id
