"""The OpenAI-compatible gateway at /v1: a plain ASGI app in front of Django (no sync middleware on
the hot path). Key lookups and routing tables are cached for seconds, so a request normally
touches no database; engines are called through the gateway's own pooled HTTP/1.1 client
(engine_client.py), one pool per event loop.

    app.py      parse, authenticate, route, admit, relay, measure (the request's whole way)
    bodies.py   request bodies: per-route size limits (413), a per-process budget for large ones
                (503), audio uploads relayed to the engine as they arrive
    validation.py  requests checked against OpenAI's request schemas (400 with `param`)
    keys.py     bearer key -> Caller (cached; a revocation drops it at commit, KEY_CACHE_SECONDS at worst)
    access_listener.py  every process's Redis subscription to access changes (revocations, grants, roles)
    sessions.py signed-in session -> Caller on the per-deployment chat routes (cached), CSRF-checked
    routing.py  model or deployment id -> Route of ready replicas; least-busy pick, ejection
    wake.py     cold deployments: wake with a credit hold, 202 or wait for readiness
    hf_models.py  a Hugging Face id the org has not deployed: deployed cold first (GPUCLOUD_HF_MODELS)
    limits.py   per-deployment concurrency limit (429), in memory or Redis
    relay.py    forward to an engine, JSON whole or SSE event by event, retry once elsewhere
    engine_client.py  keep-alive connections to engines, answers parsed by httptools; failures told apart
    shapes.py   answers repaired to OpenAI's schemas; usage and tokens read from them
    counters.py per-minute sums per deployment, flushed every second to deployments/traffic.py
    listing.py  GET /v1/models with availability instant / deploying / cold
"""
