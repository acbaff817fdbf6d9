from django.apps import AppConfig


class GpucloudConfig(AppConfig):
    name = "gpucloud"
    verbose_name = "gpucloud platform"
