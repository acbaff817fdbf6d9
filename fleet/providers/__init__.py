"""Provider drivers: one subpackage per provider, all implementing `base.Driver`.

Adding a provider = copy `local/` (or `kubernetes/`), implement the six methods against the
provider's API through one HTTP/client seam, and register its dotted path in `registry.py`.
"""
