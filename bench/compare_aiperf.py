#!/usr/bin/env python3
"""tokenfab bench against aiperf, on one running `tokenfab serve`.

Starts `tokenfab serve` (unless --url names a running server), then, REPEAT
times, runs `tokenfab bench --target http://...` and `aiperf profile` (OpenAI
completions endpoint, streaming, the same ISL/OSL/concurrency/request count)
one after the other, and prints the median of each figure for both tools and
their ratio (tokenfab bench / aiperf). The acceptance is agreement within 10%.

aiperf comes from PyPI into a venv of its own, .venv-bench (never the system
Python): scripts/bench-setup --no-server installs it.
It needs a Hugging Face tokenizer folder and cannot reach the Hub: this script
builds tokenizer.json for the served GGUF model from the GGUF's own vocabulary
and merges (byte-level BPE, SmolLM's pre-tokenizer) with the `tokenizers`
package, caches it, and checks it against `tokenfab tokenize`.

    python3 bench/compare_aiperf.py [--concurrency 4] [--isl 128] [--osl 64]
        [--requests 32] [--warmup 2] [--repeat 3] [--threads 2] [--url URL]
"""
import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV = REPO / ".venv-bench"
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tokenfab"
DEFAULT_MODEL = CACHE / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_binary():
    """The binary scripts/run and scripts/test build; TOKENFAB_BINARY overrides it."""
    return os.environ.get("TOKENFAB_BINARY", str(REPO / "build" / "server" / "tokenfab"))


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def machine_conditions():
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else []
    return {
        "host": socket.gethostname(),
        "cpu": cpu,
        "hardware_threads": os.cpu_count(),
        "load_average": " ".join(load),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


class Server:
    """A server process started for a run; stopped (SIGTERM, then SIGKILL) on exit."""

    def __init__(self, argv, log_path, ready_url, timeout=300, env=None):
        self.argv, self.log_path, self.ready_url, self.timeout = argv, log_path, ready_url, timeout
        self.env = env
        self.proc = None

    def __enter__(self):
        log("starting:", " ".join(self.argv))
        self.log_file = open(self.log_path, "w")
        self.proc = subprocess.Popen(self.argv, stdout=self.log_file, stderr=subprocess.STDOUT,
                                     env=self.env, start_new_session=True)
        deadline = time.time() + self.timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(self.ready_url, timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"server not ready after {self.timeout} s; see {self.log_path}")

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log_file.close()


def pinned(cpus):
    """argv prefix that runs a command on the given CPU list ("" = anywhere)."""
    return ["taskset", "-c", cpus] if cpus else []


def tokenfab_server(binary, model, threads, http_port, grpc_port, log_path, extra=(), cpus=""):
    argv = [*pinned(cpus), binary, "serve", "--model", str(model), "--http-port", str(http_port),
            "--grpc-port", str(grpc_port), "--metrics-port", "0", "--threads", str(threads),
            *extra]
    return Server(argv, log_path, f"http://127.0.0.1:{http_port}/v1/models")


class FixedTimingServer:
    """A stand-in OpenAI server with fixed timing, to check that the two tools
    measure the same thing when the server is not the noise: each request gets
    its first token after TTFT seconds, then one token every ITL seconds, in its
    own thread, with a final usage chunk. It does not tokenize: it trusts
    max_tokens and reports the prompt length in words."""

    def __init__(self, port, ttft_s, itl_s):
        import http.server
        import threading

        ttft, itl = ttft_s, itl_s

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                body = json.dumps({"object": "list", "data": [{"id": "fixed-timing", "object": "model"}]})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            def do_POST(self):
                req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                n = int(req.get("max_completion_tokens") or req.get("max_tokens") or 16)
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()

                def event(obj):
                    data = f"data: {obj if isinstance(obj, str) else json.dumps(obj)}\n\n".encode()
                    self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                    self.wfile.flush()

                start = time.perf_counter()
                for i in range(n):
                    # Sleep to an absolute schedule so delays do not accumulate.
                    time.sleep(max(0.0, start + ttft + i * itl - time.perf_counter()))
                    event({"object": "text_completion", "model": "fixed-timing",
                           "choices": [{"index": 0, "text": " tok",
                                        "finish_reason": "length" if i == n - 1 else None}]})
                event({"object": "text_completion", "model": "fixed-timing", "choices": [],
                       "usage": {"prompt_tokens": len(str(req.get("prompt", "")).split()),
                                 "completion_tokens": n,
                                 "total_tokens": n}})
                event("[DONE]")
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()


def served_model_id(url):
    with urllib.request.urlopen(url.rstrip("/") + "/v1/models", timeout=10) as r:
        return json.load(r)["data"][0]["id"]


def run_tokenfab_bench(binary, url, concurrency, isl, osl, requests, warmup, seed, model,
                       extra_body=None, model_id=None, cpus="", records=None):
    argv = [*pinned(cpus), binary, "bench", "--target", url, "--concurrency", str(concurrency), "--isl", str(isl),
            "--osl", str(osl), "--requests", str(requests), "--warmup", str(warmup), "--seed",
            str(seed), "--tokenizer", str(model), "--json"]
    if extra_body:
        argv += ["--extra-body", json.dumps(extra_body)]
    if model_id:
        argv += ["--model-id", model_id]
    if records:
        argv += ["--records", str(records)]
    log("running:", " ".join(argv))
    out = subprocess.run(argv, capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(f"tokenfab bench failed ({out.returncode}): {out.stderr.strip()}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def tokenfab_figures(report):
    r = report["results"]
    return {
        "requests completed": r["requests_completed"],
        "request throughput (req/s)": r["request_throughput"],
        "output tokens/s": r["output_token_throughput"],
        "TTFT p50 (ms)": r["ttft_ms"]["p50"],
        "TTFT p90 (ms)": r["ttft_ms"]["p90"],
        "TTFT p99 (ms)": r["ttft_ms"]["p99"],
        "ITL p50 (ms)": r["itl_ms"]["p50"],
        "ITL p90 (ms)": r["itl_ms"]["p90"],
        "ITL p99 (ms)": r["itl_ms"]["p99"],
        "request latency p50 (ms)": r["request_latency_ms"]["p50"],
        "request latency p90 (ms)": r["request_latency_ms"]["p90"],
        "output tokens/request": r["output_tokens"]["mean"],
    }


# ---- the Hugging Face tokenizer folder aiperf needs, built from the GGUF ----

TOKENIZER_BUILDER = r'''
import json, os, sys
from gguf import GGUFReader
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
gguf_path, out = sys.argv[1], sys.argv[2]
r = GGUFReader(gguf_path)
def strings(key):
    f = r.fields[key]
    return [bytes(f.parts[i]).decode("utf-8") for i in f.data]
def scalar(key, default=None):
    f = r.fields.get(key)
    return default if f is None else f.parts[f.data[0]][0]
if bytes(r.fields["tokenizer.ggml.model"].parts[r.fields["tokenizer.ggml.model"].data[0]]).decode() != "gpt2":
    sys.exit("only byte-level BPE (tokenizer.ggml.model = gpt2) GGUF tokenizers are converted")
tokens = strings("tokenizer.ggml.tokens")
merges = strings("tokenizer.ggml.merges")
tf = r.fields["tokenizer.ggml.token_type"]
types = [int(tf.parts[i][0]) for i in tf.data]
tk = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)},
                          merges=[tuple(m.split(" ", 1)) for m in merges],
                          fuse_unk=False, byte_fallback=False))
# SmolLM / StarCoder pre-tokenizer: single digits, then GPT-2 byte-level rules.
tk.pre_tokenizer = pre_tokenizers.Sequence([
    pre_tokenizers.Digits(individual_digits=True),
    pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
tk.decoder = decoders.ByteLevel()
tk.post_processor = processors.ByteLevel(trim_offsets=False)
tk.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False)
                       for i, t in enumerate(types) if t == 3])
os.makedirs(out, exist_ok=True)
tk.save(os.path.join(out, "tokenizer.json"))
bos, eos = int(scalar("tokenizer.ggml.bos_token_id", 0)), int(scalar("tokenizer.ggml.eos_token_id", 0))
json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": tokens[bos],
           "eos_token": tokens[eos], "model_max_length": 8192,
           "clean_up_tokenization_spaces": False},
          open(os.path.join(out, "tokenizer_config.json"), "w"))
'''

TOKENIZER_CHECK = r'''
import sys
from tokenizers import Tokenizer
tk = Tokenizer.from_file(sys.argv[1] + "/tokenizer.json")
print(" ".join(str(i) for i in tk.encode(sys.argv[2], add_special_tokens=False).ids))
'''

CHECK_TEXT = "Note 17. The keeper had 12345 birds  \n\n and <|im_end|> café 日本, don't it's"


def hf_tokenizer_dir(binary, gguf, venv_python):
    st = Path(gguf).stat()
    out = CACHE / "hf-tokenizers" / f"{Path(gguf).stem}-{st.st_size}-{int(st.st_mtime)}"
    if not (out / "tokenizer.json").exists():
        log("building a Hugging Face tokenizer from", gguf)
        tmp = Path(tempfile.mkdtemp(dir=CACHE))
        subprocess.run([venv_python, "-c", TOKENIZER_BUILDER, str(gguf), str(tmp)], check=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    ours = subprocess.run([binary, "tokenize", "--model", str(gguf), "--text", CHECK_TEXT],
                          capture_output=True, text=True, check=True).stdout.split()
    theirs = subprocess.run([venv_python, "-c", TOKENIZER_CHECK, str(out), CHECK_TEXT],
                            capture_output=True, text=True, check=True).stdout.split()
    if ours != theirs:
        raise RuntimeError(f"tokenizer.json in {out} disagrees with tokenfab: {theirs} vs {ours}")
    return out


# ---- aiperf ----

def run_aiperf(aiperf, url, model_id, tokenizer, concurrency, isl, osl, requests, warmup, seed,
               artifact_dir, cpus=""):
    argv = [*pinned(cpus), str(aiperf), "profile", "--model", model_id, "--tokenizer", str(tokenizer),
            "--url", url, "--endpoint-type", "completions", "--streaming",
            "--concurrency", str(concurrency), "--request-count", str(requests),
            "--isl", str(isl), "--isl-stddev", "0", "--osl", str(osl), "--osl-stddev", "0",
            "--extra-inputs", json.dumps({"ignore_eos": True}),
            "--use-legacy-max-tokens", "--use-server-token-count",
            "--random-seed", str(seed), "--artifact-dir", str(artifact_dir),
            "--ui-type", "none", "--no-server-metrics", "--no-gpu-telemetry",
            # Two cores: one worker process sends every request (asyncio), so
            # the load generator takes as little from the server as it can.
            "--workers-max", "1", "--record-processors", "1"]
    if warmup:
        argv += ["--warmup-request-count", str(warmup)]
    log("running:", " ".join(argv))
    # A local folder needs no Hub; aiperf's HF_HUB_OFFLINE path would treat it
    # as a repo id and fail, so the variable is left unset.
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    out = subprocess.run(argv, capture_output=True, text=True, timeout=3600, env=env)
    (Path(artifact_dir) / "aiperf_stdout.txt").write_text(out.stdout + "\n" + out.stderr)
    exports = list(Path(artifact_dir).rglob("profile_export_aiperf.json"))
    if out.returncode != 0 or not exports:
        raise RuntimeError(f"aiperf failed ({out.returncode}); see {artifact_dir}/aiperf_stdout.txt:\n"
                           + (out.stdout + out.stderr)[-3000:])
    return json.loads(exports[0].read_text())


def aiperf_metric(export, tag, stat):
    """A statistic of one aiperf metric, in the metric's display unit (ms, tokens/s)."""
    m = export.get(tag)
    if m is None and isinstance(export.get("records"), dict):
        m = export["records"].get(tag)
    if m is None:
        return float("nan")
    if not isinstance(m, dict):
        return float(m)
    return float(m.get(stat, m.get("avg", float("nan"))))


def aiperf_figures(export):
    return {
        "requests completed": aiperf_metric(export, "request_count", "avg"),
        "request throughput (req/s)": aiperf_metric(export, "request_throughput", "avg"),
        "output tokens/s": aiperf_metric(export, "output_token_throughput", "avg"),
        "TTFT p50 (ms)": aiperf_metric(export, "time_to_first_token", "p50"),
        "TTFT p90 (ms)": aiperf_metric(export, "time_to_first_token", "p90"),
        "TTFT p99 (ms)": aiperf_metric(export, "time_to_first_token", "p99"),
        "ITL p50 (ms)": aiperf_metric(export, "inter_token_latency", "p50"),
        "ITL p90 (ms)": aiperf_metric(export, "inter_token_latency", "p90"),
        "ITL p99 (ms)": aiperf_metric(export, "inter_token_latency", "p99"),
        "request latency p50 (ms)": aiperf_metric(export, "request_latency", "p50"),
        "request latency p90 (ms)": aiperf_metric(export, "request_latency", "p90"),
        "output tokens/request": aiperf_metric(export, "output_sequence_length", "avg"),
    }


def medians(runs):
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def print_table(title, columns, rows, ratio_of=None):
    print(title)
    names = list(columns)
    print(f"  {'figure':28s}" + "".join(f"{n:>16s}" for n in names) +
          (f"{'ratio':>10s}" if ratio_of else ""))
    for key in rows:
        vals = [columns[n][key] for n in names]
        line = f"  {key:28s}" + "".join(f"{v:16.2f}" for v in vals)
        if ratio_of:
            a, b = columns[ratio_of[0]][key], columns[ratio_of[1]][key]
            line += f"{(a / b if b else float('nan')):10.3f}"
        print(line)


def ensure_venv_python():
    """Returns the venv's python (with aiperf); installs nothing itself."""
    py = VENV / "bin" / "python"
    if not (VENV / "bin" / "aiperf").exists():
        sys.exit(f"aiperf is not installed in {VENV}: run scripts/bench-setup --no-server")
    return str(py)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokenfab", default=default_binary())
    ap.add_argument("--model", default=str(DEFAULT_MODEL))
    ap.add_argument("--url", help="a running server (default: start tokenfab serve)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--isl", type=int, default=128)
    ap.add_argument("--osl", type=int, default=64)
    ap.add_argument("--requests", type=int, default=32)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(REPO / "build-bench" / "compare_aiperf"))
    ap.add_argument("--server-cpus", default="",
                    help="CPU list for tokenfab serve (taskset -c), e.g. 0; default: any")
    ap.add_argument("--client-cpus", default="",
                    help="CPU list for both load tools, e.g. 1: keeps aiperf's own CPU use "
                         "(several Python processes) from slowing the server it measures")
    ap.add_argument("--fixed-timing", metavar="TTFT_MS,ITL_MS",
                    help="measure a built-in server with fixed TTFT and ITL instead of tokenfab "
                         "serve (checks the tools' definitions apart from server noise)")
    args = ap.parse_args()

    venv_python = ensure_venv_python()
    tokenizer = hf_tokenizer_dir(args.tokenfab, args.model, venv_python)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    cond = machine_conditions()
    print(f"conditions: {cond['date']}, {cond['host']}: {cond['cpu']}, {cond['hardware_threads']} "
          f"hardware threads, load average {cond['load_average']} at start")
    print(f"  workload: concurrency {args.concurrency}, isl {args.isl}, osl {args.osl}, "
          f"{args.requests} requests (+{args.warmup} warm-up), repeat {args.repeat}, "
          f"server threads {args.threads}, model {args.model}")
    print(f"  CPUs: server {args.server_cpus or 'any'}, load tools {args.client_cpus or 'any'}")

    def measure(url):
        model_id = served_model_id(url)
        ours, theirs = [], []
        for i in range(args.repeat):
            # Alternate which tool goes first, so drift favours neither.
            order = ("bench", "aiperf") if i % 2 == 0 else ("aiperf", "bench")
            for tool in order:
                if tool == "bench":
                    rep = run_tokenfab_bench(args.tokenfab, url, args.concurrency, args.isl,
                                             args.osl, args.requests, args.warmup,
                                             args.seed + i, args.model, cpus=args.client_cpus,
                                             records=out_dir / f"bench_{i}_records.jsonl")
                    (out_dir / f"bench_{i}.json").write_text(json.dumps(rep, indent=1))
                    ours.append(tokenfab_figures(rep))
                else:
                    exp = run_aiperf(VENV / "bin" / "aiperf", url, model_id, tokenizer,
                                     args.concurrency, args.isl, args.osl, args.requests,
                                     args.warmup, args.seed + i, out_dir / f"aiperf_{i}",
                                     cpus=args.client_cpus)
                    theirs.append(aiperf_figures(exp))
            log(f"repeat {i + 1}/{args.repeat}: bench {ours[-1]['output tokens/s']:.1f} tok/s, "
                f"aiperf {theirs[-1]['output tokens/s']:.1f} tok/s")
        return ours, theirs

    if args.fixed_timing:
        ttft_ms, itl_ms = (float(x) for x in args.fixed_timing.split(","))
        port = free_port()
        print(f"  server: built-in, fixed timing: TTFT {ttft_ms} ms, ITL {itl_ms} ms, no tokenizer")
        with FixedTimingServer(port, ttft_ms / 1e3, itl_ms / 1e3):
            ours, theirs = measure(f"http://127.0.0.1:{port}")
    elif args.url:
        ours, theirs = measure(args.url)
    else:
        http, grpc = free_port(), free_port()
        with tokenfab_server(args.tokenfab, args.model, args.threads, http, grpc,
                             out_dir / "serve.log", cpus=args.server_cpus):
            ours, theirs = measure(f"http://127.0.0.1:{http}")
    cols = {"tokenfab bench": medians(ours), "aiperf": medians(theirs)}
    print(f"  load average at end: {machine_conditions()['load_average']}")
    print_table(f"medians of {args.repeat} runs each (ratio = tokenfab bench / aiperf):", cols,
                list(cols["aiperf"]), ratio_of=("tokenfab bench", "aiperf"))
    key = ["output tokens/s", "request throughput (req/s)", "TTFT p50 (ms)", "TTFT p90 (ms)",
           "ITL p50 (ms)", "ITL p90 (ms)", "request latency p50 (ms)"]
    worst = max(abs(cols["tokenfab bench"][k] / cols["aiperf"][k] - 1) for k in key)
    print(f"largest disagreement over {', '.join(key)}: {worst * 100:.1f}% "
          f"({'within' if worst <= 0.10 else 'OUTSIDE'} 10%)")
    (out_dir / "summary.json").write_text(json.dumps(
        {"conditions": cond, "args": vars(args), "tokenfab_bench": ours, "aiperf": theirs,
         "medians": cols}, indent=1))


if __name__ == "__main__":
    main()
