"""Black-box test harness: starts real `tokenfab serve` processes on loopback.

Fixtures:
  server        a session-wide server on the default model (SmolLM2): .http_url,
                .grpc_target, .metrics_url, .model_id
  start_server  a factory for servers with other flags (e.g. a tiny queue);
                they are stopped at the end of the test
  grpc_modules  (generation_pb2, generation_pb2_grpc) generated from our proto
"""
import os
import pathlib
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
CACHE = pathlib.Path(os.environ.get("XDG_CACHE_HOME", pathlib.Path.home() / ".cache")) / "tokenfab"
DEFAULT_MODEL = CACHE / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"


def binary() -> str:
    path = os.environ.get("TOKENFAB_BINARY", str(ROOT / "build" / "server" / "tokenfab"))
    if not os.path.exists(path):
        pytest.fail(f"{path} is missing: build first (scripts/test does)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, *extra_args: str, model: str = str(DEFAULT_MODEL), env: dict = None,
                 ca_file: str = None):
        """`env`: the process's whole environment (default: this one's);
        `ca_file`: the server speaks TLS (its --tls-* flags are in
        `extra_args`) with a certificate this CA signed."""
        if not os.path.exists(model):
            pytest.fail(f"{model} is missing: run scripts/setup")
        self.grpc_port, self.http_port, self.metrics_port = free_port(), free_port(), free_port()
        self.log = tempfile.NamedTemporaryFile(prefix="tokenfab-serve-", suffix=".log", delete=False)
        args = [binary(), "serve", "--model", model, "--host", "127.0.0.1",
                "--grpc-port", str(self.grpc_port), "--http-port", str(self.http_port),
                "--metrics-port", str(self.metrics_port), "--threads", "2", *extra_args]
        self.process = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.ssl_context = ssl.create_default_context(cafile=ca_file) if ca_file else None
        self.http_url = f"{'https' if ca_file else 'http'}://127.0.0.1:{self.http_port}"
        self.grpc_target = f"127.0.0.1:{self.grpc_port}"
        self.metrics_url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        self.model_id = pathlib.Path(model).stem
        self._wait_healthy()

    def _wait_healthy(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"tokenfab serve exited with {self.process.returncode}:\n{self.output()}")
            try:
                with urllib.request.urlopen(self.http_url + "/health", timeout=2,
                                            context=self.ssl_context) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"tokenfab serve did not become healthy:\n{self.output()}")

    def output(self) -> str:
        return pathlib.Path(self.log.name).read_text(errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                # A shutdown that hangs is a bug: keep the threads' stacks for the report.
                if shutil.which("gdb"):
                    bt = subprocess.run(["gdb", "-p", str(self.process.pid), "-batch", "-ex",
                                         "thread apply all bt"], capture_output=True, text=True)
                    with open(self.log.name, "a") as log:
                        log.write("\n--- did not exit 30 s after SIGTERM; stacks:\n" + bt.stdout)
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@pytest.fixture(scope="session")
def server():
    s = Server()
    yield s
    code = s.stop()
    assert code == 0, f"tokenfab serve exited with {code}:\n{s.output()}"


@pytest.fixture
def start_server():
    started = []

    def start(*args: str, **kwargs) -> Server:
        s = Server(*args, **kwargs)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


@pytest.fixture(scope="session")
def grpc_modules(tmp_path_factory):
    from grpc_tools import protoc

    out = tmp_path_factory.mktemp("grpc_gen")
    proto_root = ROOT / "proto"
    import grpc_tools

    include = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    protos = ["tokenfab/v1/generation.proto", "tokenfab/internal/v1/worker.proto",
              "tokenfab/internal/v1/control.proto"]
    rc = protoc.main(["protoc", f"-I{proto_root}", f"-I{include}", f"--python_out={out}",
                      f"--grpc_python_out={out}", *[str(proto_root / p) for p in protos]])
    assert rc == 0, "protoc failed"
    sys.path.insert(0, str(out))
    from tokenfab.v1 import generation_pb2, generation_pb2_grpc  # noqa: E402

    return generation_pb2, generation_pb2_grpc
