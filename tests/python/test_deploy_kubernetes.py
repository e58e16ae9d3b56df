"""deploy/helm/tokenfab: the chart lints, and every manifest it renders for
each overlay (values-cpu.yaml, values-gpu.yaml, and the GPU overlay with
the HPA in place of KEDA) validates against the Kubernetes schemas of a
current release (kubernetes-validate) and passes yamllint. Its
prometheus-operator and KEDA objects, which those schemas do not cover, are
checked against what they point at: the PrometheusRule's rules through
promtool, the monitors' selectors and ports against the Services and pods,
the scaler's query against deploy/autoscaling. Every flag, port, probe and
drain budget the pods use is held to the binary's --help."""
import json
import pathlib
import shutil
import subprocess
import sys

import kubernetes_validate
import pytest
import yaml

from cli_help import default_of, flags_of

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "tokenfab"
VENV_BIN = pathlib.Path(sys.executable).parent
OVERLAYS = {
    "cpu": ["-f", str(CHART / "values-cpu.yaml")],
    "gpu": ["-f", str(CHART / "values-gpu.yaml")],
    "gpu-hpa": ["-f", str(CHART / "values-gpu.yaml"),
                "--set", "autoscaling.keda.enabled=false,autoscaling.hpa.enabled=true"],
    "cpu-keys": ["-f", str(CHART / "values-cpu.yaml"),
                 "--set", "auth.apiKeySecret=tokenfab-api-keys,auth.clusterKeySecret=tokenfab-cluster-key"],
    "cpu-cluster-key": ["-f", str(CHART / "values-cpu.yaml"),
                        "--set", "auth.clusterKeySecret=tokenfab-cluster-key"],
    "gpu-keys": ["-f", str(CHART / "values-gpu.yaml"),
                 "--set", "auth.apiKeySecret=tokenfab-api-keys,auth.clusterKeySecret=tokenfab-cluster-key"],
    "cpu-tls": ["-f", str(CHART / "values-cpu.yaml"),
                "--set", "auth.tlsSecret=tokenfab-tls,auth.apiKeySecret=tokenfab-api-keys"],
}
CRD_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule", "ScaledObject"}


def tool(name: str) -> str:
    path = VENV_BIN / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run scripts/setup (tests/python/requirements.txt)")
    return str(path)


def helm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([tool("helm"), *args], capture_output=True, text=True, timeout=120)


def render(overlay: str) -> str:
    r = helm("template", "factory", str(CHART), "--namespace", "tokenfab", *OVERLAYS[overlay])
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.fixture(scope="module", params=sorted(OVERLAYS))
def rendered(request):
    text = render(request.param)
    docs = [d for d in yaml.safe_load_all(text) if d]
    return request.param, text, docs


def find(docs, kind, name_suffix):
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(name_suffix)]
    assert len(matches) == 1, f"{kind} *{name_suffix}: {[d['metadata']['name'] for d in matches]}"
    return matches[0]


def container(deployment):
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    return c


SWITCHES = {"planner-recommend-only", "enforce-eager"}  # flags without a value


def args_of(c) -> dict:
    """--flag=value arguments (and switches, as True) -> {flag: value}."""
    out = {}
    for a in c["args"][1:]:
        assert a.startswith("--"), f"{a!r}: the chart writes flags as --flag=value"
        flag, eq, value = a[2:].partition("=")
        assert eq or flag in SWITCHES, f"{a!r}: the chart writes flags as --flag=value"
        out[flag] = value if eq else True
    return out


@pytest.mark.parametrize("values", ["values-cpu.yaml", "values-gpu.yaml"])
def test_chart_lints(values):
    r = helm("lint", "--strict", str(CHART), "-f", str(CHART / values))
    assert r.returncode == 0, r.stdout + r.stderr


def test_every_manifest_validates_against_the_kubernetes_schemas(rendered):
    overlay, _, docs = rendered
    version = kubernetes_validate.latest_version()
    assert tuple(int(x) for x in version.split(".")[:2]) >= (1, 33), version
    kinds = set()
    for d in docs:
        kinds.add(d["kind"])
        if d["kind"] in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(d, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{overlay}: {d['kind']}/{d['metadata']['name']}: {e.message} at {list(e.path)}")
    want = {"Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy", "ServiceAccount", "ConfigMap"}
    assert want <= kinds, kinds
    if overlay.startswith("gpu"):
        assert {"ServiceMonitor", "PodMonitor", "PrometheusRule"} <= kinds
        assert ("HorizontalPodAutoscaler" if overlay == "gpu-hpa" else "ScaledObject") in kinds


def test_validation_can_fail():
    bad = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"},
           "spec": {"ports": [{"port": "grpc"}]}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, kubernetes_validate.latest_version(), strict=True)


