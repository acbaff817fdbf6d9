from __future__ import annotations

from django.apps import AppConfig

from fleet.workloads import register


class DeploymentsConfig(AppConfig):
    name = "deployments"

    def ready(self) -> None:
        # Model deployments are the fleet's workload: the fleet asks them what a replica runs, who
        # pays for it and what its changes mean (fleet.workloads), without importing them.
        from deployments.workload import DeploymentWorkload  # noqa: PLC0415 - models must be loaded first

        register(DeploymentWorkload())
