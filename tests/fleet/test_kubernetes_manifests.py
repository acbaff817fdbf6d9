"""Every object the kubernetes driver writes is valid Kubernetes: the Secret, Service and Deployment
of each kind of instance, serialized as the client sends them, pass the strict OpenAPI schema of
Kubernetes 1.37 (tests/support/k8s_schema.py); the same check rejects a broken manifest.

The objects are built by `instance_objects`, the one function the driver's launch takes them from;
`test_the_driver_sends_exactly_these_bodies` proves the bodies that reach the API server are these.
The README's Kubernetes examples are held to the same standard: its config parses, its RBAC objects
pass the schema and permit every request a whole instance lifecycle makes.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kmock
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from fleet.providers.base import InstanceSpec, Offer, Tier, VolumeSpec
from fleet.providers.containers import VLLM_ROCM_IMAGE, VLLM_SERVER
from fleet.providers.kubernetes.driver import KubernetesDriver
from fleet.providers.kubernetes.manifests import InstanceObjects, Placement, instance_labels, instance_objects
from fleet.providers.kubernetes.options import AMD_GPU, NVIDIA_GPU, DriverOptions
from fleet.providers.kubernetes.volumes import volume_claim
from fleet.providers.registry import driver_for
from tests.support.k8s_emulator import MERGE_PATCH, TIMEOUT, EmulatedCluster, add_node, add_pod, add_storage_class
from tests.support.k8s_schema import KUBERNETES_VERSION, schema_check, wire

API_KEY = "sk-engine-7f3a9c"
LLAMA = {"hf_repo": "meta-llama/Llama-3.1-8B-Instruct", "dtype": "bfloat16", "max_model_len": 32768}
GGUF = {"hf_repo": "bartowski/SmolLM2-135M-Instruct-GGUF", "hf_file": "SmolLM2-135M-Instruct-Q4_K_M.gguf"}
ROCM_VLLM = "registry.example/vllm-rocm:0.11.0"
README = Path(__file__).resolve().parents[2] / "README.md"
H100_NODE = {"gpucloud.io/gpu-type": "h100", "topology.kubernetes.io/region": "atl1"}
H100 = Placement(node_gpu_type="h100", region="atl1", spot=False, gpu_resource=NVIDIA_GPU, gpus=1)


def spec(engine: str = "vllm", **overrides: Any) -> InstanceSpec:
    fields: dict[str, Any] = {
        "instance_id": "inst_abc123", "tag": "gpucloud-test", "engine": engine, "model": dict(LLAMA),
        "served_model_name": "llama-3.1-8b-instruct", "api_key": API_KEY, "gpu_type": "h100", "region": "atl1",
        "engine_args": dict(LLAMA),
    }  # fmt: skip
    return InstanceSpec(**{**fields, **overrides})


# Each kind of instance the driver launches: (spec, placement, provider config).
CASES: dict[str, tuple[InstanceSpec, Placement, dict[str, Any]]] = {
    "vllm-1-gpu": (spec(), H100, {}),
    "vllm-4-gpus-spot": (
        spec(gpu_count=4, engine_args={**LLAMA, "max_num_seqs": 256, "quantization": "int8"}),
        Placement(node_gpu_type="h100", region="tor1", spot=True, gpu_resource=NVIDIA_GPU, gpus=4),
        {},
    ),
    "vllm-embeddings": (spec(engine_args={"hf_repo": "BAAI/bge-m3", "task": "embed"}), H100, {}),
    "vllm-amd-8x": (
        spec(gpu_type="mi300x_8", region="nyc2"),
        Placement(node_gpu_type="mi300x", region="nyc2", spot=False, gpu_resource=AMD_GPU, gpus=8),
        {"amd_vllm_image": ROCM_VLLM},
    ),
    "vllm-fixed-region": (spec(), H100, {"region": "ric1", "namespace": "ml-serving"}),
    "vllm-hf-token": (spec(), H100, {"hf_token_secret": "hf-token"}),
    "llamacpp-hf-file": (spec("llama.cpp", model=dict(GGUF), engine_args={}), H100, {}),
    "llamacpp-url-embedding-amd": (
        spec("llama.cpp", model={"url": "https://models.example/e5.gguf", "embedding": True}, engine_args={}),
        Placement(node_gpu_type="mi300x", region="nyc2", spot=False, gpu_resource=AMD_GPU, gpus=1),
        {"hf_token_secret": "hf-token"},
    ),
    "custom-container-node-port": (
        spec("container", image="example/app:2", command=["serve", "--fast"], ports=[9000], env={"MODE": "fast"}),
        H100,
        {"service_type": "NodePort"},
    ),
    "custom-container-default-port": (spec("container", image="example/app:2"), H100, {}),
}


def objects(case: str) -> InstanceObjects:
    instance, placement, config = CASES[case]
    return instance_objects(instance, placement, DriverOptions.from_config(config))


def bodies(made: InstanceObjects) -> list[dict[str, Any]]:
    return [wire(made.secret), wire(made.service), wire(made.deployment)]


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_object_the_driver_writes_passes_the_strict_kubernetes_schema(case: str) -> None:
    manifests = bodies(objects(case))

    assert [(m["apiVersion"], m["kind"]) for m in manifests] == [
        ("v1", "Secret"), ("v1", "Service"), ("apps/v1", "Deployment"),
    ]  # fmt: skip
    assert [schema_check(m) for m in manifests] == [KUBERNETES_VERSION] * 3


def test_the_manifests_say_what_each_kind_runs() -> None:
    """The cases above are the kinds they are named after (so the schema test covers them)."""

    def container(case: str) -> dict[str, Any]:
        [engine] = wire(objects(case).deployment)["spec"]["template"]["spec"]["containers"]
        return dict(engine)

    assert container("vllm-1-gpu")["resources"] == {"limits": {"nvidia.com/gpu": "1"}}
    assert container("vllm-4-gpus-spot")["args"][-2:] == ["--tensor-parallel-size", "4"]
    amd = container("vllm-amd-8x")
    assert (amd["image"], amd["resources"], amd["args"][-1]) == (ROCM_VLLM, {"limits": {"amd.com/gpu": "8"}}, "8")
    llamacpp = container("llamacpp-hf-file")
    assert (llamacpp["image"], llamacpp["args"][:4]) == (
        "ghcr.io/ggml-org/llama.cpp:server-cuda", ["--hf-repo", GGUF["hf_repo"], "--hf-file", GGUF["hf_file"]],
    )  # fmt: skip
    assert container("llamacpp-url-embedding-amd")["image"] == "ghcr.io/ggml-org/llama.cpp:server-rocm"
    custom = container("custom-container-node-port")
    assert (custom["command"], custom["readinessProbe"]) == (
        ["serve", "--fast"], {"periodSeconds": 10, "tcpSocket": {"port": 9000}},
    )  # fmt: skip
    assert wire(objects("custom-container-node-port").service)["spec"]["type"] == "NodePort"
    assert [e["name"] for e in container("vllm-hf-token")["env"]] == ["VLLM_API_KEY", "HF_TOKEN"]


@pytest.mark.parametrize(
    ("breakage", "path", "message"),
    [
        # A snake_case attribute name written into a dict by hand: the API server drops or refuses it.
        (lambda d: d["spec"]["template"]["spec"].update(automount_service_account_token=False),
         ["spec", "template", "spec"], "'automount_service_account_token' was unexpected"),
        (lambda d: d["spec"]["template"]["spec"]["containers"][0].update(gpus=8),
         ["spec", "template", "spec", "containers", 0], "'gpus' was unexpected"),
        (lambda d: d["spec"].update(replicas="1"), ["spec", "replicas"], "'1' is not of type 'integer'"),
        (lambda d: d["spec"]["template"]["spec"]["containers"][0].pop("name"),
         ["spec", "template", "spec", "containers", 0], "'name' is a required property"),
    ],
    ids=["snake-case-field", "unknown-field", "wrong-type", "missing-required"],
)  # fmt: skip
def test_the_schema_check_rejects_a_broken_deployment(breakage: Any, path: list[Any], message: str) -> None:
    broken = wire(objects("vllm-1-gpu").deployment)
    breakage(broken)

    with pytest.raises(kubernetes_validate.ValidationError) as caught:
        schema_check(broken)

    assert (list(caught.value.path), caught.value.version) == (path, KUBERNETES_VERSION)
    assert message in caught.value.message


def test_the_schema_check_is_strict_where_the_lenient_schema_is_not() -> None:
    broken = copy.deepcopy(wire(objects("vllm-1-gpu").service))
    broken["spec"]["target_port"] = 8000

    assert kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=False) == KUBERNETES_VERSION
    with pytest.raises(kubernetes_validate.ValidationError):
        schema_check(broken)


# --- what the manifests found ----------------------------------------------------------------


def test_the_specs_own_env_cannot_replace_the_engine_key_or_the_hf_token() -> None:
    """The kubelet keeps the last of two variables with one name: a spec naming the engine's key
    variable (empty, an engine without a key) must not override the Secret."""
    instance = spec(env={"VLLM_API_KEY": "", "HF_TOKEN": "hf_mine", "MODE": "fast"})

    with_token = instance_objects(instance, H100, DriverOptions(hf_token_secret="hf-token"))
    without_token = instance_objects(instance, H100, DriverOptions())

    def env(made: InstanceObjects) -> list[dict[str, Any]]:
        return list(wire(made.deployment)["spec"]["template"]["spec"]["containers"][0]["env"])

    key = {"name": "VLLM_API_KEY", "valueFrom": {"secretKeyRef": {"key": "api-key", "name": "gpc-inst-abc123"}}}
    hf = {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"key": "token", "name": "hf-token"}}}
    assert env(with_token) == [key, hf, {"name": "MODE", "value": "fast"}]
    assert env(without_token) == [key, {"name": "HF_TOKEN", "value": "hf_mine"}, {"name": "MODE", "value": "fast"}]
    assert schema_check(wire(with_token.deployment)) == KUBERNETES_VERSION


def test_vllm_on_amd_gpus_runs_the_rocm_build_and_llamacpp_gets_the_gpu_builds() -> None:
    amd = Placement(node_gpu_type="mi300x", region="nyc2", spot=False, gpu_resource=AMD_GPU, gpus=8)

    objects = instance_objects(spec(gpu_type="mi300x_8"), amd, DriverOptions())

    assert objects.deployment.spec and objects.deployment.spec.template.spec
    [container] = objects.deployment.spec.template.spec.containers
    # AMD's ROCm build has no server entry point of its own: vLLM's OpenAI server is started explicitly.
    assert (container.image, container.command) == (VLLM_ROCM_IMAGE, VLLM_SERVER)
    assert container.args and container.args[-2:] == ["--tensor-parallel-size", "8"]
    assert DriverOptions().images_for(NVIDIA_GPU).vllm == "vllm/vllm-openai:v0.11.0"
    assert DriverOptions().images_for(NVIDIA_GPU).llamacpp == "ghcr.io/ggml-org/llama.cpp:server-cuda"
    assert DriverOptions().images_for(AMD_GPU).llamacpp == "ghcr.io/ggml-org/llama.cpp:server-rocm"


# --- what goes over the wire -----------------------------------------------------------------


@pytest.fixture
def cluster() -> Iterator[EmulatedCluster]:
    emulated = EmulatedCluster()
    emulated.start()
    try:
        yield emulated
    finally:
        emulated.stop()


@pytest.mark.parametrize("case", ["vllm-hf-token", "custom-container-node-port"])
def test_the_driver_sends_exactly_these_bodies(cluster: EmulatedCluster, case: str) -> None:
    instance, placement, config = CASES[case]
    add_node(cluster, "h100-a", labels=H100_NODE, allocatable={"nvidia.com/gpu": "8"})
    driver = driver_for(slug="k8s", driver="kubernetes", config={"host": cluster.url, **config})
    assert isinstance(driver, KubernetesDriver)

    driver.launch(instance, Offer("k8s", "h100", 1, "atl1", Tier.SECURE, False, 1, 0, 1))
    driver.api.close()

    sent = [request.data for request in cluster.requests("POST")][-3:]  # after the test's own node
    assert sent == bodies(instance_objects(instance, placement, DriverOptions.from_config(config)))
    assert [schema_check(body) for body in sent] == [KUBERNETES_VERSION] * 3


# --- the README's examples (section "Kubernetes") ----------------------------------------------


def readme_blocks(language: str) -> list[str]:
    text = README.read_text()
    section = text[text.index("\n### Kubernetes\n") :]
    section = section[: section.index("\n## ")]
    return re.findall(rf"```{language}\n(.*?)```", section, re.DOTALL)


def test_the_readmes_config_is_a_valid_kubernetes_provider_config() -> None:
    [config] = readme_blocks("json")

    options = DriverOptions.from_config(json.loads(config))

    assert (options.namespace, options.hf_token_secret) == ("gpucloud", "hf-token")
    assert options.prices_micros == {"h100": 4_410_000, "mi300x_8": 20_700_000}


def test_the_readmes_rbac_objects_pass_the_schema() -> None:
    [rbac] = readme_blocks("yaml")
    documents = list(yaml.safe_load_all(rbac))

    assert [d["kind"] for d in documents] == [
        "Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
    ]  # fmt: skip
    assert [schema_check(d) for d in documents] == [KUBERNETES_VERSION] * 6
    assert documents[0]["metadata"]["name"] == DriverOptions().namespace


VERBS = {kmock.action.LIST: "list", kmock.action.FETCH: "get", kmock.action.CREATE: "create",
         kmock.action.DELETE: "delete", kmock.action.UPDATE: "patch"}  # fmt: skip


def permission(request: kmock.Request) -> tuple[str, str, str]:
    """What RBAC checks for `request`: (verb, API group, resource or resource/subresource)."""
    assert request.resource is not None and request.action is not None
    plural = str(request.resource.plural)
    resource = f"{plural}/{request.subresource}" if request.subresource else plural
    return VERBS[request.action], request.resource.group or "", resource


def allowed(request: kmock.Request, rules: dict[str | None, list[dict[str, Any]]]) -> bool:
    """Whether the README's ClusterRole (any namespace) or Role (its namespace) permits `request`."""
    verb, group, resource = permission(request)
    return any(
        group in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"]
        for rule in rules[None] + rules.get(request.namespace, [])
    )


