#!/usr/bin/env python3
"""Exact reference logits for SmolLM2-135M-Instruct (Q4_1 GGUF), by transformers in float64.

Makes:   tests/golden/exact/smollm2_f64.json
Run:     python3 tools/make_smollm2_exact_golden.py [--model PATH] [--out PATH]
         (default model: ~/.cache/tokenfab/models/SmolLM2-135M-Instruct.Q4_1.gguf; ~1 min)
Needs:   torch (CPU), transformers, gguf, numpy.

transformers loads the GGUF file (gguf-py dequantizes the Q4_1 weights to
float) and runs the model in float64: no rounding of activations, weights or
the KV cache beyond the file's own quantization. That is the yardstick for
engines that round differently: the CPU engine (weights in Q4_1, activations
rounded to 8 bits, as llama.cpp does) and the CUDA backend (weights and
activations in bf16). Neither is compared with the other alone.

For each of 10 short prompts (the CUDA backend test's): the prompt ids
(transformers' GGUF-derived tokenizer, no BOS), and for every position the
16 largest logits (id, value) and the row's largest |logit| (its scale);
then 32 greedy tokens (argmax, decoding with the KV cache in float64) with
the top-2 gap of each step, so a test can tell a near-tie from a divergence.

Deterministic: float64, one torch thread; the same versions give the same bytes.
"""

import argparse
import json
import os

import numpy as np
import torch
import transformers

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):",
    "Once upon a time, in a small village by the sea,",
    "The three primary colors are",
    "To make a cup of tea, first",
    "Water boils at a temperature of",
    "The quick brown fox",
    "In machine learning, a neural network is",
    "My favourite book is",
    "1, 2, 3, 4, 5,",
]
TOP = 16
STEPS = 32


def top_entries(row):
    ids = np.argsort(-row, kind="stable")[:TOP]
    return [[int(i), float(row[i])] for i in ids]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_model = os.path.expanduser(
        "~/.cache/tokenfab/models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--model", default=default_model)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--out", default=os.path.join(repo, "tests/golden/exact/smollm2_f64.json"))
    args = ap.parse_args()

    torch.set_num_threads(1)
    folder, name = os.path.split(os.path.abspath(args.model))
    tok = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=name, dtype=torch.float64)
    model.eval()

    prompts = []
    with torch.no_grad():
        for text in PROMPTS:
            ids = tok.encode(text, add_special_tokens=False)
            out = model(torch.tensor([ids]), use_cache=True)
            logits = out.logits[0].numpy()
            rows = [{"scale": float(np.abs(r).max()), "top": top_entries(r)} for r in logits]
            greedy, gaps = [], []
            past, last = out.past_key_values, logits[-1]
            for _ in range(STEPS):
                order = np.argsort(-last, kind="stable")
                nxt = int(order[0])
                greedy.append(nxt)
                gaps.append(float(last[order[0]] - last[order[1]]))
                out = model(torch.tensor([[nxt]]), past_key_values=past, use_cache=True)
                past, last = out.past_key_values, out.logits[0, -1].numpy()
            prompts.append({"text": text, "ids": ids, "rows": rows, "greedy": greedy,
                            "greedy_gaps": gaps})

    golden = {
        "description": "SmolLM2-135M-Instruct Q4_1 in float64 by transformers: top-16 logits "
                       "of every prompt position, and 32 greedy tokens with top-2 gaps",
        "model": name,
        "generator": {"script": "tools/make_smollm2_exact_golden.py",
                      "transformers": transformers.__version__, "torch": torch.__version__,
                      "numpy": np.__version__, "dtype": "float64", "torch_threads": 1},
        "prompts": prompts,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(golden, f, indent=1)
        f.write("\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
