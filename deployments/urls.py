from __future__ import annotations

from django.urls import path

from deployments import views

urlpatterns = [
    path("deployments/", views.deployments_list, name="deployments"),
    path("deployments/<str:deployment_id>/", views.deployment_detail, name="deployment_detail"),
    path("deployments/<str:deployment_id>/stop", views.deployment_stop, name="deployment_stop"),
    path("deployments/<str:deployment_id>/key", views.deployment_key, name="deployment_key"),
    path("deployments/<str:deployment_id>/logs", views.deployment_logs, name="deployment_logs"),
]
