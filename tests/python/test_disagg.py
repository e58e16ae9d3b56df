"""Disaggregated serving across real processes on loopback: `tokenfab router`
with `tokenfab worker`s of each role, driven by grpcio clients. Greedy
decoding makes every comparison exact: the CPU engine is bit-identical
however a sequence's KV was computed or moved."""
import concurrent.futures
import os
import signal
import socket
import struct
import threading
import time
import urllib.error
import urllib.request

import grpc
import pytest

from cluster import Cluster, run_concurrently, stream_all
from conftest import Server, free_port
from prompts import PROMPTS

SENTENCES = [
    "The river ran past the old mill where the children used to play in summer.",
    "A quiet morning settled over the harbour as the boats returned with their catch.",
    "Scientists measured the temperature of the lake every day for a whole year.",
    "In the library, rows of dusty books waited for someone to open them again.",
    "The train left the station at dawn and crossed three countries before night.",
]


def long_prompt(i: int, sentences: int) -> str:
    # The number first: no two prompts share a prefix block.
    return f"Story {i}. " + " ".join(SENTENCES[(i + k) % len(SENTENCES)] for k in range(sentences))


@pytest.fixture
def cluster(grpc_modules):
    made = []

    def make(*router_args, **kwargs):
        c = Cluster(grpc_modules, *router_args, **kwargs)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def reference(server, grpc_modules, prompts, max_tokens):
    """The aggregated output: the same prompts through `tokenfab serve`."""
    pb2, pb2_grpc = grpc_modules
    with grpc.insecure_channel(server.grpc_target) as ch:
        stub = pb2_grpc.GenerationStub(ch)
        out = []
        for p in prompts:
            req = pb2.GenerateRequest(prompt=p, max_tokens=max_tokens, stop_at_eos=False,
                                      sampling=pb2.SamplingParams(temperature=0))
            out.append([t for r in stub.Generate(req, timeout=300) for t in r.token_ids])
        return out


def test_disaggregated_greedy_output_equals_aggregated(server, grpc_modules, cluster):
    c = cluster("--disagg-threshold", "16")
    c.start_worker("P", "prefill")
    c.start_worker("D", "decode")
    prompts = [long_prompt(i, 1 + i % 4) for i in range(10)]
    want = reference(server, grpc_modules, prompts, 16)
    for i, p in enumerate(prompts):
        ids, final = c.generate(p, 16)
        assert ids == want[i], f"prompt {i} differs through prefill+decode workers:\n{c.logs()}"
        assert final.usage.completion_tokens == 16
    m = c.metrics()
    assert m['tokenfab_router_prefill_decisions_total{decision="remote",reason="above_threshold"}'] == 10
    assert c.worker_metric("D", 'tokenfab_worker_remote_prefills_total{result="ok"}') == 10
    assert c.worker_metric("P", "tokenfab_worker_kv_exports_total") == 10
    assert c.worker_metric("D", 'tokenfab_worker_kv_transfer_bytes_total{direction="received"}') > 0
    assert m['tokenfab_router_workers{role="prefill"}'] == 1
    assert m['tokenfab_router_workers{role="decode"}'] == 1


def test_two_prefill_two_decode_workers_under_64_concurrent_mixed_requests(cluster):
    c = cluster("--disagg-threshold", "48")
    for w, role in [("P0", "prefill"), ("P1", "prefill"), ("D0", "decode"), ("D1", "decode")]:
        c.start_worker(w, role)
    prompts = [long_prompt(i, 3) if i % 2 else PROMPTS[i % len(PROMPTS)] for i in range(64)]
    remote, local = run_concurrently(c, prompts, 8)
    assert remote > 0 and local > 0 and remote + local == 64, c.metrics()
    assert c.metrics()["tokenfab_router_kv_transfer_bytes_total"] > 0 or time.sleep(0.5) or \
        c.metrics()["tokenfab_router_kv_transfer_bytes_total"] > 0
    assert sum(c.worker_metric(d, 'tokenfab_worker_kv_transfer_bytes_total{direction="received"}')
               for d in ("D0", "D1")) > 0


