from __future__ import annotations

from django.urls import path

from accounts import views

urlpatterns = [
    path("", views.home, name="home"),
    path("dashboard/", views.dashboard, name="dashboard"),
    path("api-keys/", views.api_keys, name="api_keys"),
    path("api-keys/create", views.api_keys_create, name="api_keys_create"),
    path("api-keys/<str:key_id>/revoke", views.api_keys_revoke, name="api_keys_revoke"),
    path("api-keys/<str:key_id>/regenerate", views.api_keys_regenerate, name="api_keys_regenerate"),
    path("organization/", views.organization, name="organization"),
    path("organization/create", views.organization_create, name="organization_create"),
    path("organization/switch", views.organization_switch, name="organization_switch"),
    path("organization/invite", views.organization_invite, name="organization_invite"),
    path(
        "organization/invitations/<str:invitation_id>/revoke",
        views.organization_invitation_revoke,
        name="organization_invitation_revoke",
    ),
    path(
        "organization/members/<int:user_id>/remove", views.organization_member_remove, name="organization_member_remove"
    ),
    path("organization/members/<int:user_id>/role", views.organization_member_role, name="organization_member_role"),
]
