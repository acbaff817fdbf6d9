from __future__ import annotations

from django.urls import path

from catalog import views

urlpatterns = [
    path("catalog/", views.catalog, name="catalog"),
    path("catalog/<str:slug>/", views.model_detail, name="model_detail"),
    path("catalog/<str:slug>/deploy", views.model_deploy, name="model_deploy"),
]
