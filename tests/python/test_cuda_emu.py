"""GPU workers across real processes on loopback, on the CUDA emulator
(tests/cuda_emu): `tokenfab router` with `tokenfab worker --device cuda:0
--transport nccl`, `tokenfab serve --device cuda:0` and `tokenfab profile
--device cuda:0`. Each process loads the emulator's build of the CUDA module
(TOKENFAB_CUDA_MODULE) and NCCL (TOKENFAB_NCCL_LIBRARY), so the worker, the
CUDA backend, the nccl KV transport and its communicators run exactly as on
GPUs, with the kernels on the CPU. Every process's device 0 is its own
emulated GPU; the NCCL stand-in joins them over loopback TCP.

Greedy decoding makes the checks exact: the emulator's products do not
depend on the batch, and the CUDA backend computes prompt positions with its
prefill kernel and generated ones with its decode kernel however the work is
split (SequenceStep::prompt_end), so a prompt prefilled on one worker and
finished on another continues exactly as on one worker. (On a GPU, cuBLAS may
pick another algorithm per row count, so there it would be a tolerance.)
"""
import json
import os
import pathlib
import subprocess
import threading
import time

import grpc
import openai
import pytest

from cluster import Cluster, run_concurrently, scrape, stream_all
from conftest import DEFAULT_MODEL, Server, binary
from prompts import PROMPTS as SHORT_PROMPTS

SENTENCES = [
    "The river ran past the old mill where the children used to play in summer.",
    "A quiet morning settled over the harbour as the boats returned with their catch.",
    "Scientists measured the temperature of the lake every day for a whole year.",
]
PROMPTS = [f"Story {i}. " + " ".join(SENTENCES[(i + k) % 3] for k in range(1 + i % 2))
           for i in range(4)]


def emulator_env():
    """The environment that puts a worker on the CUDA emulator (skips when
    the emulator was not built)."""
    build = pathlib.Path(binary()).resolve().parents[1]
    module = build / "tests" / "cuda_emu" / "libtokenfab_cuda_emu_module.so"
    nccl = build / "tests" / "cuda_emu" / "libtokenfab_nccl_emu.so"
    if not module.exists() or not nccl.exists():
        pytest.skip(f"the CUDA emulator is not built in {build} (TOKENFAB_CUDA_EMU)")
    return dict(os.environ, TOKENFAB_CUDA_MODULE=str(module), TOKENFAB_NCCL_LIBRARY=str(nccl))


GPU = ("--device", "cuda:0", "--transport", "nccl", "--kv-cache-mb", "64",
       "--max-num-seqs", "8", "--max-batched-tokens", "256")


@pytest.fixture
def cluster(grpc_modules):
    made = []

    def make(*router_args):
        c = Cluster(grpc_modules, *router_args)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def metric(c, worker_id, name, **labels):
    """A worker's sample of `name` with `labels` among its labels (a GPU
    worker's samples also carry backend="cuda")."""
    want = [f'{k}="{v}"' for k, v in labels.items()]
    for key, value in scrape(c.worker_metrics[worker_id]).items():
        if key.split("{")[0] == name and all(w in key for w in want):
            return value
    return 0.0


def outputs(c, prompts, max_tokens):
    return [c.generate(p, max_tokens)[0] for p in prompts]


def disaggregated(cluster, env, transport, prompts, max_tokens):
    gpu = [a if a != "nccl" else transport for a in GPU]
    c = cluster("--disagg-threshold", "16")
    c.start_worker("P", "prefill", *gpu, env=env)
    c.start_worker("D", "decode", *gpu, env=env)
    assert f"KV over {transport}" in c.workers["D"].output(), c.logs()
    return c, outputs(c, prompts, max_tokens)


