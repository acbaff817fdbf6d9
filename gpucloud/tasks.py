"""Platform housekeeping tasks."""

from __future__ import annotations

from celery import shared_task

from gpucloud import health


@shared_task(ignore_result=True, soft_time_limit=10, time_limit=20)
def heartbeat_task() -> None:
    """Run by beat on a schedule: proves that beat schedules and a worker executes."""
    health.heartbeat_record()
