"""Project package: settings, URL map, ASGI entry point, Celery app, API assembly.

Also an installed app so that its operator commands (`serve`) and platform tasks
(the worker heartbeat) are discovered.
"""

from gpucloud.celery import app as celery_app

__all__ = ["celery_app"]
