"""API keys and the cluster key (server/auth.h) on real processes: the
`openai` SDK and grpcio against `tokenfab serve --api-key-file`, and a
`tokenfab router` with `tokenfab worker`s sharing --cluster-key-file, where
a worker without the key is turned away and an unkeyed Drain is refused.
Both secrets rotate while the processes run (the file is polled, SIGHUP
re-reads it at once), and the refusals show in the metrics."""
import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request

import grpc
import openai
import pytest

from cluster import Cluster, scrape
from conftest import Server, binary

KEY = "sk-tokenfab-test-0123456789abcdef"
OLD_KEY = "sk-tokenfab-old-0123456789abcdef"
CLUSTER_KEY = "cluster-0123456789abcdef0123456789"


def key_file(tmp_path, name, *keys):
    path = tmp_path / name
    path.write_text("# one key a line\n" + "".join(k + "\n" for k in keys))
    return str(path)


def sample(metrics, name, **labels):
    """The value of `name` with exactly these labels in a scrape, in any order."""
    for key, value in metrics.items():
        if key.split("{")[0] == name and dict(re.findall(r'(\w+)="([^"]*)"', key)) == labels:
            return value
    raise KeyError(f"{name}{labels} not in the scrape")


def wait_until(check, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def http_get(url, headers=None):
    """(status, headers, body) of a GET, errors included."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    path = key_file(tmp_path_factory.mktemp("keys"), "api-keys", KEY, OLD_KEY)
    s = Server("--api-key-file", path)
    yield s
    code = s.stop()  # under the sanitizers, a leak or an error fails here
    assert code == 0, f"tokenfab serve exited with {code}:\n{s.output()}"



def test_openai_sdk_needs_one_of_the_keys(keyed):
    for key in (KEY, OLD_KEY):  # both admitted: a key is rotated by listing the new one too
        client = openai.OpenAI(base_url=keyed.http_url + "/v1", api_key=key, max_retries=0)
        r = client.chat.completions.create(model=keyed.model_id, max_tokens=4, temperature=0,
                                           messages=[{"role": "user", "content": "Hi"}])
        assert r.usage.completion_tokens == 4
        assert [m.id for m in client.models.list()] == [keyed.model_id]
    wrong = openai.OpenAI(base_url=keyed.http_url + "/v1", api_key=KEY[:-1] + "X", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as e:
        wrong.completions.create(model=keyed.model_id, prompt="Hi", max_tokens=4)
    assert e.value.status_code == 401
    assert e.value.code == "invalid_api_key"
    assert e.value.response.headers["www-authenticate"] == "Bearer"
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()


def test_http_without_a_key_gets_401_and_probes_stay_open(keyed):
    status, headers, body = http_get(keyed.http_url + "/v1/models")
    assert status == 401
    error = json.loads(body)["error"]
    assert error["code"] == "invalid_api_key"
    assert "missing API key" in error["message"] and "Authorization: Bearer" in error["message"]
    assert headers["WWW-Authenticate"] == "Bearer"
    status, _, body = http_get(keyed.http_url + "/v1/planner")
    assert status == 401, body
    # Kubernetes probes and Prometheus hold no key.
    assert http_get(keyed.http_url + "/health")[0] == 200
    status, _, body = http_get(keyed.metrics_url)
    assert status == 200 and "tokenfab_" in body


def test_grpc_needs_the_key_in_metadata(keyed, grpc_modules):
    pb2, pb2_grpc = grpc_modules
    with grpc.insecure_channel(keyed.grpc_target) as ch:
        stub = pb2_grpc.GenerationStub(ch)
        req = pb2.GenerateRequest(prompt="Hello", max_tokens=3, stop_at_eos=False,
                                  sampling=pb2.SamplingParams(temperature=0))
        for metadata, why in ((None, "missing API key"),
                              ([("authorization", "Bearer nope")], "invalid API key"),
                              ([("authorization", KEY)], "invalid API key")):  # no scheme
            with pytest.raises(grpc.RpcError) as e:
                list(stub.Generate(req, timeout=30, metadata=metadata))
            assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert why in e.value.details()
            with pytest.raises(grpc.RpcError) as e:
                stub.ListModels(pb2.ListModelsRequest(), timeout=30, metadata=metadata)
            assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.RpcError) as e:
                stub.Tokenize(pb2.TokenizeRequest(text="Hello"), timeout=30, metadata=metadata)
            assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        ok = [("authorization", f"Bearer {KEY}")]
        ids = [t for r in stub.Generate(req, timeout=60, metadata=ok) for t in r.token_ids]
        assert len(ids) == 3
        assert stub.ListModels(pb2.ListModelsRequest(), timeout=30, metadata=ok).models[0].id == keyed.model_id
    # The health service stays open, for load balancers.
    out = subprocess.run([binary(), "health", "--target", keyed.grpc_target],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr


def test_complete_and_bench_send_the_key_from_the_environment(keyed):
    args = [binary(), "complete", "--server", keyed.grpc_target, "--prompt", "Hello",
            "--max-tokens", "3"]
    env = {k: v for k, v in os.environ.items() if k != "TOKENFAB_API_KEY"}
    refused = subprocess.run(args, capture_output=True, text=True, timeout=60, env=env)
    assert refused.returncode != 0
    assert "missing API key" in refused.stderr
    served = subprocess.run(args, capture_output=True, text=True, timeout=60,
                            env={**env, "TOKENFAB_API_KEY": KEY})
    assert served.returncode == 0, served.stderr
    assert "completion 3 tokens" in served.stderr
    for target in (f"http://{keyed.http_url[len('http://'):]}", f"grpc://{keyed.grpc_target}"):
        bench = subprocess.run([binary(), "bench", "--target", target, "--requests", "2",
                                "--isl", "8", "--osl", "2", "--metrics", "none", "--json"],
                               capture_output=True, text=True, timeout=120,
                               env={**env, "TOKENFAB_API_KEY": OLD_KEY})
        assert bench.returncode == 0, bench.stderr
        report = json.loads(bench.stdout)
        assert report["results"]["requests_completed"] == 2, report


def test_a_bad_key_file_stops_the_server_before_it_listens(tmp_path):
    bad = tmp_path / "keys"
    bad.write_text("good-key-0123456789\nhas a space\n")
    out = subprocess.run([binary(), "serve", "--api-key-file", str(bad), "--grpc-port", "0",
                          "--http-port", "0", "--metrics-port", "0"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert f"{bad} line 2" in out.stderr
    assert "space" not in out.stderr.split("line 2")[0]  # the key itself is never printed
    empty = tmp_path / "empty"
    empty.write_text("# nothing yet\n")
    out = subprocess.run([binary(), "router", "--cluster-key-file", str(empty)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "no key" in out.stderr, out.stderr


def test_the_cluster_key_guards_attach_admin_and_the_workers(tmp_path, grpc_modules):
    keys = key_file(tmp_path, "cluster-key", CLUSTER_KEY)
    c = Cluster(grpc_modules, "--cluster-key-file", keys, "--disagg-threshold", "16",
                cluster_key=CLUSTER_KEY)
    try:
        # A worker without the key, or with another, is turned away and says why.
        for name, env in (("nokey", None), ("wrong", {"TOKENFAB_CLUSTER_KEY": "another-key-012345"})):
            w = c.start_worker(name, "both", wait=False, env=env)
            w.process.wait(timeout=120)
            assert w.process.returncode != 0
            assert "cluster key" in w.output(), w.output()
        assert c.list_workers() == []
        # The key from the environment works as well as the file; the decode
        # worker's Prefill call to the prefill worker carries it too.
        c.start_worker("p", "prefill", "--cluster-key-file", keys)
        c.start_worker("w", "decode", env={"TOKENFAB_CLUSTER_KEY": CLUSTER_KEY})
        long_prompt = "The river ran past the old mill where the children used to play. " * 3
        ids, final = c.generate(long_prompt, 4)
        assert len(ids) == 4 and final is not None, c.logs()
        assert c.worker_metric("w", 'tokenfab_worker_remote_prefills_total{result="ok"}') == 1, c.logs()
        assert c.worker_metric("p", "tokenfab_worker_kv_exports_total") == 1
        # RouterAdmin without the key.
        with pytest.raises(grpc.RpcError) as e:
            c.admin.ListWorkers(c.control_pb2.ListWorkersRequest(), timeout=5)
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as e:
            c.admin.DrainWorker(c.control_pb2.DrainWorkerRequest(worker_id="w"), timeout=5,
                                metadata=[("authorization", "Bearer not-the-key-0123")])
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # The worker's own Drain, without the key: refused, and the worker serves on.
        address = next(w.address for w in c.list_workers() if w.worker_id == "w")
        from tokenfab.internal.v1 import worker_pb2, worker_pb2_grpc
        with grpc.insecure_channel(address) as ch:
            with pytest.raises(grpc.RpcError) as e:
                worker_pb2_grpc.WorkerStub(ch).Drain(worker_pb2.DrainRequest(), timeout=5)
            assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        drain = [binary(), "drain", "--target", address, "--timeout-s", "30"]
        out = subprocess.run(drain, capture_output=True, text=True, timeout=60)
        assert out.returncode != 0 and "missing cluster key" in out.stderr, out.stderr
        assert not any(w.draining for w in c.list_workers())
        ids, _ = c.generate("The capital of France is", 4)
        assert len(ids) == 4
        # With the key, `tokenfab drain` drains it.
        out = subprocess.run([*drain, "--cluster-key-file", keys], capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr
        assert "drained" in out.stdout
        def draining():
            return {w.worker_id: w.draining for w in c.list_workers()}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and draining() != {"p": False, "w": True}:
            time.sleep(0.1)
        assert draining() == {"p": False, "w": True}
        # Everyone that was admitted ends cleanly (under the sanitizers: no
        # leak, no error).
        for name in ("w", "p"):
            assert c.workers[name].stop(timeout=30) == 0, c.workers[name].output()
        assert c.router.stop(timeout=30) == 0, c.router.output()
    finally:
        c.close()


def test_api_keys_rotate_without_a_restart(tmp_path):
    path = tmp_path / "api-keys"
    path.write_text(OLD_KEY + "\n")
    s = Server("--api-key-file", str(path))
    try:
        def status(key=None):
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            return http_get(s.http_url + "/v1/models", headers)[0]
        assert status(OLD_KEY) == 200 and status(KEY) == 401
        # 1. The new key is added. The file is polled: no signal, no restart.
        # A poll takes a change once two reads 2 s apart agree.
        path.write_text(f"{KEY}\n{OLD_KEY}\n")
        assert wait_until(lambda: status(KEY) == 200), s.output()
        assert status(OLD_KEY) == 200
        # 2. The old key goes; SIGHUP re-reads the file at once, sooner than
        # a poll could (and no longer ends the process).
        written = time.monotonic()
        path.write_text(KEY + "\n")
        s.process.send_signal(signal.SIGHUP)
        assert wait_until(lambda: status(OLD_KEY) == 401), s.output()
        assert time.monotonic() - written < 1.5, "taken by a poll, not by SIGHUP"
        assert status(KEY) == 200
        # A broken file is refused; the keys in force stay, and the gauge says
        # so until the file holds them again.
        path.write_text("half written\n")
        s.process.send_signal(signal.SIGHUP)
        assert wait_until(lambda: "was not taken" in s.output()), s.output()
        assert status(KEY) == 200 and s.process.poll() is None
        def refused():
            return sample(scrape(s.metrics_url), "tokenfab_auth_key_file_refused", secret="api_key")
        assert refused() == 1
        path.write_text(KEY + "\n")
        assert wait_until(lambda: refused() == 0), s.output()
        log = s.output()
        assert f"--api-key-file {path} reloaded: 2 keys" in log
        assert f"--api-key-file {path} reloaded: 1 key" in log
        assert f"{path} line 1: a key is visible ASCII" in log
        assert KEY not in log and OLD_KEY not in log  # never a key in the log
        # The metrics count reloads and refusals, by reason.
        before = scrape(s.metrics_url)
        assert status() == 401 and status("wrong-key") == 401 and status(OLD_KEY) == 401
        after = scrape(s.metrics_url)
        assert sample(after, "tokenfab_auth_keys", secret="api_key") == 1
        assert sample(after, "tokenfab_auth_key_reloads_total", secret="api_key", result="ok") == 2
        assert sample(after, "tokenfab_auth_key_reloads_total", secret="api_key", result="error") == 1
        for reason, n in (("missing", 1), ("invalid", 2)):
            grew = (sample(after, "tokenfab_auth_refusals_total", secret="api_key", reason=reason) -
                    sample(before, "tokenfab_auth_refusals_total", secret="api_key", reason=reason))
            assert grew == n, reason
    finally:
        code = s.stop()
    assert code == 0, f"tokenfab serve exited with {code}:\n{s.output()}"


def test_the_cluster_key_rotates_without_a_restart(tmp_path, grpc_modules):
    """The router and its workers read one key file (one Secret in
    Kubernetes); the key changes under them while KV moves between workers."""
    new_key = "cluster-new-0123456789abcdef0123"
    keys = tmp_path / "cluster-key"
    keys.write_text(CLUSTER_KEY + "\n")
    c = Cluster(grpc_modules, "--cluster-key-file", str(keys), "--disagg-threshold", "16",
                cluster_key=CLUSTER_KEY)
    long_prompt = "The river ran past the old mill where the children used to play. " * 3
    try:
        c.start_worker("p", "prefill", "--cluster-key-file", str(keys))
        c.start_worker("w", "decode", "--cluster-key-file", str(keys))
        ids, _ = c.generate(long_prompt, 4)  # the channels between them exist from here on
        assert len(ids) == 4, c.logs()
        procs = [c.router, c.workers["p"], c.workers["w"]]

        def rotate(text, reloads):
            keys.write_text(text)
            for p in procs:
                p.process.send_signal(signal.SIGHUP)
            for p in procs:
                assert wait_until(lambda: p.output().count(" reloaded: ") == reloads), p.output()

        # The order that keeps every call admitted while processes take the
        # file at different times: everyone admits the new key (still sending
        # the old), then sends it, then the old one goes.
        rotate(f"{CLUSTER_KEY}\n{new_key}\n", 1)
        rotate(f"{new_key}\n{CLUSTER_KEY}\n", 2)
        rotate(new_key + "\n", 3)
        c.admin_metadata = [("authorization", f"Bearer {new_key}")]
        # Router -> worker Generate and decode -> prefill Prefill carry the new key
        # on the channels opened before it.
        other_prompt = "A long train crossed the valley at dawn, carrying grain to the coast. " * 3
        ids, final = c.generate(other_prompt, 4)
        assert len(ids) == 4 and final is not None, c.logs()
        assert c.worker_metric("w", 'tokenfab_worker_remote_prefills_total{result="ok"}') == 2, c.logs()
        # The old key is refused everywhere, and counted.
        with pytest.raises(grpc.RpcError) as e:
            c.admin.ListWorkers(c.control_pb2.ListWorkersRequest(), timeout=5,
                                metadata=[("authorization", f"Bearer {CLUSTER_KEY}")])
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        address = next(w.address for w in c.list_workers() if w.worker_id == "w")
        out = subprocess.run([binary(), "drain", "--target", address, "--timeout-s", "30"],
                             capture_output=True, text=True, timeout=60,
                             env={**os.environ, "TOKENFAB_CLUSTER_KEY": CLUSTER_KEY})
        assert out.returncode != 0 and "invalid cluster key" in out.stderr, out.stderr
        stale = c.start_worker("stale", "both", wait=False, env={"TOKENFAB_CLUSTER_KEY": CLUSTER_KEY})
        stale.process.wait(timeout=120)
        assert stale.process.returncode != 0 and "invalid cluster key" in stale.output(), stale.output()
        del c.workers["stale"]
        assert sample(c.metrics(), "tokenfab_auth_refusals_total", secret="cluster_key",
                      reason="invalid") == 2  # ListWorkers and the stale worker's Attach
        w_metrics = scrape(c.worker_metrics["w"])
        assert sample(w_metrics, "tokenfab_auth_refusals_total", secret="cluster_key",
                      reason="invalid") == 1  # the drain
        assert sample(w_metrics, "tokenfab_auth_key_reloads_total", secret="cluster_key",
                      result="ok") == 3
        assert {w.worker_id for w in c.list_workers()} == {"p", "w"}
        for name in ("w", "p"):
            assert c.workers[name].stop(timeout=30) == 0, c.workers[name].output()
        assert c.router.stop(timeout=30) == 0, c.router.output()
    finally:
        c.close()
