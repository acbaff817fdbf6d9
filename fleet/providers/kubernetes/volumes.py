"""Volumes on Kubernetes: one PersistentVolumeClaim per volume in the provider's namespace, named
`gpv-` + our volume id and labelled with the fleet tag, our volume id and its region, so
`volumes_list(tag)` finds them (page by page, with the API's limit/continue) and a retried create
finds the one it made. Its StorageClass is the operator's `storage_class` (unset: the cluster's
default). provider_volume_id is "<namespace>/<name>", mounted by the pod's Deployment (manifests.py).

Kubernetes' rules, which the driver passes on as permanent errors naming them: a claim only grows, and
only where its StorageClass allows volume expansion (`allowVolumeExpansion: true`); a pod mounts only
claims of its own namespace. Whether a claim can follow a pod to another region depends on the class's
provisioner (zonal disks cannot): the platform starts a pod where its volume lives.
"""

from __future__ import annotations

import re

from kubernetes import client

from fleet.providers.base import ProviderError, ProviderVolume, VolumeSpec
from fleet.providers.kubernetes.api import KubeApi, KubeApiError
from fleet.providers.kubernetes.capacity import quantity
from fleet.providers.kubernetes.manifests import (
    MANAGED_BY_LABELS,
    MAX_NAME_LENGTH,
    TAG_LABEL,
    label_value,
    parse_volume_id,
)
from fleet.providers.kubernetes.options import DriverOptions

VOLUME_LABEL = "gpucloud.io/volume"
REGION_LABEL = "gpucloud.io/region"
VOLUME_PREFIX = "gpv-"
MERGE_PATCH = "application/merge-patch+json"
NOT_FOUND = 404
ALREADY_EXISTS = 409
# What the API server answers when a claim may not grow (403: its class does not allow expansion, or it
# was not dynamically provisioned) or not to that size (422: smaller than it is).
RESIZE_REFUSED = frozenset({403, 422})
_GIB = re.compile(r"^(?P<n>\d+)Gi$")


def volume_name(volume_id: str) -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", volume_id.lower()).strip("-")
    return (VOLUME_PREFIX + slug)[:MAX_NAME_LENGTH].rstrip("-")


def volume_claim(spec: VolumeSpec, options: DriverOptions) -> client.V1PersistentVolumeClaim:
    labels = {
        TAG_LABEL: label_value(spec.tag, "tag"),
        VOLUME_LABEL: label_value(spec.volume_id, "volume id"),
        **({REGION_LABEL: label_value(spec.region, "region")} if spec.region else {}),
        **MANAGED_BY_LABELS,
    }
    annotations = {"gpucloud.io/name": spec.name} if spec.name else None
    return client.V1PersistentVolumeClaim(
        api_version="v1",
        kind="PersistentVolumeClaim",
        metadata=client.V1ObjectMeta(
            name=volume_name(spec.volume_id), namespace=options.namespace, labels=labels, annotations=annotations
        ),
        spec=client.V1PersistentVolumeClaimSpec(
            access_modes=["ReadWriteOnce"],  # one pod at a time, as the platform runs them
            storage_class_name=options.storage_class or None,
            resources=client.V1VolumeResourceRequirements(requests={"storage": f"{spec.size_gb}Gi"}),
        ),
    )


class KubeVolumes:
    """The volume half of the driver, over the same API seam."""

    def __init__(self, api: KubeApi, options: DriverOptions) -> None:
        self.api = api
        self.options = options

    def create(self, spec: VolumeSpec) -> ProviderVolume:
        """The claim for `spec.volume_id`: the one made before (by its label, or its name when a
        concurrent create won), else a new one."""
        existing = self._find(VOLUME_LABEL, label_value(spec.volume_id, "volume id"))
        if existing:
            return provider_volume(existing[0], self.options)
        body = volume_claim(spec, self.options)
        try:
            made = self.api.call(self.api.core.create_namespaced_persistent_volume_claim, self.options.namespace, body)
        except KubeApiError as exc:
            if exc.status != ALREADY_EXISTS:
                raise
            made = self._read(self.options.namespace, volume_name(spec.volume_id))
        return provider_volume(made, self.options)

    def resize(self, provider_volume_id: str, size_gb: int) -> ProviderVolume:
        namespace, name = parse_volume_id(provider_volume_id)
        current = provider_volume(self._read(namespace, name), self.options)
        if size_gb < current.size_gb:
            raise ProviderError(
                f"Kubernetes never shrinks a PersistentVolumeClaim ({current.size_gb} GB, asked {size_gb} GB).",
                permanent=True,
            )
        if size_gb == current.size_gb:
            return current
        patch = {"spec": {"resources": {"requests": {"storage": f"{size_gb}Gi"}}}}
        try:
            grown = self.api.call(
                self.api.core.patch_namespaced_persistent_volume_claim, name, namespace, patch,
                _content_type=MERGE_PATCH,
            )  # fmt: skip
        except KubeApiError as exc:
            if exc.status not in RESIZE_REFUSED:
                raise
            raise ProviderError(
                "Kubernetes grows a PersistentVolumeClaim only where its StorageClass allows volume expansion "
                f"(allowVolumeExpansion: true): {exc.message}",
                permanent=True,
            ) from exc
        return provider_volume(grown, self.options)

    def delete(self, provider_volume_id: str) -> None:
        namespace, name = parse_volume_id(provider_volume_id)
        try:
            self.api.call(self.api.core.delete_namespaced_persistent_volume_claim, name, namespace)
        except KubeApiError as exc:
            if exc.status != NOT_FOUND:
                raise

    def tagged(self, tag: str) -> list[ProviderVolume]:
        return [provider_volume(claim, self.options) for claim in self._find(TAG_LABEL, label_value(tag, "tag"))]

    def _find(self, label: str, value: str) -> list[client.V1PersistentVolumeClaim]:
        """Every claim labelled `label=value`, page by page (selected by the server, checked again here)."""
        found: list[client.V1PersistentVolumeClaim] = []
        token: str | None = None
        while True:
            page = self.api.call(
                self.api.core.list_namespaced_persistent_volume_claim, self.options.namespace,
                label_selector=f"{label}={value}", limit=self.options.volume_page_size, _continue=token,
            )  # fmt: skip
            found += [c for c in page.items if ((c.metadata.labels if c.metadata else None) or {}).get(label) == value]
            token = page.metadata._continue if page.metadata else None
            if not token:
                return found

    def _read(self, namespace: str, name: str) -> client.V1PersistentVolumeClaim:
        return self.api.call(self.api.core.read_namespaced_persistent_volume_claim, name, namespace)


def provider_volume(claim: client.V1PersistentVolumeClaim, options: DriverOptions) -> ProviderVolume:
    """What a claim says: its requested size (the capacity may trail a resize), labels, region."""
    meta = claim.metadata or client.V1ObjectMeta()
    labels = meta.labels or {}
    requests = (claim.spec.resources.requests if claim.spec and claim.spec.resources else None) or {}
    return ProviderVolume(
        provider_volume_id=f"{meta.namespace or options.namespace}/{meta.name}",
        volume_id=labels.get(VOLUME_LABEL, ""),
        tag=labels.get(TAG_LABEL, ""),
        size_gb=_gib(requests.get("storage")),
        region=labels.get(REGION_LABEL, options.region),
    )


def _gib(value: str | None) -> int:
    """GB from a storage quantity: "20Gi" as we write them, else whole units (bytes) rounded down."""
    match = _GIB.match(value or "")
    return int(match["n"]) if match else quantity(value) // 2**30
