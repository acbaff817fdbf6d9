from django.contrib import admin

from catalog.models import CatalogModel, GpuType, Preset, Provider, Region

admin.site.register([GpuType, Region, CatalogModel, Preset, Provider])
