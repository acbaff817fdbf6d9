"""An instance's state changes, each told to the workload it serves (which records it)."""

from __future__ import annotations

from fleet.models import Instance, InstanceState
from fleet.workloads import workload


def instance_transition(instance: Instance, to: InstanceState, reason: str = "", **fields: object) -> None:
    """Move an instance (already locked by the caller) to `to`, saving `fields` with it."""
    previous = instance.state
    instance.state = to
    for name, value in fields.items():
        setattr(instance, name, value)
    instance.save(update_fields=["state", *fields])
    if previous != to:
        workload().instance_changed(instance, previous, reason)
