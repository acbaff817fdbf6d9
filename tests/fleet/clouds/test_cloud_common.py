"""What the four cloud drivers share: the HTTP client's reading of a cloud's answers, the options and
pricing, the name map, the VM boot script, and the container every image-running driver launches."""

from __future__ import annotations

import time
from email.utils import formatdate
from typing import Any

import httpx
import pytest

from fleet.providers.base import InstanceSpec, ProviderError
from fleet.providers.cloud.api import CloudApi, CloudNotFound, retry_after_seconds
from fleet.providers.cloud.boot import ENV_FILE, user_data
from fleet.providers.cloud.gpus import cloud_names, cloud_regions, gpu_slug, region_slug, split_count
from fleet.providers.cloud.options import CloudOptions
from fleet.providers.containers import VLLM_ROCM_IMAGE, VLLM_SERVER, Images, container_env, container_run

SECRET = "sk-cloud-secret-123"


def api(handler: Any, **kwargs: Any) -> CloudApi:
    return CloudApi(cloud="Acme", slug="acme", base_url="http://cloud.test/v1/", headers={"Authorization": "Bearer x"},
                    timeout=httpx.Timeout(1.0), transport=httpx.MockTransport(handler), **kwargs)  # fmt: skip


def answering(status: int, body: Any = None, text: str | None = None, headers: dict[str, str] | None = None) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        if text is not None:
            return httpx.Response(status, text=text, headers=headers)
        return httpx.Response(status, json=body, headers=headers)

    return handler


def spec(**overrides: Any) -> InstanceSpec:
    fields: dict[str, Any] = {
        "instance_id": "inst_1", "tag": "gpucloud", "engine": "vllm", "model": {"hf_repo": "org/m"},
        "served_model_name": "m", "api_key": SECRET, "gpu_type": "h100",
    }  # fmt: skip
    return InstanceSpec(**{**fields, **overrides})


# --- the client -----------------------------------------------------------------------------------


def test_a_success_is_its_json_sent_under_the_base_url_without_unset_parameters() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ok": True})

    assert api(handler).call("GET", "/pods", params={"a": 1, "b": None}) == {"ok": True}
    assert str(seen[0].url) == "http://cloud.test/v1/pods?a=1"
    assert seen[0].headers["Authorization"] == "Bearer x"


@pytest.mark.parametrize(
    ("status", "body", "permanent", "message"),
    [
        (401, {"error": {"message": "bad token"}}, True, "Acme refused the API key (401): bad token"),
        (403, {"detail": "forbidden"}, True, "Acme refused the API key (403): forbidden"),
        (500, {"message": "boom"}, False, "Acme failed (500) on POST /pods: boom"),
        (503, None, False, "Acme failed (503) on POST /pods: Service Unavailable"),
        (422, {"id": "unprocessable_entity", "message": "bad size"}, True, "Acme refused POST /pods (422): bad size"),
    ],
)
def test_errors_are_permanent_or_retryable_with_the_clouds_own_words(
    status: int, body: Any, permanent: bool, message: str
) -> None:
    with pytest.raises(ProviderError) as raised:
        api(answering(status, body)).call("POST", "/pods", json_body={})
    assert (raised.value.permanent, raised.value.no_capacity, raised.value.message) == (permanent, False, message)


def test_a_404_is_not_found_and_a_refusal_hook_names_no_capacity() -> None:
    with pytest.raises(CloudNotFound):
        api(answering(404, {"detail": "no pod"})).call("GET", "/pods/x")

    def refusal(response: httpx.Response, said: str) -> ProviderError | None:
        return ProviderError(said, no_capacity=True) if "no longer any instances" in said else None

    full = answering(400, {"detail": "There are no longer any instances available"})
    with pytest.raises(ProviderError) as raised:
        api(full, refusal=refusal).call("POST", "/p")
    assert raised.value.no_capacity and not raised.value.permanent
    with pytest.raises(ProviderError) as other:
        api(answering(400, {"detail": "image is invalid"}), refusal=refusal).call("POST", "/p")
    assert other.value.permanent and not other.value.no_capacity


def test_timeouts_and_unreachable_clouds_are_retryable() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    for handler, words in ((slow, "did not answer GET /pods in time"), (down, "could not be reached")):
        with pytest.raises(ProviderError) as raised:
            api(handler).call("GET", "/pods")
        assert not raised.value.permanent and words in raised.value.message


