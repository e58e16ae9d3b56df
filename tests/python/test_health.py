"""`tokenfab health`, the check a container runs and the service Kubernetes'
gRPC probes ask: readiness ("") and liveness of a real router and worker.
A router is ready once a worker that can decode is attached, a worker until
it drains; both stay live meanwhile. Also the worker's fixed --kv-port."""
import concurrent.futures
import signal
import subprocess
import time

import pytest

from cluster import Cluster
from conftest import binary, free_port


def health(target: str, *args: str):
    r = subprocess.run([binary(), "health", "--target", target, "--timeout-ms", "3000", *args],
                       capture_output=True, text=True, timeout=30)
    return r.returncode, r.stdout + r.stderr


@pytest.fixture
def cluster(grpc_modules):
    c = Cluster(grpc_modules)
    yield c
    c.close()


def test_readiness_and_liveness_of_a_router_and_a_worker(cluster):
    c = cluster
    assert health(c.grpc_target) == (1, f"{c.grpc_target}: NOT_SERVING\n")
    assert health(c.grpc_target, "--service", "liveness") == (0, f"{c.grpc_target} (liveness): SERVING\n")

    listen, kv = free_port(), free_port()
    worker = c.start_worker("w", "both", "--listen", f"127.0.0.1:{listen}", "--kv-port", str(kv))
    assert f"KV over tcp at 127.0.0.1:{kv}" in worker.output()
    deadline = time.monotonic() + 10
    while health(c.grpc_target)[0] != 0:
        assert time.monotonic() < deadline, c.logs()
        time.sleep(0.1)
    target = f"127.0.0.1:{listen}"
    assert health(target) == (0, f"{target}: SERVING\n")
    assert health(target, "--service", "tokenfab.internal.v1.Worker")[0] == 0

    # A draining worker is not ready, but live, until its request finishes.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        long = pool.submit(c.generate, "Tell me a long story about a river.", 400)
        while c.worker_metric("w", "tokenfab_worker_running_requests") < 1 and not long.done():
            time.sleep(0.02)
        worker.process.send_signal(signal.SIGTERM)
        seen = None
        deadline = time.monotonic() + 10
        while seen is None and time.monotonic() < deadline and not long.done():
            if health(target)[1] == f"{target}: NOT_SERVING\n":
                seen = health(target, "--service", "liveness")
        assert not long.done(), "the request finished before the drain could be seen"
        assert seen is not None and seen[0] == 0, (seen, worker.output())
        assert long.result()[1].usage.completion_tokens == 400
    assert worker.process.wait(timeout=30) == 0


def test_an_unreachable_target_fails_with_the_reason():
    code, out = health(f"127.0.0.1:{free_port()}", "--timeout-ms", "500")
    assert code == 1 and "tokenfab health:" in out and "gRPC code" in out, out
    assert subprocess.run([binary(), "health", "--timeout-ms", "0"], capture_output=True).returncode == 2


def test_drain_finishes_the_requests_in_flight_and_leaves_the_process_to_sigterm(cluster):
    c = cluster
    listen = free_port()
    worker = c.start_worker("w", "both", "--listen", f"127.0.0.1:{listen}")
    target = f"127.0.0.1:{listen}"
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        long = pool.submit(c.generate, "Tell me a long story about a river.", 300)
        while c.worker_metric("w", "tokenfab_worker_running_requests") < 1 and not long.done():
            time.sleep(0.02)
        quick = subprocess.run([binary(), "drain", "--target", target, "--timeout-s", "0"],
                               capture_output=True, text=True, timeout=30)
        assert quick.returncode == 1 and "1 requests still in flight after 0 s" in quick.stderr, quick
        assert not long.done()
        drained = subprocess.run([binary(), "drain", "--target", target, "--timeout-s", "120"],
                                 capture_output=True, text=True, timeout=180)
        assert drained.returncode == 0, drained
        assert drained.stdout == f"{target}: drained (1 requests were in flight)\n"
        assert long.done() and long.result()[1].usage.completion_tokens == 300
    # The router was told: it lists the worker as draining and routes nothing there.
    (w,) = c.list_workers()
    assert w.draining
    assert health(target)[0] == 1 and health(target, "--service", "liveness")[0] == 0
    assert worker.alive()
    worker.process.send_signal(signal.SIGTERM)
    assert worker.process.wait(timeout=10) == 0
    assert "every request finished" in worker.output()
