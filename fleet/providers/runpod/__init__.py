"""The runpod driver: RunPod pods through its REST API v2 (docs: the published OpenAPI description,
../shared/reference/providers/runpod-rest-v2.openapi.json; the part used is vendored in
tests/fakes/clouds/specs/runpod.json).

Modules: `options` parses the provider's config, `api` is the HTTP seam with RunPod's error and
rate-limit shapes, `catalog` turns the GPU catalog into offers and launch candidates, `pods` builds
the create request and reads a pod, `logs` reads the log stream, `driver` puts them together behind
the Driver contract.
"""
