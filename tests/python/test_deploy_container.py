"""deploy/container/Dockerfile, checked without a container engine (none
runs on the build machines): hadolint passes; the build stages stand on
Debian 12 and on NVIDIA's CUDA development image, the run stages on Debian
12 slim and on the matching CUDA runtime image; the build runs the scripts
CI runs; the image runs unprivileged, declares the ports the binary and the
chart use, and its HEALTHCHECK command, run here against a real `tokenfab
serve`, passes when it serves and fails when nothing listens."""
import os
import pathlib
import re
import shlex
import subprocess
import sys

import pytest
import yaml

from cli_help import default_of, flags_of
from conftest import binary, free_port

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "container" / "Dockerfile"
STAGE = ROOT / "deploy" / "container" / "stage"
VALUES = ROOT / "deploy" / "helm" / "tokenfab" / "values.yaml"


def instructions():
    """[(INSTRUCTION, arguments)], continuation lines joined, comments out."""
    out, pending = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        words = (pending + line).strip().split(None, 1)
        pending = ""
        out.append((words[0].upper(), words[1] if len(words) > 1 else ""))
    return out


def stages():
    """{stage name: (base image, [instructions])}, with ARG defaults applied."""
    args, result, current = {}, {}, None
    for op, rest in instructions():
        if op == "ARG" and current is None:
            name, _, value = rest.partition("=")
            args[name] = value
        elif op == "FROM":
            m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?$", rest, re.I)
            base = re.sub(r"\$\{(\w+)\}", lambda v: args.get(v.group(1), v.group(0)), m.group(1))
            current = m.group(2) or "final"
            result[current] = (base, [])
        else:
            result[current][1].append((op, rest))
    return args, result


def test_hadolint_passes():
    hadolint = pathlib.Path(sys.executable).parent / "hadolint"
    assert hadolint.exists(), "hadolint is missing: run scripts/setup (tests/python/requirements.txt)"
    r = subprocess.run([str(hadolint), str(DOCKERFILE)], capture_output=True, text=True)
    assert r.returncode == 0 and not r.stdout.strip(), r.stdout + r.stderr
    # It does find things: a root user and an unpinned base are reported.
    r = subprocess.run([str(hadolint), "-"], input="FROM debian\nUSER root\nRUN apt-get install curl\n",
                       capture_output=True, text=True)
    assert r.returncode != 0 and "DL3006" in r.stdout, r.stdout


def test_stages_build_on_debian_and_cuda_devel_and_run_on_slim_and_cuda_runtime():
    args, s = stages()
    assert s["build-cpu"][0] == "debian:12" and s["run-cpu"][0] == "debian:12-slim"
    devel = re.fullmatch(r"nvidia/cuda:([\d.]+)-devel-(\w+[\d.]+)", s["build-gpu"][0])
    runtime = re.fullmatch(r"nvidia/cuda:([\d.]+)-runtime-(\w+[\d.]+)", s["run-gpu"][0])
    assert devel and runtime, (s["build-gpu"][0], s["run-gpu"][0])
    assert devel.groups() == runtime.groups(), "the runtime image must match the devel image"
    # One run stage, on the variant's base, from the variant's build.
    assert args["VARIANT"] == "cpu"
    assert s["build"][0] == "build-cpu" and s["final"][0] == "run-cpu"  # VARIANT=cpu applied
    for build in ("build-cpu", "build-gpu"):
        runs = [rest for op, rest in s[build][1] if op == "RUN"]
        variant = build.split("-")[1]
        assert runs == [f"deploy/container/stage build {variant} /out"], runs


def test_the_build_runs_the_scripts_ci_runs():
    stage = STAGE.read_text()
    test = (ROOT / "scripts" / "test").read_text()
    for script in ("scripts/setup", "scripts/build"):
        assert f'"$root/{script}"' in stage, f"deploy/container/stage does not run {script}"
        assert f'"$ROOT/{script}"' in test, f"scripts/test does not run {script}"
    assert "scripts/runtime-packages" in stage
    r = subprocess.run(["bash", "-n", str(STAGE)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([str(STAGE), "build", "arm", "/tmp/x"], capture_output=True, text=True)
    assert r.returncode == 2 and "usage" in r.stderr
    # The container build leaves the checkout's build outputs behind.
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", "build*", ".venv*"} <= set(ignored)


def test_runtime_packages_are_the_packages_holding_the_binarys_libraries():
    r = subprocess.run([str(ROOT / "scripts" / "runtime-packages"), binary()], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    packages = r.stdout.split()
    assert any(p.startswith("libgrpc++") for p in packages) and any(p.startswith("libprotobuf") for p in packages)
    for p in packages:
        q = subprocess.run(["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True)
        assert "install ok installed" in q.stdout, f"{p}: {q.stdout}{q.stderr}"
    # Nothing of the toolchain.
    assert not any(p.endswith("-dev") for p in packages), packages


def final_stage():
    return dict((op, rest) for op, rest in stages()[1]["final"][1])


def test_the_image_runs_unprivileged_with_the_binarys_ports():
    final = final_stage()
    user = final["USER"].split(":")[0]
    assert user not in ("root", "0") and int(user) >= 1000
    stage = STAGE.read_text()
    assert "--uid \"$UID_GID\" --gid \"$UID_GID\"" in stage and f"UID_GID={user}" in stage
    exposed = {int(p) for p in final["EXPOSE"].split()}
    router = flags_of("router")
    want = {int(default_of(router[f"{name}-port"])) for name in ("grpc", "http", "metrics", "internal")}
    workers = yaml.safe_load(VALUES.read_text())["worker"]["ports"]
    want |= set(workers.values())
    assert exposed == want
    assert final["ENTRYPOINT"] == '["tokenfab"]' and final["CMD"] == '["serve"]'


def test_the_healthcheck_command_passes_on_a_serving_process_and_fails_without_one(server):
    final = final_stage()
    m = re.match(r"(--\S+\s+)*CMD\s+(\[.*\])$", final["HEALTHCHECK"])
    assert m, final["HEALTHCHECK"]
    command = eval(m.group(2))  # a JSON array of strings
    assert command[:2] == ["/bin/sh", "-c"]
    words = shlex.split(command[2])
    assert words[:3] == ["exec", "tokenfab", "health"]
    health = flags_of("health")
    assert {w[2:] for w in words if w.startswith("--")} <= set(health)
    assert "liveness" in words
    # Run it as the image would, with this build's binary as `tokenfab`.
    bindir = pathlib.Path(binary()).parent
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "TOKENFAB_HEALTH_PORT": str(server.grpc_port)}
    r = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "SERVING" in r.stdout, r.stdout + r.stderr
    env["TOKENFAB_HEALTH_PORT"] = str(free_port())
    r = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode != 0, r.stdout
