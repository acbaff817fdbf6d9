from __future__ import annotations

from django.contrib import admin
from django.urls import include, path, re_path

from gpucloud import views
from gpucloud.api import api

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("api/v1/", api.urls),
    re_path(r"^api/", views.api_not_found),  # unknown API paths answer in the API's JSON error shape
    path("accounts/", include("allauth.urls")),
    path("admin/", admin.site.urls),
    path("", include("billing.urls")),
    path("", include("pages.urls")),
]

handler404 = "gpucloud.views.not_found"
handler500 = "gpucloud.views.server_error"
