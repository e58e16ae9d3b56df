#!/usr/bin/env python3
"""Writes a Llama-family checkpoint of a real model's shape with random bf16
weights, as a Hugging Face folder (config.json + model.safetensors), so GPU
speed is measured without downloading the real weights.

  tools/make_random_model.py --shape llama-3.1-8b --out /tmp/llama-8b-random
  tools/make_random_model.py --shape llama-3.2-1b --out DIR [--layers 2 --vocab 512]

Shapes are the published configs of Llama-3.2-1B and Llama-3.1-8B (llama3
rope scaling included). Weights are N(0, 0.02) (norms 1), drawn from a
seeded pool of 2^20 values and tiled, which writes 16 GB in about a minute;
the values do not change the speed of bf16 GEMMs or attention. --layers and
--vocab shrink a shape for tests. No tokenizer is written: the GPU benchmark
reads configuration and weights only.
"""
import argparse
import json
import os
import struct
import sys

import numpy as np

SHAPES = {
    "llama-3.2-1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                         num_attention_heads=32, num_key_value_heads=8, head_dim=64,
                         vocab_size=128256, tie_word_embeddings=True),
    "llama-3.1-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                         num_attention_heads=32, num_key_value_heads=8, head_dim=128,
                         vocab_size=128256, tie_word_embeddings=False),
}


def config_for(shape, layers, vocab):
    c = dict(SHAPES[shape])
    if layers:
        c["num_hidden_layers"] = layers
    if vocab:
        c["vocab_size"] = vocab
    c.update(architectures=["LlamaForCausalLM"], model_type="llama", hidden_act="silu",
             max_position_embeddings=131072, rms_norm_eps=1e-5, rope_theta=500000.0,
             rope_scaling=dict(factor=32.0 if shape == "llama-3.2-1b" else 8.0,
                               low_freq_factor=1.0, high_freq_factor=4.0,
                               original_max_position_embeddings=8192, rope_type="llama3"),
             torch_dtype="bfloat16", bos_token_id=128000, eos_token_id=128001,
             attention_bias=False, _tokenfab_note="random weights (tools/make_random_model.py)")
    return c


def tensors_for(c):
    h, ff, v = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
    q, kv = c["num_attention_heads"] * c["head_dim"], c["num_key_value_heads"] * c["head_dim"]
    out = [("model.embed_tokens.weight", (v, h))]
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        out += [(p + "input_layernorm.weight", (h,)),
                (p + "self_attn.q_proj.weight", (q, h)),
                (p + "self_attn.k_proj.weight", (kv, h)),
                (p + "self_attn.v_proj.weight", (kv, h)),
                (p + "self_attn.o_proj.weight", (h, q)),
                (p + "post_attention_layernorm.weight", (h,)),
                (p + "mlp.gate_proj.weight", (ff, h)),
                (p + "mlp.up_proj.weight", (ff, h)),
                (p + "mlp.down_proj.weight", (h, ff))]
    out.append(("model.norm.weight", (h,)))
    if not c["tie_word_embeddings"]:
        out.append(("lm_head.weight", (v, h)))
    return out


def bf16_bytes(values):
    """float32 array -> bf16 bytes (round to nearest even)."""
    u = values.astype(np.float32).view(np.uint32)
    u = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return u.astype(np.uint16).tobytes()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", choices=sorted(SHAPES), required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--layers", type=int, default=0, help="override the layer count")
    ap.add_argument("--vocab", type=int, default=0, help="override the vocabulary size")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    c = config_for(a.shape, a.layers, a.vocab)
    tensors = tensors_for(c)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(c, f, indent=2)

    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, shape in tensors:
        n = int(np.prod(shape)) * 2
        header[name] = dict(dtype="BF16", shape=list(shape), data_offsets=[offset, offset + n])
        offset += n
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)

    rng = np.random.default_rng(a.seed)
    pool = bf16_bytes(rng.normal(0.0, 0.02, 1 << 20))
    ones = bf16_bytes(np.ones(1 << 16, dtype=np.float32))
    path = os.path.join(a.out, "model.safetensors")
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for i, (name, shape) in enumerate(tensors):
            n = int(np.prod(shape)) * 2
            src = ones if name.endswith("norm.weight") else pool
            start = (i * 4099 * 2) % len(src)  # each tensor starts elsewhere in the pool
            while n > 0:
                chunk = src[start:start + n]
                f.write(chunk)
                n -= len(chunk)
                start = 0
    params = sum(int(np.prod(s)) for _, s in tensors)
    print(f"{a.out}: {a.shape} shape, {c['num_hidden_layers']} layers, vocab {c['vocab_size']}, "
          f"{params / 1e9:.2f}B parameters, {os.path.getsize(path) / 2**30:.2f} GiB", file=sys.stderr)


if __name__ == "__main__":
    main()
