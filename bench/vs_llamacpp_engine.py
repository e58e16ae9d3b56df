#!/usr/bin/env python3
"""The CPU engine against llama.cpp's, on the same machine, file and threads.

For each model file (SmolLM2-135M Q4_1, the setup step's, and a Q8_0 of the
same model that llama.cpp's quantizer writes from it), runs in turn, never
two at once:
  llama.cpp   llama-bench (pp512, tg128) and llama-batched-bench (128-token
              prompts, 128 generated tokens, 1/8/32 sequences), both built by
              scripts/bench-setup from the llama.cpp in llama-cpp-python's sdist;
  tokenfab    build/bench/engine_bench with the same shapes: a 512-token
              prompt in one step, 128 tokens decoded after a 1-token prompt,
              and 8 and 32 sequences decoding 128 tokens each after 128-token
              prompts;
and prints prefill tokens/s, decode tokens/s at batch 1 and the aggregate at
batch 8 and 32 for both, with the ratio tokenfab / llama.cpp, the batch-8
aggregate over our own batch 1, and each engine's peak resident memory for
the pp512 + tg128 workload (llama-bench's run, and engine_bench's of the same
shape).

    python3 bench/vs_llamacpp_engine.py [--threads 2] [--repeats 5] [--types q4_1,q8_0]
"""
import argparse
import ctypes
import json
import statistics
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LLAMA_BIN = os.path.join(ROOT, "build-bench", "llamacpp", "build", "bin")
CACHE = os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache"))
MODEL = os.path.join(CACHE, "tokenfab", "models", "SmolLM2-135M-Instruct.Q4_1.gguf")


def quantize_q8_0(src, dst):
    """llama.cpp's quantizer (llama-cpp-python, .venv-bench): Q4_1 -> Q8_0."""
    import llama_cpp
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
    params.allow_requantize = True
    params.nthread = 2
    if llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params)) != 0:
        sys.exit("llama.cpp could not quantize the model to Q8_0")


def run(cmd):
    """Runs cmd to the end: (stdout, its peak resident memory in MiB)."""
    with tempfile.TemporaryFile(mode="w+") as err:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
        out = p.stdout.read()
        _, status, usage = os.wait4(p.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            err.seek(0)
            sys.exit(f"{' '.join(cmd)} failed:\n{err.read()[-2000:]}")
    return out, usage.ru_maxrss / 1024.0


def run_llamacpp(model, threads, repeats):
    out, rss = run([os.path.join(LLAMA_BIN, "llama-bench"), "-m", model, "-t", str(threads),
                    "-p", "512", "-n", "128", "-r", str(repeats), "-o", "jsonl"])
    fig = {"peak_rss_mib": rss}
    for line in out.splitlines():
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        if r["n_prompt"] == 512 and r["n_gen"] == 0:
            fig["prefill_512"] = r["avg_ts"]
        if r["n_prompt"] == 0 and r["n_gen"] == 128:
            fig["decode_1"] = r["avg_ts"]
    out, _ = run([os.path.join(LLAMA_BIN, "llama-batched-bench"), "-m", model,
                  "-t", str(threads), "-c", "9000", "-b", "2048", "-ub", "512",
                  "-npp", "128", "-ntg", "128", "-npl", "1,8,32", "--output-format", "jsonl"])
    for line in out.splitlines():
        if line.startswith("{"):
            r = json.loads(line)
            if "pl" in r and "speed_tg" in r:
                fig[f"batch_{r['pl']}"] = r["speed_tg"]
    return fig


def run_tokenfab(model, threads, repeats):
    cmd = [os.path.join(ROOT, "build", "bench", "engine_bench"), "--model", model,
           "--threads", str(threads), "--repeats", str(repeats), "--prefill", "512",
           "--decode-contexts", "1", "--decode-steps", "128", "--batches", "1,8,32",
           "--batch-context", "128", "--batch-steps", "128", "--json"]
    out, _ = run(cmd)
    fig = json.loads(out.strip().splitlines()[-1])
    # Peak memory of llama-bench's workload alone (a 512-token prefill and 128
    # decoded tokens), not of the 32-sequence batch above.
    out, _ = run(cmd[:cmd.index("--batches")] + ["--batches", "1", "--batch-context", "1",
                                                 "--batch-steps", "1", "--json"])
    fig["peak_rss_mib"] = json.loads(out.strip().splitlines()[-1])["peak_rss_mib"]
    return fig


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5, help="alternating rounds (medians printed)")
    ap.add_argument("--types", default="q4_1,q8_0")
    a = ap.parse_args()
    for tool in ("llama-bench", "llama-batched-bench"):
        if not os.access(os.path.join(LLAMA_BIN, tool), os.X_OK):
            sys.exit(f"{tool} is missing: run scripts/bench-setup")
    models = {"q4_1": MODEL}
    if "q8_0" in a.types:
        q8 = os.path.join(CACHE, "tokenfab", "models", "SmolLM2-135M-Instruct.Q8_0.gguf")
        if not os.path.exists(q8):
            quantize_q8_0(MODEL, q8)
        models["q8_0"] = q8
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"machine: {cpu}, {os.cpu_count()} hardware threads; {a.threads} threads each; "
          f"median of {a.repeats} rounds, each one run of llama.cpp's then tokenfab's figures")
    rows = [("prefill_512", "prefill, 512-token prompt (tokens/s)"),
            ("decode_1", "decode, batch 1, 128 tokens (tokens/s)"),
            ("batch_8", "decode, 8 sequences, aggregate (tokens/s)"),
            ("batch_32", "decode, 32 sequences, aggregate (tokens/s)")]
    for name in a.types.split(","):
        model = models[name]
        print(f"\n{name}: {model} ({os.path.getsize(model) / 2**20:.1f} MiB)")
        # Rounds alternate the two engines, one run of each figure per round,
        # so a slow spell of this machine hits both; the medians are printed.
        refs, ourss = [], []
        for _ in range(a.repeats):
            refs.append(run_llamacpp(model, a.threads, 1))
            ourss.append(run_tokenfab(model, a.threads, 1))
        ref = {k: statistics.median(r[k] for r in refs) for k in refs[0]}
        ours = {k: statistics.median(r[k] for r in ourss) for k in ourss[0]}
        print(f"  {'figure':46} {'llama.cpp':>10} {'tokenfab':>10} {'ratio':>7}")
        for key, label in rows:
            r, o = ref.get(key), ours.get(key)
            ratio = f"{o / r:6.2f}x" if r and o else "    -"
            print(f"  {label:46} {r or 0:10.1f} {o or 0:10.1f} {ratio}")
        print(f"  tokenfab batch-8 aggregate / its batch 1: {ours['batch_8'] / ours['batch_1']:.2f}x; "
              f"llama.cpp's: {ref['batch_8'] / ref['batch_1']:.2f}x")
        size = os.path.getsize(model)
        print(f"  peak resident memory, pp512 + tg128: tokenfab {ours['peak_rss_mib']:.0f} MiB "
              f"({ours['peak_rss_mib'] * 2**20 / size:.2f}x the file), llama.cpp "
              f"{ref['peak_rss_mib']:.0f} MiB ({ref['peak_rss_mib'] * 2**20 / size:.2f}x)")


if __name__ == "__main__":
    main()