def three_streams_on_a_then_b(server, grpc_modules, cluster):
    """Worker A alone gets three 32-token streams; once each has 4 tokens,
    worker B attaches. Returns the cluster, the aggregated outputs, the
    streams' threads and their results."""
    c = cluster("--disagg-threshold", "0")
    c.start_worker("A", "both")
    want = reference(server, grpc_modules, PROMPTS[:3], 32)
    started = threading.Semaphore(0)
    results = {}
    threads = stream_all(c, PROMPTS[:3], 32, started, results)
    for _ in range(3):
        assert started.acquire(timeout=120)
    c.start_worker("B", "both")
    return c, want, threads, results


def two_decoders_streaming(server, grpc_modules, cluster, prompts):
    """Two decode workers with `prompts` streaming through them (every stream
    has its first token): the cluster, the reference outputs, the stream
    threads, their results, and the workers with requests in flight."""
    c = cluster("--disagg-threshold", "0")
    c.start_worker("D0", "decode")
    c.start_worker("D1", "decode")
    want = reference(server, grpc_modules, prompts, 40)
    started = threading.Semaphore(0)
    results = {}
    threads = stream_all(c, prompts, 40, started, results)
    for _ in prompts:
        assert started.acquire(timeout=120), c.logs()
    busy = [w.worker_id for w in c.list_workers() if w.active_requests > 0]
    assert busy, "no worker has requests in flight"
    return c, want, threads, results, busy


def test_killing_a_decode_worker_mid_stream_migrates_its_requests(server, grpc_modules, cluster):
    prompts = PROMPTS[:6]
    c, want, threads, results, busy = two_decoders_streaming(server, grpc_modules, cluster, prompts)
    c.workers[busy[0]].kill9()
    for t in threads:
        t.join(timeout=300)
    for i in range(len(prompts)):
        assert i in results, f"stream {i} did not complete:\n{c.logs()}"
        assert results[i][0] == want[i], f"stream {i} differs after the migration:\n{c.logs()}"
    assert c.metrics()["tokenfab_router_migrations_total"] >= 1


def test_a_worker_that_stops_reporting_is_dropped_and_comes_back(server, grpc_modules, cluster):
    prompts = PROMPTS[:4]  # the router keeps the default --worker-timeout-ms
    c, want, threads, results, busy = two_decoders_streaming(server, grpc_modules, cluster, prompts)
    busy = busy[0]
    frozen = c.workers[busy].process
    frozen.send_signal(signal.SIGSTOP)  # alive but silent: no reports, no tokens
    t0 = time.monotonic()
    try:
        while busy in {w.worker_id for w in c.list_workers()}:
            assert time.monotonic() - t0 < 10, c.logs()
            time.sleep(0.05)
        dropped_after = time.monotonic() - t0
        for t in threads:
            t.join(timeout=300)
    finally:
        frozen.send_signal(signal.SIGCONT)
    assert dropped_after < 2.0, f"dropped after {dropped_after:.2f} s"
    for i in range(len(prompts)):
        assert results.get(i, ([], 0))[0] == want[i], f"stream {i}:\n{c.logs()}"
    assert c.metrics()["tokenfab_router_migrations_total"] >= 1
    c.wait_for_worker(busy, timeout=30)  # resumed, it attaches again


