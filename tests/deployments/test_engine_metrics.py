"""Queue depth from the engines' /metrics: vLLM's `vllm:num_requests_waiting` (the simulator keeps
vLLM's scheduler contract: past --max-num-seqs requests wait) and llama.cpp's
`llamacpp:requests_deferred` (text as the real server prints it); summed over a deployment's ready
replicas; a replica that does not answer is unknown, never an empty queue."""

from __future__ import annotations

import threading

import httpx
import pytest

from fleet.engines import queue_depths, waiting_in
from fleet.models import Instance
from tests.fakes.engine_server import Engine, EngineThread
from tests.support.gateway import ENGINE_KEY, eventually, serving_deployment
from tests.support.personas import Persona

pytestmark = pytest.mark.django_db

# Captured from xllamacpp's server (`endpoint_metrics`) with --parallel 1 and three requests sent.
LLAMA_CPP = """# HELP llamacpp:requests_processing Number of requests processing
# TYPE llamacpp:requests_processing gauge
llamacpp:requests_processing 1
# HELP llamacpp:requests_deferred Number of requests deferred
# TYPE llamacpp:requests_deferred gauge
llamacpp:requests_deferred 2
"""


def test_both_engines_formats_are_read() -> None:
    assert waiting_in(LLAMA_CPP) == 2.0
    vllm = 'vllm:num_requests_waiting{engine="0",model_name="m"} 3.0\nvllm:num_requests_running{model_name="m"} 8.0\n'
    assert waiting_in(vllm) == 3.0
    assert waiting_in("# nothing here\nprocess_cpu_seconds_total 1.5\n") is None


def test_requests_past_the_engines_slots_are_counted_per_deployment(alice: Persona) -> None:
    engines = [EngineThread(Engine(api_key=ENGINE_KEY)), EngineThread(Engine(api_key=ENGINE_KEY))]
    for engine in engines:
        engine.engine.behaviour.max_running = 1
        engine.engine.behaviour.ttft_ms = 4000  # the first on each engine holds its slot while the rest arrive
    with engines[0], engines[1]:
        deployment = serving_deployment(alice, engines)
        assert queue_depths([deployment]) == {deployment.pk: 0.0}  # answered: an empty queue

        def ask(engine: EngineThread) -> None:
            body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
            httpx.post(f"{engine.url}/v1/chat/completions", headers={"Authorization": f"Bearer {ENGINE_KEY}"},
                       json=body, timeout=30)  # fmt: skip

        load = [threading.Thread(target=ask, args=(engines[0],)) for _ in range(3)]
        load.append(threading.Thread(target=ask, args=(engines[1],)))
        for thread in load:
            thread.start()
        # 3 on one slot: 2 waiting; 1 on the other (all four arrive within a moment; on a loaded
        # machine that moment can be seconds, so the figure is awaited rather than read once).
        assert eventually(lambda: queue_depths([deployment]) == {deployment.pk: 2.0}, timeout=3.5), queue_depths(
            [deployment]
        )
        for engine in engines:  # counted: the queued requests need not take 4 s each now
            engine.engine.behaviour.ttft_ms = 0
        for thread in load:
            thread.join()


def test_a_replica_that_does_not_answer_is_unknown(alice: Persona) -> None:
    engine = EngineThread(Engine(api_key=ENGINE_KEY))
    with engine:
        deployment = serving_deployment(alice, [engine])
        Instance.objects.filter(deployment=deployment).update(api_key="wrong")  # 401: no figure
        assert queue_depths([deployment]) == {}
    assert queue_depths([deployment]) == {}  # gone: no figure either
