#!/usr/bin/env python3
"""tokenfab serve against llama.cpp on the same machine, model and workload.

Starts each server in turn (never two at once) on the same GGUF file with the
same thread count, runs `tokenfab bench --target http://...` against it at each
concurrency (closed loop, the same prompts: same seed, ISL, OSL and request
count), and prints output tokens/s and TTFT p90 for every server with the
ratios tokenfab / llama.cpp. Each figure is the median of --repeat runs.

Servers (--servers, comma-separated):
  tokenfab          `tokenfab serve --threads T`
  llama-cpp-python  `python -m llama_cpp.server` from .venv-bench
                    (scripts/bench-setup installs it). It keeps one
                    llama_cpp.Llama behind a global lock: requests run one at a
                    time, whatever the concurrency; it has no n_parallel
                    setting. --interrupt_requests False is required, or each
                    new request cancels the one streaming.
  llama-server      llama.cpp's own C++ server (--llama-server PATH; by default
                    the one scripts/bench-setup builds from the llama.cpp source
                    in llama-cpp-python's sdist), with
                    -np MAX_CONCURRENCY slots and continuous batching: the
                    baseline that really runs sequences in parallel.

Equal work: every server must generate exactly --osl tokens. tokenfab takes
"ignore_eos"; llama-cpp-python ignores that field, so it gets "min_tokens" and
a logit_bias of -1000 on its end-of-generation tokens (0 <|endoftext|>, 2
<|im_end|> for SmolLM2); llama-server takes "ignore_eos". All requests are
greedy (temperature 0). The counts are checked: from the server's usage where
it streams one (tokenfab, llama-server), else by counting streamed chunks, and
for llama-cpp-python by one non-streamed request's usage.

    python3 bench/vs_llamacpp.py [--concurrency 1,4,16] [--isl 128] [--osl 64]
        [--repeat 3] [--threads 2] [--servers tokenfab,llama-server,llama-cpp-python]
"""
import argparse
import json
import statistics
import sys
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_aiperf import (DEFAULT_MODEL, REPO, VENV, Server, default_binary,  # noqa: E402
                            free_port, log, machine_conditions, run_tokenfab_bench,
                            tokenfab_server)

EOG_BIAS = {"0": -1000, "2": -1000}  # SmolLM2's <|endoftext|> and <|im_end|>


def requests_for(concurrency, per_user, minimum):
    return max(minimum, per_user * concurrency)


def llama_cpp_python_server(model, threads, port, n_ctx, log_path):
    argv = [str(VENV / "bin" / "python"), "-m", "llama_cpp.server", "--model", str(model),
            "--model_alias", "smollm2", "--host", "127.0.0.1", "--port", str(port),
            "--n_threads", str(threads), "--n_threads_batch", str(threads),
            "--n_ctx", str(n_ctx), "--interrupt_requests", "False"]
    return Server(argv, log_path, f"http://127.0.0.1:{port}/v1/models")


def llama_server(binary, model, threads, port, slots, n_ctx_per_slot, log_path):
    argv = [binary, "-m", str(model), "--host", "127.0.0.1", "--port", str(port),
            "-t", str(threads), "-tb", str(threads), "-np", str(slots),
            "-c", str(slots * n_ctx_per_slot), "--cont-batching", "--alias", "smollm2",
            "--no-webui"]
    return Server(argv, log_path, f"http://127.0.0.1:{port}/health")


