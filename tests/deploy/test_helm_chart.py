"""helm/cxr-report rendered by Helm's own engine (helm-python-sdk: Helm v4's Go SDK behind a C ABI, no
helm binary) and every manifest validated against the Kubernetes API schemas (kubernetes-validate).
Not exercised here (no cluster): scheduling, the probes against running pods, the HPA and KEDA
scaling, the PVC binding (docs in helm/cxr-report/README.md)."""

from __future__ import annotations

import re
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

CHART = Path(__file__).resolve().parents[2] / "helm" / "cxr-report"
K8S_VERSION = "1.30.0"  # the oldest minor the chart is validated against (Chart.yaml asks >= 1.27)
STEPS = ("ingestion", "inference", "formatting", "qa")
SERVICES = ("gateway", *STEPS, "reconciler", "dimse")


def render(values: dict | None = None) -> list[dict]:
    with helm.Chart.load(CHART) as chart:
        rendered = chart.render(values or {}, name="cxr", namespace="radiology")
    docs = []
    for text in rendered.values():
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def component(doc: dict) -> str:
    return doc["metadata"]["labels"]["app.kubernetes.io/component"]


VARIANTS = {
    "defaults": {},
    "keda": {"keda": {"enabled": True, "authenticationRef": "redis-auth"}},
    "cpu-only, chart-made secret, existing claim, no autoscaling": {
        "workers": {"inference": {"gpu": False}, **{s: {"autoscaling": {"enabled": False}} for s in STEPS}},
        "gateway": {"autoscaling": {"enabled": False}, "pdb": {"enabled": False}},
        "secrets": {"create": True, "databaseUrl": "postgresql://cxr:pw@db:5432/cxr", "redisUrl": "redis://redis:6379/0"},
        "persistence": {"create": False, "existingClaim": "pacs-share"},
        "extraEnv": [{"name": "CXR_OIDC_CLIENT", "valueFrom": {"secretKeyRef": {"name": "idp", "key": "client"}}}],
    },
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_rendered_manifest_is_valid_kubernetes(variant: str) -> None:
    docs = render(VARIANTS[variant])
    assert docs
    for doc in docs:
        if doc["apiVersion"].startswith("keda.sh/"):
            continue  # a CRD: no schema in kubernetes-validate (its fields are checked below)
        # strict: an unknown field (a typo in a template) fails too
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_lint_has_no_errors() -> None:
    result = helm.lint(str(CHART))
    assert result["errors"] == [], result
    assert all(m["severity"] < 3 for m in result["messages"]), result["messages"]  # 3+: warning, error


def test_a_deployment_per_service_with_probes_and_the_shared_volume() -> None:
    docs = render()
    deployments = {component(d): d for d in by_kind(docs, "Deployment").values()}
    assert set(deployments) == set(SERVICES)
    claim = next(iter(by_kind(docs, "PersistentVolumeClaim")))
    config = next(iter(by_kind(docs, "ConfigMap")))
    for name, dep in deployments.items():
        pod = dep["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["command"] == ["python", "-m", f"services.{name}"]
        assert {"configMapRef": {"name": config}} in container["envFrom"]
        assert {"secretRef": {"name": "cxr-report-connections"}} in container["envFrom"]
        assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == claim
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert dep["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    gateway = deployments["gateway"]["spec"]["template"]["spec"]["containers"][0]
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for step in STEPS:
        worker = deployments[step]["spec"]["template"]["spec"]["containers"][0]
        assert worker["readinessProbe"]["exec"]["command"] == ["python", "-m", "libs.observability.worker_probe", step]
        assert worker["livenessProbe"]["httpGet"] == {"path": "/metrics", "port": "metrics"}
        assert {"name": "CXR_METRICS_PORT", "value": "9100"} in worker["env"]


def test_inference_gets_a_gpu_on_a_gpu_node_and_none_when_cpu_only() -> None:
    def inference(values: dict | None = None) -> dict:
        deps = {component(d): d for d in by_kind(render(values), "Deployment").values()}
        return deps["inference"]["spec"]["template"]["spec"]

    pod = inference()
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert "startupProbe" in pod["containers"][0]
    cpu = inference({"workers": {"inference": {"gpu": False, "nodeSelector": {}, "tolerations": []}}})
    assert "nvidia.com/gpu" not in cpu["containers"][0]["resources"]["limits"]
    assert {"name": "CXR_EXECUTION_PROVIDERS", "value": "CPUExecutionProvider"} in cpu["containers"][0]["env"]


def test_autoscaling_is_an_hpa_per_service_or_keda_on_queue_depth() -> None:
    docs = render()
    hpas = by_kind(docs, "HorizontalPodAutoscaler")
    targets = {h["spec"]["scaleTargetRef"]["name"] for h in hpas.values()}
    assert targets == {n for n, d in by_kind(docs, "Deployment").items() if component(d) not in ("reconciler", "dimse")}
    assert not by_kind(docs, "ScaledObject")
    # an autoscaled Deployment leaves replicas to its autoscaler (helm upgrades would fight it otherwise)
    assert all("replicas" not in by_kind(docs, "Deployment")[t]["spec"] for t in targets)

    keda = render(VARIANTS["keda"])
    scaled = by_kind(keda, "ScaledObject")
    assert {component(s) for s in scaled.values()} == set(STEPS)
    for name, obj in scaled.items():
        assert obj["spec"]["scaleTargetRef"]["name"] == name and name in by_kind(keda, "Deployment")
        (trigger,) = obj["spec"]["triggers"]
        # the Celery queue of a step is the Redis list of its name
        assert trigger["type"] == "redis" and trigger["metadata"]["listName"] == component(obj)
        assert trigger["authenticationRef"] == {"name": "redis-auth"}
    assert {component(h) for h in by_kind(keda, "HorizontalPodAutoscaler").values()} == {"gateway"}


def test_disruption_budgets_select_their_pods_and_never_block_a_drain_of_one_worker() -> None:
    docs = render()
    pods = {component(d): d["spec"]["template"]["metadata"]["labels"] for d in by_kind(docs, "Deployment").values()}
    pdbs = {component(p): p["spec"] for p in by_kind(docs, "PodDisruptionBudget").values()}
    assert set(pdbs) == {"gateway", *STEPS}
    for name, spec in pdbs.items():
        assert spec["selector"]["matchLabels"].items() <= pods[name].items()
    assert pdbs["gateway"]["minAvailable"] == 1  # two replicas: one always serves
    assert all(pdbs[s]["maxUnavailable"] == 1 for s in STEPS)  # a single worker may be evicted; its queue waits


def test_the_services_route_to_the_gateway_and_dimse_pods() -> None:
    docs = render({"dimse": {"allowedCallingAETs": ["ORTHANC", "CR1"]}})
    services = {component(s): s for s in by_kind(docs, "Service").values()}
    deployments = {component(d): d for d in by_kind(docs, "Deployment").values()}
    assert set(services) == {"gateway", "dimse"}
    for name, port in (("gateway", "http"), ("dimse", "dicom")):
        pod = deployments[name]["spec"]["template"]
        assert services[name]["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
        assert services[name]["spec"]["ports"][0]["targetPort"] == port
    env = {e["name"]: e["value"] for e in deployments["dimse"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["CXR_DIMSE_ALLOWED_CALLING_AETS"] == '["ORTHANC","CR1"]'
    assert "dimse" not in {component(d) for d in by_kind(render({"dimse": {"enabled": False}}), "Deployment").values()}


def test_secret_and_claim_come_from_the_chart_or_from_what_exists() -> None:
    docs = render(VARIANTS["cpu-only, chart-made secret, existing claim, no autoscaling"])
    (secret,) = by_kind(docs, "Secret").values()
    assert set(secret["stringData"]) == {"DATABASE_URL", "REDIS_URL"}
    assert not by_kind(docs, "PersistentVolumeClaim") and not by_kind(docs, "HorizontalPodAutoscaler")
    for dep in by_kind(docs, "Deployment").values():
        pod = dep["spec"]["template"]["spec"]
        assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "pacs-share"
        assert {"secretRef": {"name": secret["metadata"]["name"]}} in pod["containers"][0]["envFrom"]
        assert dep["spec"]["replicas"] >= 1
    with pytest.raises(helm.HelmError, match="secrets.databaseUrl is required"):
        render({"secrets": {"create": True}})


def test_every_value_is_documented() -> None:
    """Each key of values.yaml (to the second level) is named in the chart's README."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    readme = (CHART / "README.md").read_text()
    keys = []
    for top, value in values.items():
        keys.append(top)
        if isinstance(value, dict) and top not in ("config", "workers", "podSecurityContext", "securityContext"):
            keys.extend(f"{top}.{sub}" for sub in value)
    missing = [k for k in keys if not re.search(rf"`{re.escape(k)}`", readme)]
    assert not missing, f"not in helm/cxr-report/README.md: {missing}"