def test_a_429_with_retry_after_holds_every_call_of_the_provider_until_then() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(429, json={"message": "slow down"}, headers={"Retry-After": "30"})

    with pytest.raises(ProviderError) as raised:
        api(handler).call("GET", "/offers")
    assert raised.value.retry_after == 30 and not raised.value.permanent
    with pytest.raises(ProviderError) as held:  # another client object, as another process would have
        api(answering(200, {})).call("POST", "/pods")
    assert "slow down" in held.value.message and held.value.retry_after is not None and held.value.retry_after > 25
    assert calls == ["/v1/offers"]  # the second call never left


def test_a_plain_text_429_without_retry_after_backs_off_the_configured_time() -> None:
    with pytest.raises(ProviderError) as raised:
        api(answering(429, text="Too Many Requests"), backoff_seconds=5).call("GET", "/bundles")
    assert raised.value.retry_after is None and "Too Many Requests" in raised.value.message
    with pytest.raises(ProviderError) as held:
        api(answering(200, {})).call("GET", "/bundles")
    assert held.value.retry_after is not None and 3 < held.value.retry_after <= 5


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after_seconds("12") == 12
    in_a_minute = retry_after_seconds(formatdate(time.time() + 60, usegmt=True))
    assert in_a_minute is not None and 55 < in_a_minute <= 60
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None
    assert retry_after_seconds("-5") == 0


# --- options, prices, names -----------------------------------------------------------------------


def test_options_need_a_key_and_a_url_and_never_echo_the_key() -> None:
    with pytest.raises(ProviderError, match="no API key configured") as missing:
        CloudOptions.from_config({}, cloud="Acme", default_base_url="https://api.acme.test")
    assert missing.value.permanent
    with pytest.raises(ProviderError, match="base_url must be an http") as bad_url:
        CloudOptions.from_config({"api_key": SECRET, "base_url": "ftp://x"}, cloud="Acme", default_base_url="")
    assert SECRET not in bad_url.value.message
    with pytest.raises(ProviderError, match="margin for h100 must be at least 1"):
        CloudOptions.from_config(
            {"api_key": SECRET, "margins": {"h100": 0.5}}, cloud="Acme", default_base_url="http://a"
        )
    with pytest.raises(ProviderError, match="Invalid Acme provider config"):
        CloudOptions.from_config(
            {"api_key": SECRET, "allow_from": ["not-an-ip"]}, cloud="Acme", default_base_url="http://a"
        )


def test_price_is_cost_times_the_margin_for_the_gpu_type_or_the_default() -> None:
    options = CloudOptions.from_config(
        {"api_key": SECRET, "margins": {"h100": 1.1, "*": 1.5}, "allow_from": ["203.0.113.7"]},
        cloud="Acme", default_base_url="https://api.acme.test/",
    )  # fmt: skip
    assert options.base_url == "https://api.acme.test"
    assert options.price_micros("h100", 2_000_000) == 2_200_000
    assert options.price_micros("l40s", 1_000_000) == 1_500_000
    assert options.allow_from == ("203.0.113.7/32",)
    plain = CloudOptions.from_config({"api_key": SECRET}, cloud="Acme", default_base_url="http://a")
    assert plain.price_micros("h100", 1_000_000) == 1_250_000


def test_the_name_map_gives_our_slugs_counts_and_regions_both_ways() -> None:
    assert gpu_slug("runpod", "NVIDIA H100 80GB HBM3", 1) == "h100"
    assert gpu_slug("digitalocean", "mi300x", 8) == "mi300x_8"
    assert gpu_slug("runpod", "NVIDIA B200", 2) == "nvidia-b200_2"  # unknown: kept, matches nothing sold
    assert gpu_slug("runpod", "NVIDIA B200", 1, {"NVIDIA B200": "b200"}) == "b200"
    assert split_count("mi325x_8") == ("mi325x", 8) and split_count("a100-80gb") == ("a100-80gb", 1)
    assert region_slug("runpod", "US-GA-1") == "atl1" and region_slug("digitalocean", "nyc2") == "nyc2"
    assert set(cloud_names("vastai", "h100")) == {"H100 SXM", "H100 PCIE", "H100 NVL"}
    assert cloud_regions("runpod", "atl1") == ["US-GA-1", "US-GA-2"]
    assert cloud_regions("digitalocean", "tor1") == ["tor1"]


