#!/usr/bin/env python3
"""Resident memory of `tokenfab serve` over a long run: a leak shows as
growth once the KV cache and the prefix cache have filled.

Starts `tokenfab serve` on SmolLM2 (the setup step's model) with a KV cache of
--kv-cache-mb, sends --requests short distinct requests with `tokenfab bench`
(closed loop at --concurrency) in two phases, the first 10% then the rest,
and prints the server's resident memory (VmRSS) after each phase and its
peak (VmHWM), against the model file's size.

    python3 bench/serve_memory.py [--requests 10000] [--concurrency 16]
        [--isl 16] [--osl 4] [--kv-cache-mb 32] [--threads 2]
"""
import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from factory_sim import Proc, binary, free_port, machine  # noqa: E402

CACHE = os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache"))
MODEL = os.path.join(CACHE, "tokenfab", "models", "SmolLM2-135M-Instruct.Q4_1.gguf")


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


def load(grpc_port, n, a, seed):
    out = subprocess.run([binary(), "bench", "--target", f"grpc://127.0.0.1:{grpc_port}",
                          "--requests", str(n), "--concurrency", str(a.concurrency),
                          "--isl", str(a.isl), "--osl", str(a.osl), "--seed", str(seed),
                          "--metrics", "none", "--json"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=10000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--isl", type=int, default=16)
    ap.add_argument("--osl", type=int, default=4)
    ap.add_argument("--kv-cache-mb", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    grpc, http, metrics = free_port(), free_port(), free_port()
    serve = Proc("serve", [binary(), "serve", "--model", MODEL, "--host", "127.0.0.1",
                           "--grpc-port", str(grpc), "--http-port", str(http),
                           "--metrics-port", str(metrics), "--threads", str(a.threads),
                           "--kv-cache-mb", str(a.kv_cache_mb), "--max-num-seqs", str(a.concurrency)])
    try:
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{http}/health", timeout=2)
                break
            except OSError:
                if time.time() > deadline or not serve.alive():
                    sys.exit("serve did not start:\n" + serve.output()[-2000:])
                time.sleep(0.2)
        pid = serve.process.pid
        size_mib = os.path.getsize(MODEL) / 2**20
        print(f"machine: {machine()}; tokenfab serve --threads {a.threads} --kv-cache-mb "
              f"{a.kv_cache_mb}; {a.requests} requests of {a.isl}+{a.osl} tokens at "
              f"concurrency {a.concurrency}; model {size_mib:.1f} MiB")
        print(f"  at start:            VmRSS {status_kib(pid, 'VmRSS') / 1024:7.1f} MiB")
        first = max(1, a.requests // 10)
        t0 = time.time()
        r1 = load(grpc, first, a, seed=1)
        rss1 = status_kib(pid, "VmRSS") / 1024
        print(f"  after {first:6d} requests: VmRSS {rss1:7.1f} MiB")
        r2 = load(grpc, a.requests - first, a, seed=2)
        rss2 = status_kib(pid, "VmRSS") / 1024
        hwm = status_kib(pid, "VmHWM") / 1024
        done = r1.get("completed", first) + r2.get("completed", a.requests - first)
        print(f"  after {a.requests:6d} requests: VmRSS {rss2:7.1f} MiB ({rss2 - rss1:+.1f} MiB "
              f"over the last {a.requests - first}); {done} completed in {time.time() - t0:.0f} s")
        print(f"  peak (VmHWM):        {hwm:7.1f} MiB = {hwm / size_mib:.2f}x the model file")
    finally:
        serve.stop()
        serve.remove_log()


if __name__ == "__main__":
    main()
