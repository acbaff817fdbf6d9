"""The local provider's storage volumes: a directory per volume on this machine, beside its metadata.

A pod on the local provider sees its volume's directory at the mount path (the next step: pods). A
plain directory has no quota: the size is what bills and what a pod is told, not a limit the kernel
enforces here (the clouds' volumes are real block or network disks of that size).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from fleet.providers.base import ProviderError, ProviderVolume, VolumeSpec

META_FILE = "volume.json"
DATA_DIR = "data"  # what a pod mounts; the metadata stays outside it, out of the pod's reach
_SAFE_ID = re.compile(r"^[a-z0-9_]{1,60}$")  # ours (vol_...): never a path of someone else's choosing


class LocalVolumes:
    def __init__(self, root: Path) -> None:
        self.root = root

    def create(self, spec: VolumeSpec) -> ProviderVolume:
        home = self._home(spec.volume_id)
        if (home / META_FILE).exists():  # created before (a retried task)
            return self._read(spec.volume_id)
        (home / DATA_DIR).mkdir(parents=True, exist_ok=True)
        meta = {"tag": spec.tag, "name": spec.name, "size_gb": spec.size_gb, "region": spec.region}
        self._write(home, meta)
        return self._read(spec.volume_id)

    def resize(self, volume_id: str, size_gb: int) -> ProviderVolume:
        home = self._home(volume_id)
        meta = self._meta(home)
        if meta is None:
            raise ProviderError(f"No local volume {volume_id}.", permanent=True)
        if size_gb < int(str(meta["size_gb"])):
            raise ProviderError("A volume only grows.", permanent=True)
        self._write(home, {**meta, "size_gb": size_gb})
        return self._read(volume_id)

    def delete(self, volume_id: str) -> None:
        shutil.rmtree(self._home(volume_id), ignore_errors=True)

    def list(self, tag: str) -> list[ProviderVolume]:
        if not self.root.is_dir():
            return []
        found = [self._read(home.name) for home in sorted(self.root.iterdir()) if self._meta(home) is not None]
        return [volume for volume in found if volume.tag == tag]

    def data_path(self, volume_id: str) -> Path:
        """Where a pod's mount of this volume points."""
        return self._home(volume_id) / DATA_DIR

    def _home(self, volume_id: str) -> Path:
        if not _SAFE_ID.match(volume_id):
            raise ProviderError(f"Not a volume id: {volume_id!r}.", permanent=True)
        return self.root / volume_id

    def _meta(self, home: Path) -> dict[str, object] | None:
        path = home / META_FILE
        return json.loads(path.read_text()) if path.is_file() else None

    def _write(self, home: Path, meta: dict[str, object]) -> None:
        staged = home / (META_FILE + ".new")  # a crash mid-write leaves the old metadata, never half of it
        staged.write_text(json.dumps(meta))
        staged.replace(home / META_FILE)

    def _read(self, volume_id: str) -> ProviderVolume:
        meta = self._meta(self._home(volume_id)) or {}
        return ProviderVolume(
            provider_volume_id=volume_id, volume_id=volume_id, tag=str(meta.get("tag", "")),
            size_gb=int(str(meta.get("size_gb", 0))), region=str(meta.get("region", "")),
        )  # fmt: skip
