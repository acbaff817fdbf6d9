"""Model deployments as the fleet's workload (fleet.workloads): what a replica runs, who pays for
it, and what each change of a replica means to its deployment. Registered when Django is ready
(deployments.apps)."""

from __future__ import annotations

from billing.models import Service
from catalog.models import CloudType
from deployments.lifecycle import deployment_refresh_status, workload_event_emit
from deployments.models import Deployment, DeploymentEvent, DeploymentKind, DeploymentStatus, RolloutState
from deployments.pod_spec import pod_instance_spec, pod_preempted
from deployments.preset_rollout import rolling_deployment_of, rollout_advance
from deployments.services import billed_as, replica_add_if_short
from fleet.models import FINAL_STATES, Instance
from fleet.providers.base import InstanceSpec, Tier
from fleet.workloads import BillingSubject, Convergence, Workload
from gpucloud.core.jobs import enqueue


class DeploymentWorkload(Workload):
    def instance_spec(self, instance: Instance) -> InstanceSpec:
        """Its own GPU class and preset (during a preset rollout they differ from replica to replica),
        or its deployment's for a row that predates that record."""
        deployment = instance.deployment
        if deployment.kind in (DeploymentKind.POD, DeploymentKind.CONTAINER):  # an image (a container's on a Pod row)
            return pod_instance_spec(instance, deployment.pod)
        model = deployment.model
        gpu_type, _ = instance.config(deployment)
        preset = instance.preset if instance.gpu_type_id else deployment.preset
        assert model is not None and gpu_type and deployment.region_id
        return InstanceSpec(
            instance_id=instance.pk,
            tag=instance.tag,
            engine=model.engine,
            model=model.engine_args,
            # What requests name it by: an HF model's id (vLLM answers only the names it serves).
            served_model_name=model.hf_id or model.slug,
            api_key=instance.api_key,
            gpu_type=gpu_type,
            region=deployment.region_id,
            spot=deployment.spot,
            tier=None if deployment.cloud_type == CloudType.ANY else Tier(deployment.cloud_type),
            provider=deployment.provider or None,
            # A preset's engine configuration (dtype, batch size, quantization) overrides the model's.
            engine_args={**model.engine_args, **(preset.engine_config if preset else {})},
        )

    def billing_subject(self, instance: Instance) -> BillingSubject:
        deployment = instance.deployment
        gpu_type = instance.gpu_type or deployment.gpu_type
        gpu = gpu_type.name if gpu_type else "?"
        if deployment.kind in (DeploymentKind.POD, DeploymentKind.CONTAINER):
            count = deployment.pod.gpu_count
            what = f"{deployment.kind} {deployment.pod.image} on {f'{count}x ' if count > 1 else ''}{gpu}"
            return BillingSubject(org=deployment.org, service=billed_as(deployment),
                                  description=f"{deployment.name}: {what}")  # fmt: skip
        model = deployment.model.name if deployment.model else "?"
        return BillingSubject(
            org=deployment.org, service=Service.MODEL, description=f"{deployment.name}: {model} on {gpu}"
        )

    def instance_changed(self, instance: Instance, previous: str, reason: str) -> None:
        DeploymentEvent.objects.create(
            deployment_id=instance.deployment_id, instance=instance, from_status=previous, to_status=instance.state,
            reason=reason,
        )  # fmt: skip

    def instance_noted(self, instance: Instance, reason: str) -> None:
        DeploymentEvent.objects.create(
            deployment_id=instance.deployment_id, instance=instance, from_status=instance.state,
            to_status=instance.state, reason=reason,
        )  # fmt: skip

    def owner_lock(self, instance_id: str) -> None:
        # FOR UPDATE OF the deployment only: the join just finds it.
        list(Deployment.objects.select_for_update(of=("self",)).filter(instances__pk=instance_id).values("pk"))

    def owner_refresh(self, instance: Instance) -> None:
        deployment_refresh_status(instance.deployment)

    def instance_lost(self, instance: Instance) -> None:
        replica_add_if_short(instance.deployment)

    def instance_preempted(self, instance: Instance, reason: str) -> None:
        workload_event_emit(instance.deployment, "deployment.preempted", key=instance.pk, instance_id=instance.pk,
                            provider=instance.provider, reason=reason)  # fmt: skip
        if instance.deployment.kind == DeploymentKind.POD:  # as RunPod does: a spot pod taken back stops
            pod_preempted(instance.deployment, reason)
            return
        replica_add_if_short(instance.deployment)

    def instance_settled(self, instance_id: str) -> None:
        """A replica of a rolling deployment is ready or will not be: the rollout's next step now,
        rather than at the reconciler's next round."""
        deployment_id = rolling_deployment_of(instance_id)
        if deployment_id is not None:
            enqueue("deployments.tasks.deployment_rollout_task", deployment_id)

    def converge(self) -> Convergence:
        """A rollout launches its new replica before an old one leaves, so replicas of either
        configuration count toward what the deployment wants."""
        done = Convergence()
        for deployment_id in Deployment.objects.filter(rollout_state=RolloutState.ROLLING).values_list("pk", flat=True):
            done.rolled[deployment_id] = rollout_advance(deployment_id=deployment_id)
        wanting = Deployment.objects.exclude(
            status__in=[
                DeploymentStatus.STOPPING,
                DeploymentStatus.STOPPED,
                DeploymentStatus.FAILED,
                DeploymentStatus.SCALED_TO_ZERO,
            ]
        )
        # A pod is one machine its owner starts again; replicas of the others are kept up to what they want.
        for deployment in wanting.filter(kind__in=(DeploymentKind.MODEL, DeploymentKind.CONTAINER)):
            missing = deployment.desired_replicas - deployment.instances.exclude(state__in=FINAL_STATES).count()
            for _ in range(max(0, missing)):
                added = replica_add_if_short(deployment)
                if added is None:
                    break
                done.replaced.append(added.pk)
        return done
