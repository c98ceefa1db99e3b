"""The Kubernetes manifests in serving/deploy parse, reference each other consistently, and carry what serving
needs: a GPU request and LoRA for vLLM, probes, the release's adapter at start-up, a config that validates."""

from __future__ import annotations

from pathlib import Path

import yaml

from llmops.config import parse_config

DEPLOY = Path(__file__).resolve().parents[2] / "serving" / "deploy"


def load_all() -> dict[tuple[str, str], dict]:
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    objects = {}
    for name in kustomization["resources"]:
        for doc in yaml.safe_load_all((DEPLOY / name).read_text()):
            assert doc["apiVersion"] and doc["metadata"]["name"], name
            objects[(doc["kind"], doc["metadata"]["name"])] = doc
    return objects


def container(deployment: dict, name: str) -> dict:
    return next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == name)


def test_every_resource_file_parses_and_is_listed():
    listed = set(yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())["resources"])
    on_disk = {p.name for p in DEPLOY.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk
    kinds = {kind for kind, _ in load_all()}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "ConfigMap", "PersistentVolumeClaim"} <= kinds


def test_services_and_hpa_point_at_their_deployments():
    objects = load_all()
    for name in ("vllm", "rag-api", "redis"):
        deployment, service = objects[("Deployment", name)], objects[("Service", name)]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert service["spec"]["selector"].items() <= labels.items()
        ports = {p["name"] for c in deployment["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
        assert service["spec"]["ports"][0]["targetPort"] in ports
        claims = {v["persistentVolumeClaim"]["claimName"] for v in deployment["spec"]["template"]["spec"]["volumes"]
                  if "persistentVolumeClaim" in v}
        assert all(("PersistentVolumeClaim", c) in objects for c in claims)
    hpa = objects[("HorizontalPodAutoscaler", "rag-api")]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "rag-api"}
    assert hpa["spec"]["minReplicas"] >= 2


def test_vllm_gets_a_gpu_lora_and_the_production_adapter():
    vllm = load_all()[("Deployment", "vllm")]
    main = container(vllm, "vllm")
    assert main["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert main["readinessProbe"]["httpGet"]["path"] in ("/v1/models", "/health")
    env = {e["name"]: e.get("value") for e in main["env"]}
    assert env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    init = vllm["spec"]["template"]["spec"]["initContainers"][0]
    assert "--print-vllm-args" in init["args"][0]  # prints --enable-lora --max-lora-rank N --lora-modules ...
    assert "$$(cat /run/llmops/lora-args)" in main["args"][0]
    assert {m["mountPath"] for m in main["volumeMounts"]} >= {"/models", "/adapters"}


def test_rag_api_probes_and_drain_fit_the_config():
    objects = load_all()
    api = objects[("Deployment", "rag-api")]
    main = container(api, "rag-api")
    assert main["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert main["livenessProbe"]["httpGet"]["path"] == "/healthz"
    cfg = parse_config(yaml.safe_load(objects[("ConfigMap", "llmops-config")]["data"]["config.yaml"]))
    assert cfg.llm.base_url == "http://vllm:8000/v1" and cfg.serving.port == 8000
    shutdown = float(main["args"][main["args"].index("--timeout-graceful-shutdown") + 1])
    assert shutdown == cfg.serving.graceful_shutdown_s
    assert api["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > shutdown
    assert cfg.serving.adapter_unload_grace_s > cfg.serving.watch_interval_s
    mounts = {m["mountPath"] for m in container(objects[("Deployment", "vllm")], "vllm")["volumeMounts"]}
    assert cfg.serving.adapter_cache_dir in mounts  # vLLM reads adapters where the API downloads them


def test_the_replicas_share_a_redis_session_store_and_need_api_keys():
    objects = load_all()
    config = parse_config(yaml.safe_load(objects[("ConfigMap", "llmops-config")]["data"]["config.yaml"]))
    sessions = config.serving.sessions
    assert sessions.store == "redis"  # per-pod SQLite files would lose a conversation when the next request lands elsewhere
    env = {e["name"]: e for e in container(objects[("Deployment", "rag-api")], "rag-api")["env"]}
    for variable in (sessions.redis_url_env, config.serving.api_keys_env):
        assert "secretKeyRef" in env[variable]["valueFrom"], variable  # URLs and keys are secrets, not config
    redis = container(objects[("Deployment", "redis")], "redis")
    assert "--requirepass" in redis["args"]


def test_routes_validate_and_provider_keys_come_from_secrets():
    objects = load_all()
    config = parse_config(yaml.safe_load(objects[("ConfigMap", "llmops-config")]["data"]["config.yaml"]))
    routes = {r.name: r for r in config.serving.route_table()}
    assert config.serving.model_name in routes and routes[config.serving.model_name].alias == config.serving.alias
    env = {e["name"]: e for e in container(objects[("Deployment", "rag-api")], "rag-api")["env"]}
    endpoints = [r.endpoint for r in routes.values() if r.endpoint is not None]
    assert endpoints, "the example deployment shows an endpoint route"
    for endpoint in endpoints:  # a provider's key is a secret, never config
        assert "secretKeyRef" in env[endpoint.api_key_env]["valueFrom"], endpoint.api_key_env
