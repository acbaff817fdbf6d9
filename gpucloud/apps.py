from __future__ import annotations

from django.apps import AppConfig

from gpucloud.celery import app as celery_app


class GpucloudConfig(AppConfig):
    name = "gpucloud"
    verbose_name = "gpucloud platform"

    def ready(self) -> None:
        # Every app's tasks module registers now, in every process: work is enqueued by task name
        # (gpucloud.core.jobs), so nothing else imports a tasks module to make its name known.
        celery_app.autodiscover_tasks(force=True)