def test_a_killed_prefill_worker_falls_back_and_a_restarted_one_rejoins(server, grpc_modules, cluster):
    c = cluster("--disagg-threshold", "16")
    c.start_worker("P", "prefill")
    c.start_worker("D", "decode")
    long = long_prompt(20, 100)  # about 1600 tokens: seconds of prefill on one thread
    prompts = [long] + [long_prompt(i, 2) for i in range(3)]
    want = reference(server, grpc_modules, prompts, 8)
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        # Killed while it computes the long prompt: the decode worker's
        # Prefill call fails and it computes the prompt itself.
        in_flight = pool.submit(c.generate, long, 8)
        deadline = time.monotonic() + 60
        while c.worker_metric("P", "tokenfab_worker_pending_prefill_tokens") == 0:
            assert time.monotonic() < deadline and not in_flight.done(), c.logs()
            time.sleep(0.05)
        c.workers["P"].kill9()
        assert in_flight.result(timeout=300)[0] == want[0], c.logs()
        # Requests after the kill find no prefill worker and prefill locally.
        got = list(pool.map(lambda p: c.generate(p, 8)[0], prompts[1:]))
    assert got == want[1:], c.logs()
    assert c.worker_metric("D", 'tokenfab_worker_remote_prefills_total{result="fallback"}') == 1
    assert "P" not in {w.worker_id for w in c.list_workers()}
    assert c.metrics()['tokenfab_router_prefill_decisions_total{decision="local",reason="no_prefill_worker"}'] == 3
    # Restarted, it attaches again and takes prefills.
    c.start_worker("P", "prefill")
    before = c.metrics()['tokenfab_router_prefill_decisions_total{decision="remote",reason="above_threshold"}']
    assert c.generate(long_prompt(9, 3), 8)[1].usage.completion_tokens == 8
    after = c.metrics()['tokenfab_router_prefill_decisions_total{decision="remote",reason="above_threshold"}']
    assert after == before + 1
    assert c.worker_metric("P", "tokenfab_worker_kv_exports_total") == 1


def closed_within(sock: socket.socket, seconds: float) -> bytes:
    """What the worker sent before it closed `sock`; fails if it stays open."""
    sock.settimeout(seconds)
    got = b""
    try:
        while chunk := sock.recv(64):
            got += chunk
    except socket.timeout:
        raise AssertionError(f"the KV port kept the connection open for {seconds} s")
    except ConnectionResetError:
        pass
    return got


def threads_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Threads:"))


def test_strangers_on_the_kv_port_do_not_break_disaggregated_serving(server, grpc_modules, cluster):
    """The tcp KV port takes any connection. Past the limit (64 with
    --max-num-seqs 4) they are closed at accept; silent ones after the 5 s
    header timeout; a header for a transfer nobody handed out at once. None
    holds a thread for long, and remote prefills go on, exact."""
    c = cluster("--disagg-threshold", "16")
    c.start_worker("P", "prefill")
    kv_port = free_port()
    c.start_worker("D", "decode", "--kv-port", str(kv_port), "--max-num-seqs", "4")
    pid = c.workers["D"].process.pid
    prompts = [long_prompt(i, 1 + i % 4) for i in range(4)]
    want = reference(server, grpc_modules, prompts, 8)
    threads_before = threads_of(pid)

    idle = [socket.create_connection(("127.0.0.1", kv_port), timeout=5) for _ in range(100)]
    extra = [closed_within(s, 3) for s in idle[64:]]  # closed at accept, nothing sent
    assert extra == [b""] * 36, c.logs()
    assert threads_of(pid) <= threads_before + 64, "a thread per refused connection"
    # While the port is full, a remote prefill is refused and the decode
    # worker computes the prompt itself: the output stays exact.
    assert c.generate(prompts[0], 8)[0] == want[0], c.logs()
    for s in idle[:64]:
        closed_within(s, 10)  # the header timeout, 5 s
        s.close()

    # A well-formed header for a transfer id nobody handed out: one refusal
    # byte. A garbage header: closed.
    stranger = socket.create_connection(("127.0.0.1", kv_port), timeout=5)
    stranger.sendall(struct.pack("<IIQiiiiii", 0x564B4654, 1, int.from_bytes(os.urandom(8), "little"),
                                 30, 3, 64, 0, 0, 16))
    assert closed_within(stranger, 5) == b"\x00"
    garbage = socket.create_connection(("127.0.0.1", kv_port), timeout=5)
    garbage.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b"x" * 16)  # 40 bytes, bad magic
    closed_within(garbage, 5)

    ok_before = c.worker_metric("D", 'tokenfab_worker_remote_prefills_total{result="ok"}')
    for i, p in enumerate(prompts[1:], 1):
        assert c.generate(p, 8)[0] == want[i], c.logs()
    assert c.worker_metric("D", 'tokenfab_worker_remote_prefills_total{result="ok"}') == ok_before + 3
    refused = lambda reason: c.worker_metric(
        "D", f'tokenfab_worker_kv_connections_refused_total{{reason="{reason}"}}')
    assert refused("over_limit") >= 36
    assert refused("bad_header") >= 64 + 1
    assert refused("unexpected") == 1
    assert threads_of(pid) <= threads_before + 4, "threads of closed connections linger"


