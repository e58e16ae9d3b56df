#!/usr/bin/env python3
"""How many missing barriers the CUDA emulator's tests notice.

Removes each `__syncthreads()` and `__syncwarp(...)` of the CUDA kernels in
turn (replaced by `(void)0` in the source), rebuilds the emulated tests that
cover the file, and runs them: in index order, under each shuffle seed
(TOKENFAB_CUDA_EMU_SHUFFLE), and, where the build has it, with the kernels
built for the race check (tests/cuda_emu/racecheck.h). Prints
one row per barrier: whether each run failed. The source is restored after
every mutation, and on any exit; the tests are rebuilt from the restored
source at the end.

    python3 tools/barrier_sweep.py [--build build] [--seeds 1,2,3] [--file attention.cu]

Takes about 30 min on 2 cores.
"""
import argparse
import os
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Kernel source -> (emulated test target, its race-check build, gtest
# filter). The sampling distribution test (a minute a run, its rows
# independent) is left out of the runs in index and shuffled order; the
# race check runs it, as it alone covers top-k, top-p and min-p.
COVERAGE = {
    "attention.cu": ("cuda_kernels_emu_test", "cuda_kernels_racecheck_emu_test", ""),
    "sampling.cu": ("cuda_sampling_emu_test", "cuda_sampling_racecheck_emu_test",
                    "-*DrawsStayInCpuSet*"),
}
BARRIER = re.compile(r"__syncthreads\(\)|__syncwarp\([^()]*\)")


def run_test(binary, gtest_filter, seed):
    env = {k: v for k, v in os.environ.items() if k != "TOKENFAB_CUDA_EMU_SHUFFLE"}
    if seed:
        env["TOKENFAB_CUDA_EMU_SHUFFLE"] = seed
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
    racecheck = all((build / "tests" / "worker" / "cuda" / COVERAGE[f][1]).exists() for f in files)
    print(f"{'barrier':<34} {'index order':>11} " + " ".join(f"{'seed ' + s:>7}" for s in seeds) +
          (f" {'racecheck':>9}" if racecheck else ""))
    counts = {"index": 0, "shuffle_only": 0, "racecheck_only": 0, "none": 0}
    for name in files:
        target, race_target, gtest_filter = COVERAGE[name]
        targets = [target] + ([race_target] if racecheck else [])
        path = ROOT / "worker" / "cuda" / name
        original = path.read_text()
        tests = build / "tests" / "worker" / "cuda"
        try:
            for m in BARRIER.finditer(original):
                line = original.count("\n", 0, m.start()) + 1
                path.write_text(original[:m.start()] + "(void)0" + original[m.end():])
                b = subprocess.run(["ninja", "-C", str(build)] + targets, cwd=ROOT,
                                   capture_output=True, text=True)
                where = f"{name}:{line} {m.group(0)}"
                if b.returncode != 0:
                    print(f"{where:<34} does not build without it")
                    continue
                index = run_test(tests / target, gtest_filter, "")
                shuffled = [run_test(tests / target, gtest_filter, s) for s in seeds]
                raced = run_test(tests / race_target, "", "") if racecheck else "ok"
                print(f"{where:<34} {index:>11} " + " ".join(f"{r:>7}" for r in shuffled) +
                      (f" {raced:>9}" if racecheck else ""), flush=True)
                if index != "ok":
                    counts["index"] += 1
                elif any(r != "ok" for r in shuffled):
                    counts["shuffle_only"] += 1
                elif raced != "ok":
                    counts["racecheck_only"] += 1
                else:
                    counts["none"] += 1
        finally:
            path.write_text(original)
    subprocess.run(["ninja", "-C", str(build)] +
                   [t for f in files for t in COVERAGE[f][:2 if racecheck else 1]],
                   cwd=ROOT, capture_output=True)
    print(f"# {sum(counts.values())} barriers: {counts['index']} fail in index order, "
          f"{counts['shuffle_only']} more only when shuffled, "
          + (f"{counts['racecheck_only']} more only under the race check, " if racecheck else "")
          + f"{counts['none']} change nothing the tests see")


if __name__ == "__main__":
    main()