def test_the_readmes_rbac_permits_every_request_the_driver_makes(cluster: EmulatedCluster) -> None:
    [rbac] = readme_blocks("yaml")
    roles = [d for d in yaml.safe_load_all(rbac) if d["kind"] in ("ClusterRole", "Role")]
    rules = {role["metadata"].get("namespace"): role["rules"] for role in roles}
    add_node(cluster, "h100-a", labels=H100_NODE, allocatable={"nvidia.com/gpu": "8"})
    config = {"host": cluster.url, "api_key": "driver-token", "prices_micros": {"h100": 1}, "service_type": "NodePort"}
    driver = KubernetesDriver(slug="k8s", config=config)
    by_node_port = KubernetesDriver(slug="k8s", config={**config, "endpoint_template": "http://n:{node_port}"})

    pid = driver.launch(spec(), driver.offers()[0]).provider_instance_id
    labels = instance_labels(tag="gpucloud-test", instance_id="inst_abc123")
    add_pod(cluster, "gpc-inst-abc123-1", namespace="gpucloud", labels=labels, node="h100-a", phase="Running")
    log = "get /api/v1/namespaces/gpucloud/pods/gpc-inst-abc123-1/log"
    cluster.handler[log] << kmock.headers({"Content-Type": "text/plain"}) << b"ready\n"
    node_port = {"spec": {"ports": [{"name": "http", "port": 8000, "nodePort": 31234}]}}
    cluster.core.patch_namespaced_service(
        "gpc-inst-abc123", "gpucloud", node_port, _content_type=MERGE_PATCH, _request_timeout=TIMEOUT
    )
    assert driver.status(pid).state == "running"
    assert [i.provider_instance_id for i in driver.list_instances("gpucloud-test")] == [pid]
    assert driver.logs(pid) == list(driver.follow_logs(pid)) == ["ready"]
    assert by_node_port.endpoint(pid) == "http://n:31234"
    driver.terminate(pid)
    driver.api.close()
    by_node_port.api.close()

    sent = [r for r in cluster.handler if r.headers.get("Authorization") == "Bearer driver-token"]
    assert {permission(r) for r in sent} == {
        ("list", "", "nodes"), ("list", "", "pods"), ("get", "", "pods/log"),
        ("create", "", "secrets"), ("delete", "", "secrets"),
        ("create", "", "services"), ("get", "", "services"), ("delete", "", "services"),
        ("create", "apps", "deployments"), ("get", "apps", "deployments"), ("list", "apps", "deployments"),
        ("delete", "apps", "deployments"),
    }  # fmt: skip
    assert [f"{r.method.value} {r.url.path}" for r in sent if not allowed(r, rules)] == []


