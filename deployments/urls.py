from __future__ import annotations

from django.urls import path

from deployments import access_views, settings_views, views
from webhooks import views as webhook_views

urlpatterns = [
    path("deployments/", views.deployments_list, name="deployments"),
    path("deployments/<str:deployment_id>/", views.deployment_detail, name="deployment_detail"),
    path("deployments/<str:deployment_id>/stop", views.deployment_stop, name="deployment_stop"),
    path("deployments/<str:deployment_id>/key", views.deployment_key, name="deployment_key"),
    path("deployments/<str:deployment_id>/logs", views.deployment_logs, name="deployment_logs"),
    path("deployments/<str:deployment_id>/webhooks", webhook_views.webhook_add, name="webhook_add"),
    path("deployments/<str:deployment_id>/access", access_views.deployment_grant, name="deployment_grant"),
    path("deployments/<str:deployment_id>/scaling", settings_views.deployment_scaling, name="deployment_scaling"),
    path("deployments/<str:deployment_id>/sla", settings_views.deployment_sla, name="deployment_sla"),
    path("deployments/<str:deployment_id>/preset", settings_views.deployment_preset, name="deployment_preset"),
    path(
        "deployments/<str:deployment_id>/access/<str:key_id>/revoke",
        access_views.deployment_grant_revoke,
        name="deployment_grant_revoke",
    ),
    path(
        "deployments/<str:deployment_id>/webhooks/<str:webhook_id>/test",
        webhook_views.webhook_test,
        name="webhook_test",
    ),
    path(
        "deployments/<str:deployment_id>/webhooks/<str:webhook_id>/delete",
        webhook_views.webhook_delete,
        name="webhook_delete",
    ),
]
