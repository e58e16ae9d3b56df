#!/usr/bin/env python3
"""Checks that a real Q4_K_M GGUF (the most common download) runs in tokenfab
as it does in llama.cpp.

llama.cpp (llama-cpp-python) re-quantizes the default SmolLM2 Q4_1 file to
Q4_K_M (tensors whose width is not a multiple of 256 fall back to Q5_0/Q8_0,
as llama.cpp does for this model), then both engines decode greedily for a few
prompts and the script prints how many leading tokens agree. Not part of the
test suite because it needs llama.cpp; the committed tiny K-quant model covers
Q4_K/Q6_K in CI (tests/worker/engine/reference_logits_test.cc).

    python3 tools/check_q4_k_m.py [--tokenfab build/server/tokenfab] [--tokens 32]
"""
import argparse
import ctypes
import os
import subprocess
import sys
import tempfile

import llama_cpp
import numpy as np

PROMPTS = ["The capital of France is", "def fibonacci(n):", "Water boils at"]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenfab", default="build/server/tokenfab")
    ap.add_argument("--tokens", type=int, default=32)
    cache = os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache"))
    ap.add_argument("--model", default=f"{cache}/tokenfab/models/SmolLM2-135M-Instruct.Q4_1.gguf")
    args = ap.parse_args()

    out = os.path.join(tempfile.mkdtemp(), "smollm2-q4_k_m.gguf")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M
    params.allow_requantize = True
    params.nthread = 2
    if llama_cpp.llama_model_quantize(args.model.encode(), out.encode(), ctypes.byref(params)) != 0:
        print("quantization failed", file=sys.stderr)
        return 1
    llm = llama_cpp.Llama(out, n_ctx=512, n_threads=2, logits_all=True, verbose=False, flash_attn=False)
    agree_total = 0
    for prompt in PROMPTS:
        ids = llm.tokenize(prompt.encode(), add_bos=False, special=True)
        llm.reset()
        llm.eval(ids)
        ref = []
        for _ in range(args.tokens):
            t = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            ref.append(t)
            llm.eval([t])
        run = subprocess.run([args.tokenfab, "generate", "--model", out, "--prompt", prompt,
                              "--max-tokens", str(args.tokens), "--ignore-eos", "--print-token-ids",
                              "--threads", "2"], capture_output=True, text=True, check=True)
        ours = [int(x) for x in run.stdout.strip().splitlines()[-1].split()[1:]]
        agree = next((i for i, (a, b) in enumerate(zip(ours, ref)) if a != b), len(ref))
        agree_total += agree == len(ref)
        print(f"{prompt!r}: first {agree} of {len(ref)} tokens identical")
    print(f"{agree_total} of {len(PROMPTS)} prompts identical for all {args.tokens} tokens")
    return 0


if __name__ == "__main__":
    sys.exit(main())