# --- pods and volumes (issue 17) ---------------------------------------------------------------


def test_a_pods_objects_and_its_volume_claim_pass_the_strict_kubernetes_schema() -> None:
    pod = spec("container", image="runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04", args=["--allow-root"],
               ports=[8888, 22], tcp_ports=[22], ssh_public_keys=["ssh-ed25519 AAAA me"],
               volume_id="gpucloud/gpv-v1")  # fmt: skip
    options = DriverOptions.from_config({"tcp_service_type": "LoadBalancer", "storage_class": "fast"})
    made = instance_objects(pod, H100, options)
    assert made.tcp_service is not None
    claim = volume_claim(VolumeSpec(volume_id="vol_1", tag="gpucloud-test", name="data", size_gb=20, region="atl1"),
                         options)  # fmt: skip
    manifests = [*bodies(made), wire(made.tcp_service), wire(claim)]

    assert [(m["kind"], m["metadata"]["name"]) for m in manifests] == [
        ("Secret", "gpc-inst-abc123"), ("Service", "gpc-inst-abc123"), ("Deployment", "gpc-inst-abc123"),
        ("Service", "gpc-inst-abc123-tcp"), ("PersistentVolumeClaim", "gpv-vol-1"),
    ]  # fmt: skip
    assert [schema_check(m) for m in manifests] == [KUBERNETES_VERSION] * 5
    assert manifests[3]["spec"] == {
        "type": "LoadBalancer", "selector": {"gpucloud.io/instance": "inst_abc123"},
        "ports": [{"name": "tcp-22", "port": 22, "targetPort": 22, "protocol": "TCP"}],
    }  # fmt: skip
    assert manifests[4]["spec"] == {
        "accessModes": ["ReadWriteOnce"], "storageClassName": "fast", "resources": {"requests": {"storage": "20Gi"}},
    }  # fmt: skip