# --- what a launch runs ---------------------------------------------------------------------------


def test_engines_read_their_secret_from_the_environment_never_the_command_line() -> None:
    images = Images()
    vllm = container_run(spec(engine_args={"max_num_seqs": 8, "task": "embed"}), images=images, gpus=2, provider="a")
    assert vllm.key_env == "VLLM_API_KEY" and SECRET not in " ".join(vllm.args)
    assert vllm.args[-6:] == ["--max-num-seqs", "8", "--task", "embed", "--tensor-parallel-size", "2"]
    llama = container_run(spec(engine="llama.cpp", model={"hf_repo": "o/r", "hf_file": "q.gguf"}), images=images,
                          gpus=1, provider="a")  # fmt: skip
    assert llama.key_env == "LLAMA_API_KEY" and llama.args[:4] == ["--hf-repo", "o/r", "--hf-file", "q.gguf"]
    custom = container_run(spec(engine="container", image="me/app:1", command=["serve"], ports=[9000]),
                           images=images, gpus=1, provider="a")  # fmt: skip
    assert (custom.image, custom.command, custom.port, custom.http_health) == ("me/app:1", ["serve"], 9000, False)
    env = container_env(spec(env={"VLLM_API_KEY": "overridden?", "X": "1"}), vllm, hf_token="hf_x")
    assert env == {"VLLM_API_KEY": SECRET, "HF_TOKEN": "hf_x", "X": "1"}  # the spec cannot replace the secret
    with pytest.raises(ProviderError, match="cannot run the 'xtts' engine") as refused:
        container_run(spec(engine="xtts"), images=images, gpus=1, provider="acme")
    assert refused.value.permanent


def test_the_boot_script_runs_the_engine_with_its_secret_in_a_root_only_file_behind_the_firewall() -> None:
    run = container_run(spec(), images=Images(), gpus=1, provider="a")
    script = user_data(run, {"VLLM_API_KEY": SECRET, "X": "it's"}, port=8000, vendor="amd",
                       allow_from=("203.0.113.7/32",))  # fmt: skip
    lines = script.splitlines()
    assert lines[0] == "#!/bin/bash"
    assert f"printf '%s\\n' VLLM_API_KEY={SECRET} >> {ENV_FILE}" in lines
    assert f"printf '%s\\n' 'X=it'\"'\"'s' >> {ENV_FILE}" in lines  # quoted for the shell
    [docker] = [line for line in lines if line.startswith("docker run")]
    assert SECRET not in docker and f"--env-file {ENV_FILE}" in docker and "--device=/dev/kfd" in docker
    assert "-p 8000:8000 vllm/vllm-openai:v0.11.0 --model org/m" in docker
    drop = "iptables -I DOCKER-USER -p tcp -m conntrack --ctorigdstport 8000 --ctdir ORIGINAL -j DROP"
    accept = drop.replace("-j DROP", "-s 203.0.113.7/32 -j ACCEPT")
    assert lines.index(drop) < lines.index(accept) < lines.index(docker)  # inserted on top: accept wins
    assert "iptables" not in user_data(run, {}, port=8000)  # no addresses named: the secret is the guard


def test_amd_machines_run_the_rocm_builds_with_vllms_server_started_explicitly() -> None:
    options = CloudOptions.from_config({"api_key": SECRET}, cloud="Acme", default_base_url="http://a")
    amd = options.images_for("amd")
    run = container_run(spec(), images=amd, gpus=8, provider="a")
    assert (run.image, run.command) == (VLLM_ROCM_IMAGE, VLLM_SERVER)
    assert container_run(spec(), images=options.images_for("nvidia"), gpus=1, provider="a").command is None
    assert amd.llamacpp == "ghcr.io/ggml-org/llama.cpp:server-rocm"
    mine = CloudOptions.from_config({"api_key": SECRET, "amd_vllm_image": "me/vllm-rocm:1"}, cloud="Acme",
                                    default_base_url="http://a")  # fmt: skip
    assert mine.images_for("amd").vllm == "me/vllm-rocm:1"
