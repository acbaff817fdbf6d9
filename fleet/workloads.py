"""What the fleet asks of the workloads its instances serve, without importing them.

The fleet sits below the workloads (DESIGN §4): it launches, watches and terminates instances, but
what an instance runs, whom it bills and what a change means to its owner belong to the workload
(today a model deployment; pods are the next kind). The workload app registers one `Workload` when
Django is ready (deployments.apps); the fleet calls it at the points below, inside the transaction
that changed the instance where one is open.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from accounts.models import Organization
    from billing.models import Service
    from fleet.models import Instance
    from fleet.providers.base import InstanceSpec


@dataclass(frozen=True)
class BillingSubject:
    """Who pays for an instance's time and how it reads on their statement."""

    org: Organization
    service: Service
    description: str


@dataclass
class Convergence:
    replaced: list[str] = field(default_factory=list)  # new instances for owners short of replicas
    rolled: dict[str, str] = field(default_factory=dict)  # owners rolling to a new configuration: the step each took


class Workload(ABC):
    @abstractmethod
    def instance_spec(self, instance: Instance) -> InstanceSpec:
        """What the instance is to run (image or engine, model, secret, GPU, region)."""

    @abstractmethod
    def billing_subject(self, instance: Instance) -> BillingSubject:
        """Whose balance the instance's time is charged to, and the statement line."""

    @abstractmethod
    def instance_changed(self, instance: Instance, previous: str, reason: str) -> None:
        """The instance moved from `previous` to its current state (already saved): record it."""

    @abstractmethod
    def instance_noted(self, instance: Instance, reason: str) -> None:
        """Something happened to the instance that did not change its state (a stray reaped)."""

    @abstractmethod
    def owner_lock(self, instance_id: str) -> None:
        """Lock the row of the instance's owner, inside the caller's transaction. The one lock order
        is owner, then its instances (then the ledger): an owner's own changes (delete, scale) lock
        it and then its instances, so the fleet locks the owner before it locks an instance."""

    @abstractmethod
    def owner_refresh(self, instance: Instance) -> None:
        """Re-derive the owner's status from its instances (after any change of this one)."""

    @abstractmethod
    def instance_lost(self, instance: Instance) -> None:
        """The provider lost a live instance (recorded as terminated): replace it if still wanted."""

    @abstractmethod
    def instance_preempted(self, instance: Instance, reason: str) -> None:
        """The provider took a spot instance back (recorded as terminated): tell the owner (an event,
        a webhook) and replace it if still wanted."""

    @abstractmethod
    def instance_settled(self, instance_id: str) -> None:
        """The instance is ready, or will not be (failed, no capacity): the owner's next step."""

    @abstractmethod
    def converge(self) -> Convergence:
        """The reconciler's last step: owners short of replicas (after a loss or a platform restart)
        get them, and rollouts take their next step (if their task was lost, this finishes them)."""


_workload: Workload | None = None


def register(workload: Workload) -> None:
    global _workload
    _workload = workload


def workload() -> Workload:
    if _workload is None:
        raise RuntimeError("No workload registered with the fleet (is the deployments app installed?)")
    return _workload
