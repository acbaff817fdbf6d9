"""What each GPU cloud's test module did to its test clouds, for an issue's closing note: requests,
requests or answers that broke the cloud's description, launches, terminations the cloud carried out
and the platform confirmed, machines left after the kill tests, preemptions replaced and how fast.

One line per test module at the end of the run, counting only that module's traffic: a tally belongs
to the module of the test running when it is counted (pytest-django runs a module's transactional
tests apart from its others, and the pods modules share the cloud modules' fixtures, so a tally kept
in a module's globals and printed by a module fixture printed twice, the second time with the other
module's traffic). Under xdist each worker hands its lines to the controller, which prints them."""

from __future__ import annotations

from collections.abc import Generator, Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest


@dataclass
class CloudTally:
    cloud: str
    requests: int = 0
    schema_errors: int = 0
    launches: int = 0
    terminated_at_cloud: int = 0
    confirmed: set[str] = field(default_factory=set)  # instances whose termination the platform recorded
    leaks_after_kills: int = 0
    replaced_in: list[float] = field(default_factory=list)  # seconds from a preemption to its replacement

    def confirm(self, instance_ids: Iterable[str]) -> None:
        self.confirmed.update(instance_ids)

    def add(self, other: dict[str, Any]) -> None:
        """Another process's tally of the same module (xdist may split a module between workers)."""
        for name in ("requests", "schema_errors", "launches", "terminated_at_cloud", "leaks_after_kills"):
            setattr(self, name, getattr(self, name) + other[name])
        self.confirmed.update(other["confirmed"])
        self.replaced_in.extend(other["replaced_in"])

    def line(self, module: str) -> str:
        replaced = ", ".join(f"{seconds:.2f} s" for seconds in self.replaced_in)
        return (
            f"{self.cloud} test clouds ({module}): {self.requests} requests, {self.schema_errors} broke the "
            f"description; {self.launches} launches, {self.terminated_at_cloud} terminated at the cloud, "
            f"{len(self.confirmed)} terminations confirmed by the platform; {self.leaks_after_kills} leaked after "
            f"the kill tests; {len(self.replaced_in)} preemptions replaced{f' in {replaced}' if replaced else ''}"
        )


_tallies: dict[str, CloudTally] = {}
_running = {"module": ""}


def tally(cloud: str) -> CloudTally:
    """The tally of the test module whose test (setup, call or teardown) runs now."""
    return _tallies.setdefault(_running["module"], CloudTally(cloud))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, object, object]:
    _running["module"] = item.nodeid.split("::")[0]
    return (yield)


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: the controller adds it up and prints
        workeroutput["cloud_tallies"] = {
            module: {**vars(t), "confirmed": sorted(t.confirmed)} for module, t in _tallies.items()
        }


@pytest.hookimpl(optionalhook=True)  # an xdist hook: absent without xdist
def pytest_testnodedown(node: Any, error: object) -> None:
    for module, figures in getattr(node, "workeroutput", {}).get("cloud_tallies", {}).items():
        _tallies.setdefault(module, CloudTally(figures["cloud"])).add(figures)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _tallies:
        terminalreporter.section("GPU cloud test tallies")
        for module, figures in sorted(_tallies.items()):
            terminalreporter.write_line(figures.line(module))