def test_kv_over_nccl_gives_the_aggregated_output_as_tcp_does(cluster):
    env = emulator_env()
    whole = cluster("--disagg-threshold", "0")
    whole.start_worker("A", "both", *GPU, env=env)
    want = outputs(whole, PROMPTS, 12)
    _, over_tcp = disaggregated(cluster, env, "tcp", PROMPTS, 12)
    c, over_nccl = disaggregated(cluster, env, "nccl", PROMPTS, 12)
    assert over_tcp == want, c.logs()
    assert over_nccl == want, c.logs()
    m = c.metrics()
    assert m['tokenfab_router_prefill_decisions_total{decision="remote",reason="above_threshold"}'] == 4
    assert metric(c, "D", "tokenfab_worker_remote_prefills_total", result="ok") == 4
    assert metric(c, "P", "tokenfab_worker_kv_exports_total") == 4
    received = metric(c, "D", "tokenfab_worker_kv_transfer_bytes_total", direction="received")
    sent = metric(c, "P", "tokenfab_worker_kv_transfer_bytes_total", direction="sent")
    # 30 layers x 3 KV heads x 64 dims x 2 (K and V) x 2 bytes a position.
    positions = sum(len(c.stub.Tokenize(c.pb2.TokenizeRequest(text=p)).token_ids) - 1
                    for p in PROMPTS)
    assert received == sent == positions * 30 * 3 * 64 * 2 * 2, c.logs()


def test_a_killed_prefill_worker_falls_back_and_a_restarted_one_sets_up_a_new_pair(cluster):
    env = emulator_env()
    long = "Story 9. " + " ".join(SENTENCES * 6)  # ~290 tokens: seconds of emulated prefill
    whole = cluster("--disagg-threshold", "0")
    whole.start_worker("A", "both", *GPU, env=env)
    want = outputs(whole, [long, PROMPTS[0]], 6)

    c = cluster("--disagg-threshold", "16")
    c.start_worker("P", "prefill", *GPU, env=env)
    c.start_worker("D", "decode", *GPU, env=env)
    result = {}
    t = threading.Thread(target=lambda: result.update(out=c.generate(long, 6)))
    t.start()
    deadline = time.monotonic() + 120
    while metric(c, "P", "tokenfab_worker_pending_prefill_tokens") == 0:
        assert time.monotonic() < deadline and t.is_alive(), c.logs()
        time.sleep(0.02)
    c.workers["P"].kill9()  # its NCCL communicator with D dies with it
    t.join(timeout=300)
    # D computed the whole prompt itself, as the aggregated worker did.
    assert result["out"][0] == want[0], c.logs()
    assert metric(c, "D", "tokenfab_worker_remote_prefills_total", result="fallback") == 1
    # Restarted, the prefill worker joins a new communicator with D.
    c.start_worker("P", "prefill", *GPU, env=env)
    assert c.generate(PROMPTS[0], 6)[1].usage.completion_tokens == 6, c.logs()
    assert metric(c, "D", "tokenfab_worker_remote_prefills_total", result="ok") == 1, c.logs()
    assert metric(c, "P", "tokenfab_worker_kv_exports_total") == 1


def test_two_prefill_two_decode_gpu_workers_under_64_concurrent_mixed_requests(cluster):
    env = emulator_env()
    c = cluster("--disagg-threshold", "24")
    for w, role in [("P0", "prefill"), ("P1", "prefill"), ("D0", "decode"), ("D1", "decode")]:
        c.start_worker(w, role, *GPU, env=env)
    # Odd ones long enough to prefill remotely, even ones short.
    prompts = [PROMPTS[i % 4] + f" Part {i}." if i % 2 else SHORT_PROMPTS[i % len(SHORT_PROMPTS)]
               for i in range(64)]
    remote, local = run_concurrently(c, prompts, 8)
    assert remote > 0 and local > 0 and remote + local == 64, c.metrics()
    ok = sum(metric(c, d, "tokenfab_worker_remote_prefills_total", result="ok") for d in ("D0", "D1"))
    exports = sum(metric(c, p, "tokenfab_worker_kv_exports_total") for p in ("P0", "P1"))
    assert ok == exports == remote, c.logs()
    received = sum(metric(c, d, "tokenfab_worker_kv_transfer_bytes_total", direction="received")
                   for d in ("D0", "D1"))
    sent = sum(metric(c, p, "tokenfab_worker_kv_transfer_bytes_total", direction="sent")
               for p in ("P0", "P1"))
    assert received == sent > 0, c.logs()


