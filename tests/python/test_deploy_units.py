"""deploy/systemd: the router and worker units pass `systemd-analyze verify`
(with no warning: it exits 0 on unknown keys and bad values, so its output
must be empty too), every flag their ExecStart lines pass exists in the
binary's `--help`, and the ports and drain budget in the env files are the
binary's defaults."""
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from cli_help import default_of, flags_of

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "systemd"
BINARY = os.path.abspath(os.environ.get("TOKENFAB_BINARY", str(ROOT / "build" / "server" / "tokenfab")))


def env_file(name):
    values = {}
    for line in (UNITS / name).read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def exec_start(unit):
    for line in (UNITS / unit).read_text().splitlines():
        if line.startswith("ExecStart="):
            return line[len("ExecStart="):].split()
    raise AssertionError(f"{unit} has no ExecStart")


@pytest.fixture(scope="module")
def verify_dir(tmp_path_factory):
    """Copies of the units that point at the built binary and the env files
    in the tree (systemd-analyze checks that both exist)."""
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing: run scripts/setup (Debian package systemd)")
    d = tmp_path_factory.mktemp("units")
    for unit in ("tokenfab-router.service", "tokenfab-worker@.service"):
        text = (UNITS / unit).read_text()
        text = text.replace("/usr/local/bin/tokenfab", BINARY).replace("/etc/tokenfab/", f"{UNITS}/")
        (d / unit).write_text(text)
    return d


@pytest.mark.parametrize("unit", ["tokenfab-router.service", "tokenfab-worker@0.service"])
def test_units_verify_cleanly(verify_dir, unit):
    r = subprocess.run(["systemd-analyze", "verify", str(verify_dir / unit)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), r.stdout + r.stderr


def test_verify_catches_a_broken_unit(verify_dir):
    # The check above can fail: a misspelt key is reported.
    broken = verify_dir / "broken.service"
    broken.write_text((verify_dir / "tokenfab-router.service").read_text().replace("Type=", "Tpe="))
    r = subprocess.run(["systemd-analyze", "verify", str(broken)], capture_output=True, text=True,
                       timeout=60)
    assert "Unknown key" in r.stdout + r.stderr


@pytest.mark.parametrize("unit,command", [("tokenfab-router.service", "router"),
                                          ("tokenfab-worker@.service", "worker")])
def test_every_flag_exists(unit, command):
    argv = exec_start(unit)
    assert argv[0] == "/usr/local/bin/tokenfab" and argv[1] == command
    known = flags_of(command)
    used = [a[2:] for a in argv if a.startswith("--")]
    assert used, f"{unit} passes no flags"
    for flag in used:
        assert flag in known, f"{unit} passes --{flag}, which `tokenfab {command} --help` lacks"


def test_env_files_use_the_binarys_defaults():
    router = flags_of("router")
    env = env_file("router.env")
    for flag, key in [("grpc-port", "TOKENFAB_GRPC_PORT"), ("http-port", "TOKENFAB_HTTP_PORT"),
                      ("metrics-port", "TOKENFAB_METRICS_PORT"),
                      ("internal-port", "TOKENFAB_INTERNAL_PORT"), ("host", "TOKENFAB_HOST")]:
        assert env[key] == default_of(router[flag]), f"router.env {key} vs --{flag}: {router[flag]}"
    worker = flags_of("worker")
    wenv = env_file("worker.env")
    assert wenv["TOKENFAB_DRAIN_TIMEOUT_S"] == default_of(worker["drain-timeout-s"])
    assert wenv["TOKENFAB_ROUTER"].endswith(":" + env["TOKENFAB_INTERNAL_PORT"])
    # The stop timeout leaves the drain budget room to finish.
    stop = re.search(r"^TimeoutStopSec=(\d+)", (UNITS / "tokenfab-worker@.service").read_text(), re.M)
    assert stop and int(stop.group(1)) > int(wenv["TOKENFAB_DRAIN_TIMEOUT_S"])
    # Every ${VAR} an ExecStart reads is set (by its env file or the unit).
    for unit, values in [("tokenfab-router.service", env), ("tokenfab-worker@.service", wenv)]:
        text = (UNITS / unit).read_text()
        for var in re.findall(r"\$\{?([A-Z_]+)\}?", " ".join(exec_start(unit))):
            assert var in values or f"Environment={var}=" in text, f"{unit} reads ${var}, never set"
