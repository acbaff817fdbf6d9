"""What a pod's machine runs (the fleet asks through deployments.workload), and what a spot pod's
preemption does to it."""

from __future__ import annotations

from django.db import transaction

from accounts.selectors import ssh_keys_of
from catalog.gpu_units import offer_slug
from catalog.models import CloudType
from deployments.lifecycle import deployment_transition
from deployments.models import Deployment, DeploymentKind, DeploymentStatus, Pod, VolumeStatus
from fleet.models import Instance
from fleet.providers.base import InstanceSpec, ProviderError, Tier


def pod_instance_spec(instance: Instance, pod: Pod) -> InstanceSpec:
    """The pod's image and settings; its volume once its provider has made it. Until then the launch
    is retried (a new volume is made after the pod's create commits, like the pod's machine), or waits
    like one for capacity while the volume's provider has no room for it (its reason says so)."""
    deployment = instance.deployment
    assert deployment.gpu_type is not None and deployment.region_id
    volume = pod.volume
    if volume is not None and volume.status == VolumeStatus.FAILED:
        raise ProviderError(f"The pod's volume could not be made: {volume.status_reason}", permanent=True)
    if volume is not None and not volume.provider_volume_id:
        if volume.status == VolumeStatus.CREATING and volume.status_reason:  # waiting for space
            raise ProviderError(f"Waiting for its volume: {volume.status_reason}", no_capacity=True)
        raise ProviderError(f"Volume {volume.pk} is not made yet; launching once it is.")
    return InstanceSpec(
        instance_id=instance.pk,
        tag=instance.tag,
        engine="container",
        model={},
        served_model_name="",
        api_key=instance.api_key,
        gpu_type=offer_slug(deployment.gpu_type.slug, pod.gpu_count),
        gpu_count=pod.gpu_count,
        region=deployment.region_id,
        spot=deployment.spot,
        tier=None if deployment.cloud_type == CloudType.ANY else Tier(deployment.cloud_type),
        provider=deployment.provider or None,
        image=pod.image,
        command=list(pod.command) or None,
        args=list(pod.args),
        # Where the platform's proxy serves its ports: an app under a prefix (JupyterLab's base_url) needs it.
        env={**pod.env, "GPUCLOUD_POD_ID": deployment.pk, "GPUCLOUD_PROXY_PATH": _proxy_path(deployment)},
        ports=pod.port_numbers(),
        tcp_ports=pod.port_numbers("tcp"),
        disk_gb=pod.container_disk_gb,
        volume_id=volume.provider_volume_id if volume is not None else None,
        volume_mount_path=pod.volume_mount_path,
        ssh_public_keys=_keys_of(pod, deployment),
    )


def _proxy_path(deployment: Deployment) -> str:
    """Where the platform's proxy serves it: a pod's ports each under this prefix, a container
    endpoint's one port at the prefix itself (gateway/service_proxy.py strips it)."""
    if deployment.kind == DeploymentKind.CONTAINER:
        return f"/services/{deployment.pk}/"
    return f"/pods/{deployment.pk}/ports/"


def _keys_of(pod: Pod, deployment: Deployment) -> list[str]:
    """The pod's own keys and the org's saved ones, as they are at this launch (a key deleted since
    the last one no longer gets in after a start)."""
    saved = ssh_keys_of(deployment.org).values_list("public_key", flat=True)
    return list(dict.fromkeys([*pod.ssh_public_keys, *saved]))


def pod_preempted(deployment: Deployment, reason: str) -> None:
    """A spot pod taken back stops (its volume kept), as on RunPod: start it again when you like."""
    with transaction.atomic():
        deployment = Deployment.objects.select_for_update().get(pk=deployment.pk)
        if deployment.status not in (DeploymentStatus.STOPPING, DeploymentStatus.STOPPED):
            deployment_transition(deployment, DeploymentStatus.STOPPED, f"{reason} Start it again when you like.")