def test_a_killed_gpu_decode_worker_migrates_its_streams_and_the_pair_to_the_other_works(cluster):
    env = emulator_env()
    c = cluster("--disagg-threshold", "16")
    c.start_worker("P", "prefill", *GPU, env=env)
    c.start_worker("D0", "decode", *GPU, env=env)
    c.start_worker("D1", "decode", *GPU, env=env)
    prompts = [p + f" Part {i}." for i, p in enumerate(PROMPTS)]
    started = threading.Semaphore(0)
    results = {}
    threads = stream_all(c, prompts, 24, started, results)
    for _ in prompts:
        assert started.acquire(timeout=120), c.logs()
    busy = [w.worker_id for w in c.list_workers() if w.active_requests > 0 and w.worker_id != "P"]
    assert busy, c.logs()
    c.workers[busy[0]].kill9()  # with it, its NCCL communicator with P
    for t in threads:
        t.join(timeout=300)
    for i in range(len(prompts)):
        assert i in results and len(results[i][0]) == 24, f"stream {i}:\n{c.logs()}"
    assert c.metrics()["tokenfab_router_migrations_total"] >= 1
    # The prefill worker still sends KV to the decode worker that is left.
    survivor = "D1" if busy[0] == "D0" else "D0"
    before = metric(c, survivor, "tokenfab_worker_remote_prefills_total", result="ok")
    fresh = "Story 77. " + SENTENCES[2] + " " + SENTENCES[0]  # no cached prefix anywhere
    assert c.generate(fresh, 4)[1].usage.completion_tokens == 4, c.logs()
    assert metric(c, survivor, "tokenfab_worker_remote_prefills_total", result="ok") == before + 1


def test_serve_on_a_gpu_answers_as_a_gpu_worker_behind_a_router(cluster, grpc_modules):
    env = emulator_env()
    c = cluster("--disagg-threshold", "0")
    c.start_worker("A", "both", *GPU, env=env)
    want = outputs(c, PROMPTS, 10)
    s = Server("--device", "cuda:0", "--kv-cache-mb", "64", "--max-num-seqs", "8",
               "--max-batched-tokens", "256", env=env)
    try:
        assert "tokenfab CUDA emulator 0" in s.output(), s.output()
        pb2, pb2_grpc = grpc_modules
        with grpc.insecure_channel(s.grpc_target) as ch:
            stub = pb2_grpc.GenerationStub(ch)
            got = []
            for p in PROMPTS:
                req = pb2.GenerateRequest(prompt=p, max_tokens=10, stop_at_eos=False,
                                          sampling=pb2.SamplingParams(temperature=0))
                got.append([t for r in stub.Generate(req, timeout=300) for t in r.token_ids])
        assert got == want, s.output()
        client = openai.OpenAI(base_url=s.http_url + "/v1", api_key="-")
        text = client.completions.create(model=s.model_id, prompt=PROMPTS[0], max_tokens=4,
                                         temperature=0).choices[0].text
        assert text, s.output()
        m = scrape(s.metrics_url)
        info = [k for k in m if k.startswith("tokenfab_worker_info")]
        assert info and 'device="cuda:0"' in info[0], info
        assert any(k.startswith("tokenfab_worker_tokens_total") and 'backend="cuda"' in k
                   for k in m), sorted(m)[:20]
    finally:
        assert s.stop() == 0, s.output()


def test_profile_measures_a_gpu_worker(tmp_path):
    env = emulator_env()
    out = tmp_path / "profile.json"
    r = subprocess.run([binary(), "profile", "--model", str(DEFAULT_MODEL), "--out", str(out),
                        "--device", "cuda:0", "--kv-cache-mb", "64", "--prefill-lengths", "16,64",
                        "--decode-batches", "1,4", "--decode-contexts", "32", "--decode-steps", "2",
                        "--repeats", "1", "--power-source", "model"],
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    p = json.loads(out.read_text())
    assert p["device"] == "cuda:0"
    assert "tokenfab CUDA emulator" in p["hardware"], p["hardware"]
    assert len(p["prefill"]) == 2 and len(p["decode"]) == 2