def check_non_streamed(url, osl, extra):
    """One non-streamed request; returns usage.completion_tokens."""
    body = {"model": "smollm2", "prompt": "Count the birds on the shore:", "max_tokens": osl,
            **extra}
    req = urllib.request.Request(url + "/v1/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.load(r).get("usage", {}).get("completion_tokens")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokenfab", default=default_binary())
    ap.add_argument("--model", default=str(DEFAULT_MODEL))
    ap.add_argument("--servers", default="tokenfab,llama-server")
    ap.add_argument("--llama-server", default=str(REPO / "build-bench" / "llamacpp" / "build" /
                                                  "bin" / "llama-server"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--concurrency", default="1,4,16")
    ap.add_argument("--isl", type=int, default=128)
    ap.add_argument("--osl", type=int, default=64)
    ap.add_argument("--requests-per-user", type=int, default=4,
                    help="requests per concurrent user (default 4)")
    ap.add_argument("--min-requests", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(REPO / "build-bench" / "vs_llamacpp"))
    args = ap.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    servers = args.servers.split(",")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cond = machine_conditions()
    print(f"conditions: {cond['date']}, {cond['host']}: {cond['cpu']}, "
          f"{cond['hardware_threads']} hardware threads, load average {cond['load_average']} at "
          f"start")
    print(f"  model {args.model}; {args.threads} threads per server; isl {args.isl}, osl "
          f"{args.osl}, greedy; concurrency {levels}, requests max({args.min_requests}, "
          f"{args.requests_per_user} x concurrency) + {args.warmup} warm-up; median of "
          f"{args.repeat} runs; servers run one at a time")

    common = {"temperature": 0}
    per_server_extra = {
        "tokenfab": common,
        "llama-cpp-python": {**common, "min_tokens": args.osl, "logit_bias": EOG_BIAS,
                             "repeat_penalty": 1.0},
        "llama-server": {**common, "ignore_eos": True},
    }
    results = {}  # server -> concurrency -> list of bench reports
    for name in servers:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        n_ctx = args.isl + args.osl + 64
        if name == "tokenfab":
            srv = tokenfab_server(args.tokenfab, args.model, args.threads, port, free_port(),
                                  out / "tokenfab.log")
        elif name == "llama-cpp-python":
            srv = llama_cpp_python_server(args.model, args.threads, port, max(2048, n_ctx),
                                          out / "llama-cpp-python.log")
        elif name == "llama-server":
            if not Path(args.llama_server).exists():
                sys.exit(f"no llama-server at {args.llama_server} (--llama-server PATH)")
            srv = llama_server(args.llama_server, args.model, args.threads, port, max(levels),
                               n_ctx, out / "llama-server.log")
        else:
            sys.exit(f"unknown server {name}")
        extra = per_server_extra[name]
        with srv:
            if name == "llama-cpp-python":
                n = check_non_streamed(url, args.osl, {k: v for k, v in extra.items()})
                print(f"  {name}: a non-streamed request generated {n} tokens (asked {args.osl})")
            results[name] = {}
            for c in levels:
                runs = []
                for i in range(args.repeat):
                    rep = run_tokenfab_bench(args.tokenfab, url, c, args.isl, args.osl,
                                             requests_for(c, args.requests_per_user,
                                                          args.min_requests),
                                             args.warmup, args.seed + i, args.model,
                                             extra_body=extra, model_id="smollm2"
                                             if name != "tokenfab" else None)
                    (out / f"{name}_c{c}_{i}.json").write_text(json.dumps(rep, indent=1))
                    r = rep["results"]
                    log(f"{name} c={c} run {i + 1}: {r['output_token_throughput']:.1f} tok/s, "
                        f"TTFT p90 {r['ttft_ms']['p90']:.0f} ms, output tokens/request "
                        f"{r['output_tokens']['min']:.0f}..{r['output_tokens']['max']:.0f}, "
                        f"{r['requests_failed']} failed, load {rep['conditions']['machine']['load_average_start']}")
                    runs.append(rep)
                results[name][c] = runs

    def med(name, c, f):
        return statistics.median(f(r["results"]) for r in results[name][c])

    print(f"  load average at end: {machine_conditions()['load_average']}")
    base = "tokenfab" if "tokenfab" in results else None
    others = [s for s in results if s != base]
    for c in levels:
        print(f"concurrency {c} ({requests_for(c, args.requests_per_user, args.min_requests)} "
              f"requests):")
        print(f"  {'server':18s}{'output tok/s':>14s}{'TTFT p90 ms':>14s}{'TTFT p50 ms':>14s}"
              f"{'ITL p50 ms':>12s}{'tokens/req':>12s}{'failed':>8s}")
        for name in results:
            print(f"  {name:18s}"
                  f"{med(name, c, lambda r: r['output_token_throughput']):14.2f}"
                  f"{med(name, c, lambda r: r['ttft_ms']['p90']):14.1f}"
                  f"{med(name, c, lambda r: r['ttft_ms']['p50']):14.1f}"
                  f"{med(name, c, lambda r: r['itl_ms']['p50']):12.2f}"
                  f"{med(name, c, lambda r: r['output_tokens']['mean']):12.1f}"
                  f"{med(name, c, lambda r: r['requests_failed']):8.0f}")
        if base:
            for o in others:
                tps = (med(base, c, lambda r: r['output_token_throughput']) /
                       med(o, c, lambda r: r['output_token_throughput']))
                ttft = med(base, c, lambda r: r['ttft_ms']['p90']) / med(o, c, lambda r: r['ttft_ms']['p90'])
                print(f"  tokenfab / {o}: output tok/s x{tps:.2f}, TTFT p90 x{ttft:.2f} "
                      f"(below 1 is better)")
    (out / "summary.json").write_text(json.dumps({"conditions": cond, "args": vars(args),
                                                  "results": results}, indent=1))


if __name__ == "__main__":
    main()
