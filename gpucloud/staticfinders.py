"""Front-end assets vendored from Python packages (nothing is fetched from a CDN at run time)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.contrib.staticfiles.finders import BaseFinder
from django.core.files.storage import FileSystemStorage

# The plotly wheel ships the browser bundle its Python API embeds in figures; the charts load it as
# a static file. Only this file is exposed, not the package's datasets and templates.
_plotly = importlib.util.find_spec("plotly")
PLOTLY_DIR = Path(_plotly.origin or "").parent / "package_data" if _plotly else Path("/nonexistent")
VENDORED = {"vendor/plotly.min.js": PLOTLY_DIR / "plotly.min.js"}


class VendoredFinder(BaseFinder):
    def check(self, **kwargs: Any) -> list[Any]:
        return []

    def find(self, path: str, find_all: bool = False, **kwargs: Any) -> Any:
        found = VENDORED.get(path)
        if found is None or not found.exists():
            return []
        return [str(found)] if find_all else str(found)

    def list(self, ignore_patterns: Any) -> Iterator[tuple[str, FileSystemStorage]]:
        for path, source in VENDORED.items():
            storage = FileSystemStorage(location=str(source.parent))
            storage.prefix = str(Path(path).parent)  # type: ignore[attr-defined]  # collectstatic reads it
            yield source.name, storage
