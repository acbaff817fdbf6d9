"""How an offer names several GPUs of one type: the catalog's slug with the count (`h100` x 8 is
`h100_8`, as the cloud drivers write it: fleet/providers/cloud/gpus.py); one GPU is the slug itself."""

from __future__ import annotations


def offer_slug(slug: str, count: int) -> str:
    """The offers' name for `count` GPUs of the catalog's type `slug`."""
    return slug if count == 1 else f"{slug}_{count}"


def base_slug(slug: str, count: int) -> str:
    """The one-GPU type of an offer of `count` GPUs named `slug` (the inverse of offer_slug)."""
    suffix = f"_{count}"
    return slug[: -len(suffix)] if count > 1 and slug.endswith(suffix) else slug
