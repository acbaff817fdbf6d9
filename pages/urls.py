"""Every page's URL (the HTMX views of pages/). The API is at /api/v1/ (gpucloud/api.py), the
gateway at /v1/ (gateway/), Stripe's webhook at billing/urls.py."""

from __future__ import annotations

from django.urls import path
from django.views.generic import RedirectView

from pages import accounts, billing, catalog, containers, marketplace, pod_templates, pods, volumes
from pages.deployments import access_forms, scaling_forms, webhook_forms
from pages.deployments import views as deployment_views

urlpatterns = [
    # accounts: home, dashboard, API keys, SSH keys, organization
    path("", accounts.home, name="home"),
    path("dashboard/", accounts.dashboard, name="dashboard"),
    path("api-keys/", accounts.api_keys, name="api_keys"),
    path("api-keys/create", accounts.api_keys_create, name="api_keys_create"),
    path("api-keys/<str:key_id>/revoke", accounts.api_keys_revoke, name="api_keys_revoke"),
    path("api-keys/<str:key_id>/regenerate", accounts.api_keys_regenerate, name="api_keys_regenerate"),
    path("ssh-keys/", accounts.ssh_keys, name="ssh_keys"),
    path("ssh-keys/add", accounts.ssh_keys_add, name="ssh_keys_add"),
    path("ssh-keys/<str:ssh_key_id>/delete", accounts.ssh_keys_delete, name="ssh_keys_delete"),
    path("invitations/<str:token>/", accounts.invitation, name="invitation"),
    path("organization/", accounts.organization, name="organization"),
    path("organization/create", accounts.organization_create, name="organization_create"),
    path("organization/switch", accounts.organization_switch, name="organization_switch"),
    path("organization/invite", accounts.organization_invite, name="organization_invite"),
    path(
        "organization/invitations/<str:invitation_id>/revoke",
        accounts.organization_invitation_revoke,
        name="organization_invitation_revoke",
    ),
    path(
        "organization/members/<int:user_id>/remove",
        accounts.organization_member_remove,
        name="organization_member_remove",
    ),
    path("organization/members/<int:user_id>/role", accounts.organization_member_role, name="organization_member_role"),
    # catalog and one-click deploy
    path("catalog/", catalog.catalog, name="catalog"),
    path("catalog/<str:slug>/", catalog.model_detail, name="model_detail"),
    path("catalog/<str:slug>/deploy", catalog.model_deploy, name="model_deploy"),
    # the GPU marketplace
    path("marketplace/", marketplace.marketplace, name="marketplace"),
    path("marketplace/rent-model", marketplace.marketplace_rent_model, name="marketplace_rent_model"),
    # billing
    path("billing/", billing.billing, name="billing"),
    path("billing/transactions", billing.billing_transactions, name="billing_transactions"),
    path("billing/add-funds", billing.billing_add_funds, name="billing_add_funds"),
    path("billing/save-card", billing.billing_save_card, name="billing_save_card"),
    path("billing/auto-refill", billing.billing_auto_refill, name="billing_auto_refill"),
    path("billing/spend-limit", billing.billing_spend_limit, name="billing_spend_limit"),
    # pods, volumes and templates
    path("pods/", deployment_views.pods_list, name="pods"),
    path("pods/new", pods.pod_new, name="pod_new"),
    # The form pages' addresses with a slash, as every other page has one: the same page, not a 404.
    path("pods/new/", RedirectView.as_view(pattern_name="pod_new", query_string=True)),
    path("pods/create", pods.pod_create, name="pod_create"),
    path("pods/<str:pod_id>/", pods.pod_detail, name="pod_detail"),
    path("pods/<str:pod_id>/stop", pods.pod_stop, name="pod_stop"),
    path("pods/<str:pod_id>/start", pods.pod_start, name="pod_start"),
    path("pods/<str:pod_id>/terminate", pods.pod_terminate, name="pod_terminate"),
    path("volumes/", volumes.volumes_page, name="volumes"),
    path("volumes/create", volumes.volume_create, name="volume_create"),
    path("volumes/<str:volume_id>/grow", volumes.volume_grow, name="volume_grow"),
    path("volumes/<str:volume_id>/delete", volumes.volume_delete, name="volume_delete"),
    path("templates/", pod_templates.templates_page, name="templates"),
    path("templates/create", pod_templates.template_create, name="template_create"),
    path("templates/<str:template_id>/delete", pod_templates.template_delete, name="template_delete"),
    # deployments
    path("deployments/", deployment_views.deployments_list, name="deployments"),
    path("containers/new", containers.container_new, name="container_new"),
    path("containers/new/", RedirectView.as_view(pattern_name="container_new", query_string=True)),
    path("deployments/<str:deployment_id>/", deployment_views.deployment_detail, name="deployment_detail"),
    path("deployments/<str:deployment_id>/stop", deployment_views.deployment_stop, name="deployment_stop"),
    path("deployments/<str:deployment_id>/key", deployment_views.deployment_key, name="deployment_key"),
    path(
        "deployments/<str:deployment_id>/redeploy",
        deployment_views.deployment_redeploy_view,
        name="deployment_redeploy",
    ),
    path("deployments/<str:deployment_id>/logs", deployment_views.deployment_logs, name="deployment_logs"),
    path("deployments/<str:deployment_id>/webhooks", webhook_forms.webhook_add, name="webhook_add"),
    path("deployments/<str:deployment_id>/access", access_forms.deployment_grant, name="deployment_grant"),
    path("deployments/<str:deployment_id>/scaling", scaling_forms.deployment_scaling, name="deployment_scaling"),
    path("deployments/<str:deployment_id>/replicas", scaling_forms.deployment_replicas, name="deployment_replicas"),
    path("deployments/<str:deployment_id>/sla", scaling_forms.deployment_sla, name="deployment_sla"),
    path("deployments/<str:deployment_id>/preset", scaling_forms.deployment_preset, name="deployment_preset"),
    path(
        "deployments/<str:deployment_id>/access/<str:key_id>/revoke",
        access_forms.deployment_grant_revoke,
        name="deployment_grant_revoke",
    ),
    path(
        "deployments/<str:deployment_id>/webhooks/<str:webhook_id>/test",
        webhook_forms.webhook_test,
        name="webhook_test",
    ),
    path(
        "deployments/<str:deployment_id>/webhooks/<str:webhook_id>/delete",
        webhook_forms.webhook_delete,
        name="webhook_delete",
    ),
]
