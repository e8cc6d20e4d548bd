"""
Stripe's events are acknowledged at the rate PostgreSQL commits, and a commit that
NOTIFYs holds the database's one notification lock until its WAL is flushed: with
procrastinate's trigger notifying every inserted job, every webhook's commit waited
for the one before it (BENCHMARKS.md, the background engine). So the apply jobs'
inserts no longer notify in their transaction; webhooks.services wakes the workers
just after the commit instead (a notify outside any write commits without a flush),
and a worker that missed it finds the job at its next poll. Every other job still
notifies as procrastinate made it.
"""

from django.db import migrations

TRIGGER = "procrastinate_jobs_notify_queue_job_inserted_v1"
APPLY_TASK = "webhooks.apply_event"

FORWARD = f"""
DROP TRIGGER {TRIGGER} ON procrastinate_jobs;
CREATE TRIGGER {TRIGGER}
    AFTER INSERT ON procrastinate_jobs
    FOR EACH ROW WHEN (new.status = 'todo'::procrastinate_job_status AND new.task_name <> '{APPLY_TASK}')
    EXECUTE PROCEDURE procrastinate_notify_queue_job_inserted_v1();
"""

# procrastinate's own definition (its schema.sql).
BACKWARD = f"""
DROP TRIGGER {TRIGGER} ON procrastinate_jobs;
CREATE TRIGGER {TRIGGER}
    AFTER INSERT ON procrastinate_jobs
    FOR EACH ROW WHEN (new.status = 'todo'::procrastinate_job_status)
    EXECUTE PROCEDURE procrastinate_notify_queue_job_inserted_v1();
"""


class Migration(migrations.Migration):
    dependencies = [
        ("webhooks", "0002_pending_outcome_and_attempts"),
        ("procrastinate", "0041_post_retry_failed_job"),
    ]

    operations = [migrations.RunSQL(FORWARD, reverse_sql=BACKWARD)]
