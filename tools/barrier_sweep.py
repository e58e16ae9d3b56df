#!/usr/bin/env python3
"""How many missing barriers the CUDA emulator's tests notice.

Removes each `__syncthreads()` and `__syncwarp(...)` of the CUDA kernels in
turn (replaced by `(void)0` in the source), rebuilds the emulated test that
covers the file, and runs it in index order and under each shuffle seed
(TOKENFAB_CUDA_EMU_SHUFFLE). Prints one row per barrier: whether the tests
failed. The source is restored after every mutation, and on any exit; the
tests are rebuilt from the restored source at the end.

    python3 tools/barrier_sweep.py [--build build] [--seeds 1,2,3] [--file attention.cu]

Takes about 30 s a barrier on 2 cores (the rebuild is most of it).
"""
import argparse
import os
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Kernel source -> (emulated test target, gtest filter). The sampling
# distribution test is left out: a minute a run, and its rows are independent.
COVERAGE = {
    "attention.cu": ("cuda_kernels_emu_test", ""),
    "sampling.cu": ("cuda_sampling_emu_test", "-*DrawsStayInCpuSet*"),
}
BARRIER = re.compile(r"__syncthreads\(\)|__syncwarp\([^()]*\)")


def run_test(binary, gtest_filter, seed):
    env = dict(os.environ, TOKENFAB_CUDA_EMU_SHUFFLE=seed)
    args = [str(binary)] + ([f"--gtest_filter={gtest_filter}"] if gtest_filter else [])
    try:
        r = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        return "timeout"
    return "ok" if r.returncode == 0 else "FAIL"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--file", action="append", choices=sorted(COVERAGE),
                    help="only this kernel source (repeatable; default all)")
    a = ap.parse_args()
    build = (ROOT / a.build).resolve()
    seeds = [s for s in a.seeds.split(",") if s]
    for s in seeds:
        if not s.isdigit():
            sys.exit(f"--seeds: '{s}' is not a seed (a decimal number)")
    files = a.file or sorted(COVERAGE)
    print(f"{'barrier':<34} {'index order':>11} " + " ".join(f"{'seed ' + s:>7}" for s in seeds))
    counts = {"index": 0, "shuffle_only": 0, "none": 0}
    for name in files:
        target, gtest_filter = COVERAGE[name]
        path = ROOT / "worker" / "cuda" / name
        original = path.read_text()
        binary = build / "tests" / "worker" / "cuda" / target
        try:
            for m in BARRIER.finditer(original):
                line = original.count("\n", 0, m.start()) + 1
                path.write_text(original[:m.start()] + "(void)0" + original[m.end():])
                b = subprocess.run(["ninja", "-C", str(build), target], cwd=ROOT,
                                   capture_output=True, text=True)
                where = f"{name}:{line} {m.group(0)}"
                if b.returncode != 0:
                    print(f"{where:<34} does not build without it")
                    continue
                index = run_test(binary, gtest_filter, "")
                shuffled = [run_test(binary, gtest_filter, s) for s in seeds]
                print(f"{where:<34} {index:>11} " + " ".join(f"{r:>7}" for r in shuffled),
                      flush=True)
                if index != "ok":
                    counts["index"] += 1
                elif any(r != "ok" for r in shuffled):
                    counts["shuffle_only"] += 1
                else:
                    counts["none"] += 1
        finally:
            path.write_text(original)
    subprocess.run(["ninja", "-C", str(build)] + [COVERAGE[f][0] for f in files], cwd=ROOT,
                   capture_output=True)
    print(f"# {sum(counts.values())} barriers: {counts['index']} fail in index order, "
          f"{counts['shuffle_only']} only when shuffled, {counts['none']} change nothing the "
          f"tests see")


if __name__ == "__main__":
    main()
