"""The autoscaler's decision for one deployment at one check, as a pure function of its settings,
what it measured and what it remembers (the streaks), so that a fake clock and a scripted load can
drive it in tests.

Rules (issue 8): scale up one replica after 3 consecutive checks above target, down one after 3
below, never outside [min, max]; to zero after `idle_timeout_seconds` without a request when
scale-to-zero is on and min is 0 (the next request wakes it through the gateway); a deployment
outside its bounds (settings just changed) is brought inside at once.

SLA-driven: while the deployment misses one of its SLA targets (an open breach, deployments/sla.py)
a check counts as above target whatever the load says, and it never scales down: a latency target
missed at low concurrency still gets a replica (up to max).
"""

from __future__ import annotations

from dataclasses import dataclass

CHECKS_TO_ACT = 3


@dataclass(frozen=True)
class Policy:
    min_replicas: int
    max_replicas: int
    scale_to_zero: bool
    idle_timeout_seconds: int
    target: float  # requests per replica (in flight, or queued, per the deployment's metric)
    follow_load: bool = True  # False when the metric is not measured: bounds and idle only


@dataclass(frozen=True)
class Streaks:
    """What the autoscaler remembers between checks."""

    above: int = 0
    below: int = 0


@dataclass(frozen=True)
class Decision:
    replicas: int
    streaks: Streaks
    reason: str  # empty when nothing changes

    @property
    def changed(self) -> bool:
        return bool(self.reason)


def decide(
    policy: Policy,
    streaks: Streaks,
    *,
    replicas: int,
    load: float,
    idle_seconds: float | None,
    sla_missed: str = "",
) -> Decision:
    """`load`: the metric summed over the deployment (e.g. requests in flight now); `idle_seconds`:
    time since its last request (None: none yet, counted as idle since it started); `sla_missed`:
    which SLA target the deployment misses now, if any (e.g. "TTFT p95 812 ms > 500 ms")."""
    floor = max(policy.min_replicas, 0 if policy.scale_to_zero else 1)
    if replicas < floor or replicas > policy.max_replicas:
        bounded = min(max(replicas, floor), policy.max_replicas)
        return Decision(bounded, Streaks(), f"Brought within {policy.min_replicas} to {policy.max_replicas} replicas.")
    if replicas == 0:
        return Decision(0, Streaks(), "")  # the gateway's wake path starts it on the next request
    idle_for = idle_seconds if idle_seconds is not None else float("inf")
    if policy.scale_to_zero and policy.min_replicas == 0 and load == 0 and idle_for >= policy.idle_timeout_seconds:
        return Decision(0, Streaks(), f"Scaled to zero after {policy.idle_timeout_seconds} s without requests.")
    if sla_missed:
        streaks = Streaks(above=streaks.above + 1)
        if streaks.above >= CHECKS_TO_ACT and replicas < policy.max_replicas:
            return Decision(replicas + 1, Streaks(), f"SLA missed ({sla_missed}) for {CHECKS_TO_ACT} checks.")
        return Decision(replicas, streaks, "")
    if not policy.follow_load:
        return Decision(replicas, Streaks(), "")
    per_replica = load / replicas
    if per_replica > policy.target:
        streaks = Streaks(above=streaks.above + 1)
        if streaks.above >= CHECKS_TO_ACT and replicas < policy.max_replicas:
            return Decision(replicas + 1, Streaks(), _why("above", per_replica, policy.target))
        return Decision(replicas, streaks, "")
    # Below: one replica fewer would still stay at or under target.
    if replicas > max(floor, 1) and load <= policy.target * (replicas - 1):
        streaks = Streaks(below=streaks.below + 1)
        if streaks.below >= CHECKS_TO_ACT:
            return Decision(replicas - 1, Streaks(), _why("below", per_replica, policy.target))
        return Decision(replicas, streaks, "")
    return Decision(replicas, Streaks(), "")


def _why(side: str, per_replica: float, target: float) -> str:
    return f"{per_replica:.1f} requests per replica, {side} the target of {target:g}, for {CHECKS_TO_ACT} checks."
