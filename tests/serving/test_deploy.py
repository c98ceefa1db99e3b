"""The Kubernetes manifests in serving/deploy parse, reference each other consistently, and carry what serving
needs: a GPU request and LoRA for vLLM, probes, the release's adapter at start-up, a config that validates."""

from __future__ import annotations

from pathlib import Path

import pytest
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


# ------------------------------------------------------------------------------------------ dashboard and alerts

# The monitor workflow's gauges (pushed to a Pushgateway, not served by the API): the names the parts share.
MONITOR_GAUGES = {
    "llmops_monitor_retrieval_drift", "llmops_monitor_drift_exceeded", "llmops_monitor_negative_feedback_rate",
    "llmops_monitor_no_answer_rate", "llmops_monitor_refusal_rate", "llmops_monitor_last_run_timestamp_seconds",
}
PROMQL_FUNCTIONS = {
    "abs", "absent", "avg", "avg_over_time", "bottomk", "ceil", "changes", "clamp_max", "clamp_min", "count",
    "count_over_time", "delta", "deriv", "floor", "group", "histogram_quantile", "increase", "irate", "label_replace",
    "max", "max_over_time", "min", "min_over_time", "predict_linear", "quantile", "quantile_over_time", "rate",
    "round", "scalar", "sort", "sort_desc", "stddev", "sum", "sum_over_time", "time", "topk", "vector",
}
PROMQL_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
                   "group_right"}


def served_metric_names() -> set[str]:
    """Every series name a live `ServingMetrics` exposes (histograms' _bucket/_sum/_count, counters' _total)."""
    from prometheus_client.parser import text_string_to_metric_families

    from serving.metrics import ServingMetrics

    names = set()
    for family in text_string_to_metric_families(ServingMetrics().exposition().decode()):
        names.add(family.name)
        if family.type == "counter":
            names.add(family.name + "_total")
        if family.type == "histogram":
            names |= {family.name + suffix for suffix in ("_bucket", "_sum", "_count")}
    return names


def promql_metrics(expr: str) -> set[str]:
    """The metric names `expr` selects, after checking that its brackets balance and every function is PromQL's.
    (No PromQL parser on PyPI; `promtool check rules` runs too where it is installed.)"""
    import re

    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values: any text
    stack = []
    for ch in text:
        if ch in "([{":
            stack.append(ch)
        elif ch in ")]}":
            assert stack and stack.pop() == {")": "(", "]": "[", "}": "{"}[ch], f"unbalanced {ch!r} in {expr!r}"
    assert not stack, f"unclosed {stack} in {expr!r}"
    text = re.sub(r"\{[^{}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\[\]]*\]", "", text)  # range selectors ([5m], Grafana's [$__rate_interval])
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", "", text)  # label lists
    text = re.sub(r"(?<![A-Za-z_])\d+(\.\d+)?(e[+-]?\d+)?", "0", text)  # numbers, 1e-9 included
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = m.group()
        if text[m.end():].lstrip().startswith("("):
            assert word in PROMQL_FUNCTIONS, f"unknown PromQL function {word!r} in {expr!r}"
        elif word not in PROMQL_KEYWORDS:
            names.add(word)
    assert names, f"no metric in {expr!r}"
    return names


def dashboard_exprs() -> list[str]:
    import json

    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    assert dashboard["uid"] and dashboard["title"]
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", ())]


def alert_rules() -> list[dict]:
    rule = yaml.safe_load((DEPLOY / "prometheus-rules.yaml").read_text())
    assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def test_the_monitor_writes_the_gauges_named_here():
    from llmops.monitor.report import GAUGES

    assert set(GAUGES) == MONITOR_GAUGES


def test_dashboard_and_alerts_use_only_metrics_that_exist():
    known = served_metric_names() | MONITOR_GAUGES
    exprs = dashboard_exprs() + [r["expr"] for r in alert_rules()]
    used = set().union(*(promql_metrics(e) for e in exprs))
    assert used <= known, f"not exposed by serving nor the monitor: {sorted(used - known)}"
    dashboard_used = set().union(*(promql_metrics(e) for e in dashboard_exprs()))
    # traffic and errors, latency, TTFT, tokens, guardrails, reloads, the request log, the monitor
    assert {"llmops_requests_total", "llmops_request_duration_seconds_bucket", "llmops_time_to_first_token_seconds_bucket",
            "llmops_prompt_tokens_total", "llmops_completion_tokens_total", "llmops_guardrail_decisions_total",
            "llmops_release_reloads_total", "llmops_request_log_dropped_total"} | MONITOR_GAUGES <= dashboard_used


def test_alert_rules_have_severity_summary_and_for():
    rules = alert_rules()
    names = {r["alert"] for r in rules}
    assert {"LLMOpsHighErrorRate", "LLMOpsHighP95Latency", "LLMOpsBackendDown", "LLMOpsReleaseReloadFailed",
            "LLMOpsRequestLogDropping", "LLMOpsRetrievalDrift"} <= names
    for r in rules:
        assert r["labels"]["severity"] in ("critical", "warning", "info"), r["alert"]
        assert r["annotations"]["summary"] and r["annotations"]["description"], r["alert"]
        assert str(r["for"])[-1] in "smhd", r["alert"]
    by_name = {r["alert"]: r for r in rules}
    assert "llmops_monitor_drift_exceeded" in promql_metrics(by_name["LLMOpsRetrievalDrift"]["expr"])


def test_promtool_accepts_the_rules_where_it_is_installed(tmp_path):
    import shutil
    import subprocess

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed: the PromQL checks above stand in for it")
    spec = yaml.safe_load((DEPLOY / "prometheus-rules.yaml").read_text())["spec"]
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(spec))
    result = subprocess.run([promtool, "check", "rules", str(tmp_path / "rules.yaml")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dashboard_is_a_configmap_for_grafanas_sidecar():
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    (generated,) = [g for g in kustomization["configMapGenerator"] if "grafana-dashboard.json" in g["files"]]
    assert generated["options"]["labels"]["grafana_dashboard"] == "1"