def test_a_tcp_service_name_stays_within_63_characters() -> None:
    long_id = "inst_" + "x" * 58  # 63 characters: the longest label value
    made = instance_objects(spec("container", image="a/b:1", instance_id=long_id, ports=[22], tcp_ports=[22]), H100,
                            DriverOptions())  # fmt: skip

    assert made.tcp_service is not None
    body = wire(made.tcp_service)
    assert body["metadata"]["name"] == "gpc-inst-" + "x" * 50 + "-tcp"
    assert schema_check(body) == KUBERNETES_VERSION


def test_the_readmes_rbac_permits_every_request_of_a_pod_and_its_volume(cluster: EmulatedCluster) -> None:
    [rbac] = readme_blocks("yaml")
    roles = [d for d in yaml.safe_load_all(rbac) if d["kind"] in ("ClusterRole", "Role")]
    rules = {role["metadata"].get("namespace"): role["rules"] for role in roles}
    add_node(cluster, "h100-a", labels=H100_NODE, allocatable={"nvidia.com/gpu": "8"}, addresses={"ExternalIP": "x"})
    add_storage_class(cluster, "standard", expandable=True, default=True)
    driver = KubernetesDriver(slug="k8s", config={"host": cluster.url, "api_key": "driver-token"})
    made = driver.volume_create(VolumeSpec(volume_id="vol_1", tag="gpucloud-test", name="", size_gb=5, region="atl1"))
    driver.volume_resize(made.provider_volume_id, 10)
    pod = spec("container", image="a/b:1", ports=[8888, 22], tcp_ports=[22], volume_id=made.provider_volume_id)
    pid = driver.launch(pod, Offer("k8s", "h100", 1, "atl1", Tier.SECURE, False, 1, 0, 1)).provider_instance_id
    add_pod(cluster, "gpc-inst-abc123-1", namespace="gpucloud", node="h100-a", phase="Running",
            labels=instance_labels(tag="gpucloud-test", instance_id="inst_abc123"))  # fmt: skip
    assert driver.port_url(pid, 8888) == "http://gpc-inst-abc123.gpucloud.svc.cluster.local:8888"
    assert driver.tcp_endpoint(pid, 22)[0] == "x"
    driver.terminate(pid)
    assert [v.volume_id for v in driver.volumes_list("gpucloud-test")] == ["vol_1"]
    driver.volume_delete(made.provider_volume_id)
    driver.api.close()

    sent = [r for r in cluster.handler if r.headers.get("Authorization") == "Bearer driver-token"]
    assert {p for p in map(permission, sent) if p[2] == "persistentvolumeclaims"} == {
        ("create", "", "persistentvolumeclaims"), ("list", "", "persistentvolumeclaims"),
        ("get", "", "persistentvolumeclaims"), ("patch", "", "persistentvolumeclaims"),
        ("delete", "", "persistentvolumeclaims"),
    }  # fmt: skip
    assert [f"{r.method.value} {r.url.path}" for r in sent if not allowed(r, rules)] == []