def test_rendered_manifests_and_deploy_files_pass_yamllint(rendered, tmp_path):
    overlay, text, _ = rendered
    out = tmp_path / f"{overlay}.yaml"
    out.write_text(text)
    config = str(DEPLOY / ".yamllint.yaml")
    r = subprocess.run([tool("yamllint"), "-s", "-c", config, str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    # The YAML written by hand under deploy/ (templates excepted: not YAML
    # until rendered).
    r = subprocess.run([tool("yamllint"), "-s", "-c", config, "."], cwd=DEPLOY, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_routers_and_workers_use_the_binarys_flags_ports_and_probes(rendered):
    overlay, _, docs = rendered
    router_help, worker_help, drain_help = flags_of("router"), flags_of("worker"), flags_of("drain")
    router_deploy = find(docs, "Deployment", "-router")
    worker_deploy = find(docs, "Deployment", "-worker")
    assert router_deploy["spec"]["replicas"] >= 2

    r = container(router_deploy)
    assert r["args"][0] == "router"
    ra = args_of(r)
    for flag, value in ra.items():
        assert flag in router_help, f"the router gets --{flag}, which `tokenfab router --help` lacks"
    ports = {p["name"]: p["containerPort"] for p in r["ports"]}
    for name in ("grpc", "http", "metrics", "internal"):
        assert ra[f"{name}-port"] == str(ports[name]) == default_of(router_help[f"{name}-port"])
    if "tlsSecret" in " ".join(OVERLAYS[overlay]):
        # The root file system is read-only: gRPC's private copy of the pair
        # goes to a memory-backed volume named by TMPDIR.
        tmpdir = {e["name"]: e["value"] for e in r["env"]}["TMPDIR"]
        mounts = {m["mountPath"]: m["name"] for m in r["volumeMounts"]}
        volumes = {v["name"]: v for v in router_deploy["spec"]["template"]["spec"]["volumes"]}
        assert volumes[mounts[tmpdir]]["emptyDir"]["medium"] == "Memory"
        assert r["securityContext"]["readOnlyRootFilesystem"] is True
        # Kubelets cannot probe gRPC over TLS: the HTTP twins, over HTTPS.
        assert r["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http", "scheme": "HTTPS"}
        assert r["livenessProbe"]["httpGet"] == {"path": "/live", "port": "http", "scheme": "HTTPS"}
    else:
        assert r["readinessProbe"]["grpc"] == {"port": ports["grpc"]}
        assert r["livenessProbe"]["grpc"] == {"port": ports["grpc"], "service": "liveness"}

    w = container(worker_deploy)
    assert w["args"][0] == "worker"
    wa = args_of(w)
    for flag in wa:
        assert flag in worker_help, f"a worker gets --{flag}, which `tokenfab worker --help` lacks"
    wports = {p["name"]: p["containerPort"] for p in w["ports"]}
    assert wa["listen"] == f"0.0.0.0:{wports['grpc']}"
    assert wa["kv-port"] == str(wports["kv"]) and wa["metrics-port"] == str(wports["metrics"])
    assert wa["role"] == "both" and wa["transport"] in ("tcp", "nccl")
    # GPU workers move KV over NCCL; CPU workers cannot.
    assert (wa["transport"] == "nccl") == (wa["device"] == "cuda:0") == overlay.startswith("gpu")
    assert ("nccl-max-peers" in wa) == (wa["transport"] == "nccl")
    assert wa["drain-timeout-s"] == default_of(worker_help["drain-timeout-s"])
    env = {e["name"]: e for e in w["env"]}
    assert wa["advertise-host"] == "$(POD_IP)" and env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert wa["id"] == "$(POD_NAME)" and "POD_NAME" in env
    assert env["TOKENFAB_HEALTH_PORT"]["value"] == str(wports["grpc"])
    for probe in ("startupProbe", "livenessProbe"):
        assert w[probe]["grpc"] == {"port": wports["grpc"], "service": "liveness"}
    assert w["readinessProbe"]["grpc"] == {"port": wports["grpc"]}

    # Each worker attaches to every router: --router names the headless
    # Service over all router pods, ready or not, at their internal port.
    host, _, port = wa["router"].rpartition(":")
    internal = find(docs, "Service", "-router-internal")
    assert host == f"{internal['metadata']['name']}.tokenfab.svc" and port == ra["internal-port"]
    assert internal["spec"]["clusterIP"] == "None" and internal["spec"]["publishNotReadyAddresses"]
    assert internal["spec"]["selector"].items() <= router_deploy["spec"]["template"]["metadata"]["labels"].items()

    # The preStop drain uses `tokenfab drain` on this worker's port, with
    # the worker's drain budget, inside the grace period.
    hook = w["lifecycle"]["preStop"]["exec"]["command"]
    assert hook[:2] == ["tokenfab", "drain"]
    drain = dict(a[2:].split("=", 1) for a in hook[2:])
    assert set(drain) <= set(drain_help)
    assert drain["target"] == f"127.0.0.1:{wports['grpc']}" and drain["timeout-s"] == wa["drain-timeout-s"]
    grace = worker_deploy["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > int(wa["drain-timeout-s"])

    # Public Services reach the named ports; pods run unprivileged.
    public = find(docs, "Service", "-router")
    assert {p["targetPort"] for p in public["spec"]["ports"]} == {"grpc", "http", "metrics"}
    workers = find(docs, "Service", "-worker")
    assert workers["spec"]["clusterIP"] == "None"
    assert {p["targetPort"] for p in workers["spec"]["ports"]} <= set(wports)
    for d in (router_deploy, worker_deploy):
        spec = d["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] and spec["securityContext"]["runAsUser"] != 0
        assert container(d)["securityContext"]["allowPrivilegeEscalation"] is False

    # Keys come from the Secrets named, mounted as files (a changed Secret
    # reaches the running processes, which re-read them); the drain hook runs
    # in the worker's container and reads the cluster key there too. Workers
    # serve no public API, so they get no API keys.
    chosen = " ".join(OVERLAYS[overlay])
    keyed = {"api-key-file": "apiKeySecret" in chosen, "cluster-key-file": "clusterKeySecret" in chosen,
             "tls-cert-file": "tlsSecret" in chosen, "tls-key-file": "tlsSecret" in chosen}
    for deploy, args, secrets in (
            (router_deploy, ra, {"api-key-file": ("tokenfab-api-keys", "keys"),
                                 "cluster-key-file": ("tokenfab-cluster-key", "key"),
                                 "tls-cert-file": ("tokenfab-tls", "tls.crt"),
                                 "tls-key-file": ("tokenfab-tls", "tls.key")}),
            (worker_deploy, wa, {"cluster-key-file": ("tokenfab-cluster-key", "key")})):
        c = container(deploy)
        mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
        volumes = {v["name"]: v for v in deploy["spec"]["template"]["spec"].get("volumes", [])}
        for flag, (secret, key) in secrets.items():
            assert (flag in args) == keyed[flag], (flag, overlay)
            if not keyed[flag]:
                continue
            folder, _, file = args[flag].rpartition("/")
            assert file == key and mounts[folder]["readOnly"], (flag, mounts)
            volume = volumes[mounts[folder]["name"]]["secret"]
            assert volume["secretName"] == secret and volume["defaultMode"] == 0o440
        assert not {e["name"] for e in c.get("env", [])} & {"TOKENFAB_API_KEY", "TOKENFAB_CLUSTER_KEY"}
    assert "api-key-file" not in wa and "tls-cert-file" not in wa
    assert ("cluster-key-file" in drain) == keyed["cluster-key-file"]
    if keyed["cluster-key-file"]:
        assert drain["cluster-key-file"] == wa["cluster-key-file"]

    resources = w["resources"]
    if overlay.startswith("gpu"):
        assert wa["device"] == "cuda:0"
        assert resources["limits"]["nvidia.com/gpu"] == 1
        assert env["NCCL_SOCKET_IFNAME"]["value"] and "NCCL_DEBUG" in env
        volumes = {v["name"]: v for v in worker_deploy["spec"]["template"]["spec"]["volumes"]}
        assert volumes["shm"]["emptyDir"]["medium"] == "Memory"
        assert {"name": "shm", "mountPath": "/dev/shm"} in w["volumeMounts"]
        # Autoscaled: the scaler, not the chart, owns the replica count.
        assert "replicas" not in worker_deploy["spec"]
        assert ra["planner-profile"].startswith("/etc/tokenfab/profile/")
        # Several routers: their planners recommend, the autoscaler acts.
        assert router_deploy["spec"]["replicas"] > 1 and ra["planner-recommend-only"] is True
    else:
        assert wa["device"] == "cpu" and "nvidia.com/gpu" not in resources.get("limits", {})
        assert worker_deploy["spec"]["replicas"] >= 1


def test_disruption_budgets_and_network_policies(rendered):
    overlay, _, docs = rendered
    router_labels = find(docs, "Deployment", "-router")["spec"]["template"]["metadata"]["labels"]
    worker_deploy = find(docs, "Deployment", "-worker")
    worker_labels = worker_deploy["spec"]["template"]["metadata"]["labels"]
    wports = {p["name"]: p["containerPort"] for p in container(worker_deploy)["ports"]}
    pdb = find(docs, "PodDisruptionBudget", "-worker")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= worker_labels.items()
    assert pdb["spec"]["maxUnavailable"] == 1
    assert find(docs, "PodDisruptionBudget", "-router")["spec"]["minAvailable"] >= 1

    policy = find(docs, "NetworkPolicy", "-worker")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= worker_labels.items()
    allowed = {}  # port -> who may reach it
    for rule in policy["spec"]["ingress"]:
        (source,) = rule["from"]
        if "podSelector" in source:
            labels = source["podSelector"]["matchLabels"]
            who = "router" if labels.items() <= router_labels.items() else "worker"
            assert labels.items() <= (router_labels if who == "router" else worker_labels).items()
        else:
            who = "prometheus"
            assert "namespaceSelector" in source
        for p in rule.get("ports", [{"port": "any"}]):
            allowed.setdefault(p["port"], set()).add(who)
    if args_of(container(worker_deploy))["transport"] == "nccl":
        # NCCL's bootstrap and connections use ephemeral ports: workers
        # reach each other on any port, nothing else does.
        assert allowed == {"any": {"worker"}, wports["grpc"]: {"router"},
                           wports["metrics"]: {"prometheus"}}, overlay
    else:
        assert allowed == {wports["grpc"]: {"router", "worker"}, wports["kv"]: {"worker"},
                           wports["metrics"]: {"prometheus"}}, overlay


def test_monitoring_objects_point_at_what_exists(tmp_path):
    docs = [d for d in yaml.safe_load_all(render("gpu")) if d]
    router_service = find(docs, "Service", "-router")
    worker_deploy = find(docs, "Deployment", "-worker")
    pod_labels = worker_deploy["spec"]["template"]["metadata"]["labels"]

    sm = find(docs, "ServiceMonitor", "-router")
    assert sm["spec"]["selector"]["matchLabels"].items() <= router_service["metadata"]["labels"].items()
    assert {e["port"] for e in sm["spec"]["endpoints"]} <= {p["name"] for p in router_service["spec"]["ports"]}
    # job="tokenfab-router" / "tokenfab-worker", as the alerts expect.
    assert router_service["metadata"]["labels"][sm["spec"]["jobLabel"]] == "tokenfab-router"
    pm = find(docs, "PodMonitor", "-worker")
    assert pm["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert {e["port"] for e in pm["spec"]["podMetricsEndpoints"]} <= {p["name"] for p in container(worker_deploy)["ports"]}
    assert pod_labels[pm["spec"]["jobLabel"]] == "tokenfab-worker"
    assert 'job="tokenfab-worker"' in (DEPLOY / "prometheus" / "rules" / "alerts.yml").read_text()

    # The PrometheusRule carries deploy/prometheus/rules, prices from values,
    # and promtool accepts it.
    rule = find(docs, "PrometheusRule", "")
    groups = rule["spec"]["groups"]
    shipped = []
    for f in ("prices.yml", "recording.yml", "alerts.yml"):
        shipped += yaml.safe_load((DEPLOY / "prometheus" / "rules" / f).read_text())["groups"]
    assert groups == shipped
    rules_file = tmp_path / "rules.yml"
    rules_file.write_text(yaml.safe_dump({"groups": groups}))
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: run scripts/setup (Debian package prometheus)"
    r = subprocess.run([promtool, "check", "rules", str(rules_file)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "expr: vector(0.3)" in render_with("--set", "monitoring.prices.energyUsdPerKwh=0.3")

    dashboard = find(docs, "ConfigMap", "-dashboard")
    assert json.loads(dashboard["data"]["tokenfab-factory.json"]) == \
        json.loads((DEPLOY / "grafana" / "tokenfab-factory.json").read_text())

    # The scaler sizes the worker Deployment with the pool query that
    # test_deploy_autoscaling holds to the router's exported series.
    so = find(docs, "ScaledObject", "-worker")
    assert so["spec"]["scaleTargetRef"]["name"] == worker_deploy["metadata"]["name"]
    pool = [d for d in yaml.safe_load_all((DEPLOY / "autoscaling" / "keda-scaledobjects.yaml").read_text())
            if d and d["metadata"]["name"] == "tokenfab-worker-pool"][0]
    assert so["spec"]["triggers"][0]["metadata"]["query"] == pool["spec"]["triggers"][0]["metadata"]["query"]


def render_with(*args: str) -> str:
    """The GPU overlay's monitoring objects with `args` on top."""
    r = helm("template", "factory", str(CHART), "-n", "tokenfab", "-f", str(CHART / "values-gpu.yaml"),
             "--show-only", "templates/monitoring.yaml", *args)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.mark.parametrize("values,message", [
    ("worker.device=tpu", "worker.device must be cpu or cuda"),
    ("worker.terminationGracePeriodSeconds=30", "must exceed worker.drainTimeoutSeconds"),
    ("autoscaling.hpa.enabled=true", "enable keda or hpa, not both"),
])
def test_the_chart_refuses_inconsistent_values(values, message):
    r = helm("template", "factory", str(CHART), "-f", str(CHART / "values-gpu.yaml"), "--set", values)
    assert r.returncode != 0 and message in r.stderr, r.stderr
