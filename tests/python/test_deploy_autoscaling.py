"""deploy/autoscaling: the KEDA ScaledObjects and the HPAs are well-formed,
their PromQL parses (promtool), and every metric and label value they scale
on is one a router running the planner really exports."""
import pathlib
import re
import subprocess
import sys
import time
import urllib.request

import yaml

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "bench"))
import factory_sim  # noqa: E402

DEPLOY = pathlib.Path(__file__).resolve().parents[2] / "deploy" / "autoscaling"


def docs(name):
    return [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d]


def exported_planner_series():
    factory = factory_sim.Factory(1, ["--planner-profile", str(factory_sim.PROFILE),
                                      "--planner-interval", "200ms"])
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            body = urllib.request.urlopen(
                f"http://127.0.0.1:{factory.metrics_port}/metrics").read().decode()
            if "tokenfab_planner_desired_workers" in body:
                return body
            time.sleep(0.2)
        raise AssertionError("the router never exported tokenfab_planner_desired_workers")
    finally:
        factory.close()


def test_scaled_objects_and_hpas_scale_on_series_the_router_exports(tmp_path):
    body = exported_planner_series()
    scaled = docs("keda-scaledobjects.yaml")
    hpas = docs("hpa-prometheus-adapter.yaml")
    assert {d["kind"] for d in scaled} == {"ScaledObject"}
    assert {d["kind"] for d in hpas} == {"HorizontalPodAutoscaler"}
    queries = []
    for d in scaled:
        assert d["apiVersion"] == "keda.sh/v1alpha1"
        spec = d["spec"]
        assert spec["scaleTargetRef"]["kind"] == "Deployment"
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "prometheus"
        assert float(trigger["metadata"]["threshold"]) > 0
        queries.append(trigger["metadata"]["query"])
    roles = set()
    for q in queries:
        for name in re.findall(r"tokenfab_[a-z_]+", q):
            assert f"\n{name}" in body or body.startswith(name), f"{name} is not exported"
        roles |= set(re.findall(r'role="([a-z]+)"', q))
    assert roles == {"prefill", "decode"}
    for role in roles:
        assert f'tokenfab_planner_desired_workers{{role="{role}"}}' in body
    for d in hpas:
        assert d["apiVersion"] == "autoscaling/v2"
        (m,) = d["spec"]["metrics"]
        assert m["type"] == "External"
        assert m["external"]["metric"]["name"] == "tokenfab_planner_desired_workers"
        assert m["external"]["metric"]["selector"]["matchLabels"]["role"] in {"prefill", "decode"}
        assert m["external"]["target"] == {"type": "AverageValue", "averageValue": "1"}
    adapter = docs("prometheus-adapter-rules.yaml")[0]
    assert "tokenfab_planner_desired_workers" in adapter["externalRules"][0]["seriesQuery"]
    # promtool parses every query (as recording rules).
    rules = {"groups": [{"name": "autoscaling", "rules": [
        {"record": f"tokenfab:autoscaling_query_{i}", "expr": q} for i, q in enumerate(queries)]}]}
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump(rules))
    check = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