def test_set_role_moves_a_worker_between_pools_without_dropping_its_requests(server, grpc_modules, cluster):
    c, want, threads, results = three_streams_on_a_then_b(server, grpc_modules, cluster)
    c.admin.SetWorkerRole(c.control_pb2.SetWorkerRoleRequest(
        worker_id="A", role=c.control_pb2.WORKER_ROLE_PREFILL), timeout=5)
    for t in threads:
        t.join(timeout=300)
    assert [results[i][0] for i in range(3)] == want, c.logs()
    roles = {w.worker_id: w.role for w in c.list_workers()}
    assert roles["A"] == c.control_pb2.WORKER_ROLE_PREFILL
    decoded_before = c.worker_metric("A", "tokenfab_worker_decode_tokens_total")
    for p in PROMPTS[3:6]:
        c.generate(p, 4)
    assert c.worker_metric("A", "tokenfab_worker_decode_tokens_total") == decoded_before
    assert c.metrics()['tokenfab_router_workers{role="prefill"}'] == 1
    assert c.metrics()["tokenfab_router_migrations_total"] == 0


def test_sigterm_drains_a_worker(server, grpc_modules, cluster):
    c, want, threads, results = three_streams_on_a_then_b(server, grpc_modules, cluster)
    c.workers["A"].process.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(timeout=300)
    assert [results[i][0] for i in range(3)] == want, c.logs()
    assert c.workers["A"].process.wait(timeout=60) == 0, c.workers["A"].output()
    assert "every request finished" in c.workers["A"].output()
    assert c.metrics()["tokenfab_router_migrations_total"] == 0
    # New requests go to the worker that is left.
    assert c.generate(PROMPTS[4], 4)[1].usage.completion_tokens == 4


def health(c):
    """(grpc.health.v1 status name, HTTP /health status code) of the router."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    with grpc.insecure_channel(c.grpc_target) as ch:
        status = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5).status
    try:
        code = urllib.request.urlopen(c.http_url + "/health", timeout=5).status
    except urllib.error.HTTPError as e:
        code = e.code
    return health_pb2.HealthCheckResponse.ServingStatus.Name(status), code


def test_a_worker_with_another_model_is_refused_and_the_router_stays_unready(cluster):
    from conftest import ROOT
    c = cluster()
    p = c.start_worker("X", "both", wait=False, model=str(ROOT / "tests/data/hf/tiny-llama"))
    assert p.process.wait(timeout=60) == 1
    assert "serves another model" in p.output(), p.output()
    assert len(c.list_workers()) == 0
    assert health(c) == ("NOT_SERVING", 503)
    c.start_worker("D", "decode")
    deadline = time.monotonic() + 10
    while health(c) != ("SERVING", 200):
        assert time.monotonic() < deadline, health(c)
        time.sleep(0.1)


def test_serve_with_workers_uses_the_cluster_paths(server, grpc_modules):
    s = Server("--workers", "2", "--prefill-workers", "1", "--disagg-threshold", "16", "--threads", "1")
    try:
        prompts = [long_prompt(i, 2) for i in range(3)]
        want = reference(server, grpc_modules, prompts, 12)
        got = reference(s, grpc_modules, prompts, 12)
        assert got == want, s.output()
        from cluster import scrape
        m = scrape(s.metrics_url)
        assert m['tokenfab_router_prefill_decisions_total{decision="remote",reason="above_threshold"}'] == 3
        assert m['tokenfab_worker_kv_exports_total{worker="worker-0"}'] == 3
    finally:
        assert s.stop() == 0, s.output()
