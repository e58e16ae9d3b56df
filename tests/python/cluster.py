"""Multi-process clusters on loopback for the disaggregation tests: a real
`tokenfab router` and real `tokenfab worker` processes, with helpers to
read Prometheus metrics and drive the router's admin API."""
import concurrent.futures
import os
import pathlib
import re
import sys
import threading
import time
import urllib.request

import grpc

from conftest import DEFAULT_MODEL, binary, free_port

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "bench"))
from factory_sim import Proc  # noqa: E402  (a process with its log)


def scrape(url: str) -> dict:
    """Prometheus text -> {'name{labels}': value}."""
    with urllib.request.urlopen(url, timeout=5) as r:
        body = r.read().decode()
    out = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


class Cluster:
    """A router; workers are added with start_worker()."""

    def __init__(self, grpc_modules, *router_args: str, model: str = str(DEFAULT_MODEL),
                 host: str = "127.0.0.1", ports: tuple = None, name: str = "router",
                 cluster_key: str = None):
        """`ports` (gRPC, HTTP, metrics, internal) restarts a router where one was;
        `cluster_key`: what this helper's admin calls send (the router's own
        keys come with `router_args`)."""
        self.model = model
        self.host = host
        self.grpc_port, self.http_port, self.metrics_port, self.internal_port = \
            ports or (free_port(), free_port(), free_port(), free_port())
        self.router = Proc(name, [binary(), "router", "--model", model, "--host", host,
                                      "--grpc-port", str(self.grpc_port), "--http-port", str(self.http_port),
                                      "--metrics-port", str(self.metrics_port),
                                      "--internal-port", str(self.internal_port), *router_args])
        self.workers = {}
        self.worker_metrics = {}
        self.ports = (self.grpc_port, self.http_port, self.metrics_port, self.internal_port)
        self.admin_metadata = [("authorization", f"Bearer {cluster_key}")] if cluster_key else None
        self.internal_target = f"{host}:{self.internal_port}"
        self.http_url = f"http://{host}:{self.http_port}"
        self.grpc_target = f"{host}:{self.grpc_port}"
        self.metrics_url = f"http://{host}:{self.metrics_port}/metrics"
        self.model_id = pathlib.Path(model).stem
        self._channel = grpc.insecure_channel(self.internal_target)
        self._admin_channel = self._channel
        from tokenfab.internal.v1 import control_pb2, control_pb2_grpc
        self.control_pb2 = control_pb2
        self.admin = control_pb2_grpc.RouterAdminStub(self._channel)
        pb2, pb2_grpc = grpc_modules
        self.pb2 = pb2
        self._public = grpc.insecure_channel(self.grpc_target)
        self.stub = pb2_grpc.GenerationStub(self._public)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if not self.router.alive():
                raise RuntimeError(f"router exited:\n{self.router.output()}")
            try:
                self.list_workers()
                return
            except grpc.RpcError:
                time.sleep(0.1)
        raise RuntimeError(f"router did not start:\n{self.router.output()}")

    def start_worker(self, worker_id: str, role: str, *args: str, wait: bool = True,
                     model: str = None, router: str = None, env: dict = None) -> Proc:
        """`router` (default: this router) is the worker's --router value."""
        # The worker picks its metrics port (a port picked here could be taken
        # by another process's ephemeral port before the worker binds it).
        p = Proc(f"worker-{worker_id}", [binary(), "worker", "--router", router or self.internal_target,
                                         "--role", role, "--model", model or self.model, "--id", worker_id,
                                         "--threads", "1", "--kv-cache-mb", "96",
                                         "--metrics-port", "0", *args], env=env)
        self.workers[worker_id] = p
        if wait:
            self.wait_for_worker(worker_id)
        return p

    def wait_for_worker(self, worker_id: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        p = self.workers.get(worker_id)
        while time.monotonic() < deadline:
            port = re.search(r"metrics on port (\d+)", p.output()) if p is not None else None
            if port:
                self.worker_metrics[worker_id] = f"http://127.0.0.1:{port.group(1)}/metrics"
            if (p is None or port) and worker_id in {w.worker_id for w in self.list_workers()}:
                return
            if p is not None and not p.alive():
                raise RuntimeError(f"worker {worker_id} exited:\n{p.output()}")
            time.sleep(0.1)
        raise RuntimeError(f"worker {worker_id} did not attach:\n{self.router.output()}")

    def list_workers(self):
        return self.admin.ListWorkers(self.control_pb2.ListWorkersRequest(), timeout=5,
                                      metadata=self.admin_metadata).workers

    def metrics(self) -> dict:
        return scrape(self.metrics_url)

    def worker_metric(self, worker_id: str, name: str) -> float:
        return scrape(self.worker_metrics[worker_id]).get(name, 0.0)

    def generate(self, prompt: str, max_tokens: int, timeout: float = 300, **fields):
        """One greedy Generate stream; returns (token ids, final response)."""
        ids, final = [], None
        req = self.pb2.GenerateRequest(prompt=prompt, max_tokens=max_tokens, stop_at_eos=False,
                                       sampling=self.pb2.SamplingParams(temperature=0), **fields)
        for r in self.stub.Generate(req, timeout=timeout):
            ids.extend(r.token_ids)
            if r.finish_reason:
                final = r
        return ids, final

    def close(self) -> None:
        for p in self.workers.values():
            p.stop(timeout=30)
        self.router.stop(timeout=30)
        self._channel.close()
        self._public.close()

    def logs(self) -> str:
        parts = [f"--- router\n{self.router.output()}"]
        parts += [f"--- {name}\n{p.output()}" for name, p in self.workers.items()]
        return "\n".join(parts)


def stream_all(c, prompts, max_tokens, started, results):
    """Streams each prompt on its own thread; `started` counts streams with >= 4 tokens."""
    def run(i):
        ids = []
        req = c.pb2.GenerateRequest(prompt=prompts[i], max_tokens=max_tokens, stop_at_eos=False,
                                    sampling=c.pb2.SamplingParams(temperature=0))
        counted = False
        for r in c.stub.Generate(req, timeout=300):
            ids.extend(r.token_ids)
            if len(ids) >= 4 and not counted:
                counted = True
                started.release()
            if r.finish_reason:
                results[i] = (ids, r.finish_reason)
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    return threads


def run_concurrently(c, prompts, max_tokens):
    """All prompts at once, greedy; checks each finished with `max_tokens`
    tokens and returns the router's (remote, local) prefill decisions."""
    with concurrent.futures.ThreadPoolExecutor(len(prompts)) as pool:
        results = list(pool.map(lambda p: c.generate(p, max_tokens), prompts))
    for ids, final in results:
        assert final is not None and len(ids) == max_tokens, c.logs()
    m = c.metrics()
    remote = m['tokenfab_router_prefill_decisions_total{decision="remote",reason="above_threshold"}']
    local = sum(v for k, v in m.items()
                if k.startswith("tokenfab_router_prefill_decisions_total") and 'decision="local"' in k)
    return remote, local
