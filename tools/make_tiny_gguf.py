#!/usr/bin/env python3
"""Tiny random-weight GGUF models plus llama.cpp reference logits and dequantization goldens.

Makes:   tests/data/gguf/tiny-llama-kquant.gguf   llama, Q4_K/Q6_K (like a Q4_K_M file),
                                                  GQA, untied output, llama3 rope_freqs
         tests/data/gguf/tiny-llama-mixed.gguf    llama, F16 BF16 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 F32
                                                  spread over the matrices, tied output
         tests/data/gguf/tiny-qwen2.gguf          qwen2, Q8_0/F16, F32 q/k/v biases, tied output
         tests/golden/gguf/<model>.json           llama.cpp logits for 48 seeded token ids, all
                                                  positions, f32 KV cache, flash attention off
         tests/golden/gguf/dequant.json           raw blocks (hex) of each weight type and the
                                                  floats gguf-py dequantizes them to
Run:     python3 tools/make_tiny_gguf.py            (about 10 s on 2 cores)
         python3 tools/make_tiny_gguf.py --no-hf-check   to skip the transformers cross-check
Needs:   gguf (gguf-py), numpy, llama-cpp-python; torch + transformers for the cross-check.

Weights are written with gguf-py's GGUFWriter. Block-32 types are produced by
gguf.quants.quantize from seeded normal floats. gguf-py cannot quantize Q4_K / Q6_K,
so those tensors are random bytes with small positive f16 super-block scales chosen so
the dequantized values have the requested standard deviation.

The tokenizer metadata is tokenizer.ggml.model = "none" (llama files) / "no_vocab"
(qwen2 file) with <arch>.vocab_size: llama.cpp accepts both spellings and then
creates that many dummy tokens, so the token ids are all the models need.

As a check that the files mean what this script thinks they mean, each model's
dequantized weights are also run through HF transformers (LlamaForCausalLM /
Qwen2ForCausalLM in float64; llama q/k rows un-permuted to HF's rotate-half order;
the llama3 rope scaling given as config, not taken from rope_freqs.weight). The
JSON's "crosscheck" records (1) llama.cpp on an all-F32 copy of the file vs that:
~1e-5, so layout/rope/GQA/biases/tying are right; (2) llama.cpp's real logits vs
that: up to ~0.3, which is llama.cpp's own rounding of matmul activations (8-bit
blocks for quantized weights, f16/bf16 for f16/bf16 weights) and so the tolerance
a float32 engine needs against "logits"; (3) the same with that rounding emulated
in transformers: ~1e-6 where no value sits on a rounding boundary. "logits_exact"
holds the float64 transformers logits, for a tight comparison.

Deterministic: fixed seeds; GGUFWriter output is byte-identical between runs.
"""

import argparse
import hashlib
import json
import math
import os
import sys
import tempfile

import numpy as np
import gguf
from gguf import GGMLQuantizationType as QT
from gguf import GGUFWriter

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_DIR = os.path.join(REPO, "tests/data/gguf")
GOLDEN_DIR = os.path.join(REPO, "tests/golden/gguf")

N_EVAL = 48
KNOWN_VENDORED_COMMITS = {"0.3.36": "0c1e57098bba43ac29e6e3b677cdceebdd22334f"}

# ---------------------------------------------------------------------------
# Model definitions. Matrices are listed as numpy shapes (rows=out, cols=in); in
# GGUF that is ne = [in, out], which is what llama.cpp's create_tensor expects.
# ---------------------------------------------------------------------------

MODELS = {
    "tiny-llama-kquant": dict(
        arch="llama", seed=1001, tokenizer_model="none", file_type=15,  # MOSTLY_Q4_K_M
        n_embd=256, n_layer=2, n_head=4, n_head_kv=2, n_ff=512, n_vocab=512, n_ctx=256,
        rope_base=500000.0, rms_eps=1e-5,
        llama3_rope=dict(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                         original_max_position_embeddings=64),
        tied=False,
        types={"token_embd": QT.Q4_K, "output": QT.Q6_K,
               "attn_q": QT.Q4_K, "attn_k": QT.Q4_K, "attn_v": QT.Q6_K,
               "attn_output": QT.Q4_K, "ffn_gate": QT.Q4_K, "ffn_up": QT.Q4_K,
               "ffn_down": QT.Q6_K},
    ),
    "tiny-llama-mixed": dict(
        arch="llama", seed=1002, tokenizer_model="none", file_type=None,
        n_embd=64, n_layer=2, n_head=2, n_head_kv=1, n_ff=128, n_vocab=512, n_ctx=256,
        rope_base=10000.0, rms_eps=1e-5, llama3_rope=None, tied=True,
        types={"token_embd": QT.Q8_0,
               0: {"attn_q": QT.F16, "attn_k": QT.BF16, "attn_v": QT.F32,
                   "attn_output": QT.Q4_1, "ffn_gate": QT.Q5_0, "ffn_up": QT.Q5_1,
                   "ffn_down": QT.Q4_0},
               1: {"attn_q": QT.Q4_0, "attn_k": QT.Q4_1, "attn_v": QT.Q5_0,
                   "attn_output": QT.Q5_1, "ffn_gate": QT.Q8_0, "ffn_up": QT.F16,
                   "ffn_down": QT.BF16}},
    ),
    "tiny-qwen2": dict(
        arch="qwen2", seed=1003, tokenizer_model="no_vocab", file_type=7,  # MOSTLY_Q8_0
        n_embd=96, n_layer=2, n_head=3, n_head_kv=1, n_ff=192, n_vocab=512, n_ctx=256,
        rope_base=1000000.0, rms_eps=1e-6, llama3_rope=None, tied=True, qkv_bias=True,
        types={"token_embd": QT.Q8_0,
               "attn_q": QT.Q8_0, "attn_k": QT.Q8_0, "attn_v": QT.F16,
               "attn_output": QT.F16, "ffn_gate": QT.Q8_0, "ffn_up": QT.F16,
               "ffn_down": QT.Q8_0},
    ),
}

# Standard deviation of each matrix's values: big enough that logits are O(1).
STD = {"token_embd": 0.5, "output": 0.08, "attn_q": 0.08, "attn_k": 0.08, "attn_v": 0.08,
       "attn_output": 0.08, "ffn_gate": 0.08, "ffn_up": 0.08, "ffn_down": 0.06}


def llama3_rope_factors(head_dim, base, factor, low_freq_factor, high_freq_factor,
                        original_max_position_embeddings):
    """Per-frequency divisors for llama3 rope scaling, as llama.cpp's converter stores them
    in rope_freqs.weight (theta_i = pos * base^(-2i/d) / factor_i)."""
    inv_freq = 1.0 / (base ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    low_freq_wavelen = original_max_position_embeddings / low_freq_factor
    high_freq_wavelen = original_max_position_embeddings / high_freq_factor
    out = []
    for f in inv_freq.astype(np.float32).astype(np.float64):
        wavelen = 2 * math.pi / f
        if wavelen < high_freq_wavelen:
            out.append(1.0)
        elif wavelen > low_freq_wavelen:
            out.append(factor)
        else:
            smooth = ((original_max_position_embeddings / wavelen - low_freq_factor)
                      / (high_freq_factor - low_freq_factor))
            out.append(1.0 / ((1.0 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


# ---------------------------------------------------------------------------
# K-quant random blocks (gguf-py only dequantizes these types).
# ---------------------------------------------------------------------------

def random_q4_k(rng, rows, cols, std):
    """block_q4_K: f16 d, f16 dmin, 12 bytes of packed 6-bit scales/mins, 128 bytes of nibbles.
    x = d*sc*q - dmin*m with sc, m in [0, 63], q in [0, 15]; all packed bits random.
    dmin = 7.5*d centres the values; std(x) is then about 250*d."""
    nb = rows * cols // 256
    blocks = rng.integers(0, 256, size=(nb, 144), dtype=np.uint8)
    d = (std / 250.0) * rng.uniform(0.8, 1.2, size=nb)
    dmin = 7.5 * d * rng.uniform(0.9, 1.1, size=nb)
    blocks[:, 0:2] = d.astype(np.float16).view(np.uint8).reshape(nb, 2)
    blocks[:, 2:4] = dmin.astype(np.float16).view(np.uint8).reshape(nb, 2)
    return blocks.reshape(rows, cols // 256 * 144)


def random_q6_k(rng, rows, cols, std):
    """block_q6_K: 128 bytes ql, 64 bytes qh, 16 int8 scales, f16 d; x = d*scale*(q-32).
    Scales are random int8 in [-64, 63] (both signs), q random 6-bit; std(x) ~ 680*d."""
    nb = rows * cols // 256
    blocks = rng.integers(0, 256, size=(nb, 210), dtype=np.uint8)
    blocks[:, 192:208] = rng.integers(-64, 64, size=(nb, 16), dtype=np.int8).view(np.uint8)
    d = (std / 680.0) * rng.uniform(0.8, 1.2, size=nb)
    blocks[:, 208:210] = d.astype(np.float16).view(np.uint8).reshape(nb, 2)
    return blocks.reshape(rows, cols // 256 * 210)


def make_matrix(rng, shape, qtype, std):
    """Returns (array to hand to GGUFWriter, dequantized float32 matrix)."""
    rows, cols = shape
    if qtype == QT.Q4_K:
        raw = random_q4_k(rng, rows, cols, std)
    elif qtype == QT.Q6_K:
        raw = random_q6_k(rng, rows, cols, std)
    else:
        x = (rng.standard_normal(shape) * std).astype(np.float32)
        raw = gguf.quants.quantize(x, qtype)
    deq = gguf.quants.dequantize(raw, qtype).astype(np.float32).reshape(shape)
    return raw, deq


# ---------------------------------------------------------------------------
# Writing a model
# ---------------------------------------------------------------------------

def tensor_type(cfg, layer, kind):
    t = cfg["types"]
    if layer is not None and layer in t:
        return t[layer][kind]
    return t[kind]


def write_metadata(w, name, cfg):
    n_embd, n_head = cfg["n_embd"], cfg["n_head"]
    w.add_name(name)
    w.add_description("random weights for tokenfab tests; made by tools/make_tiny_gguf.py")
    if cfg["file_type"] is not None:
        w.add_file_type(cfg["file_type"])
    w.add_context_length(cfg["n_ctx"])
    w.add_embedding_length(n_embd)
    w.add_block_count(cfg["n_layer"])
    w.add_feed_forward_length(cfg["n_ff"])
    w.add_head_count(n_head)
    w.add_head_count_kv(cfg["n_head_kv"])
    w.add_rope_dimension_count(n_embd // n_head)
    w.add_rope_freq_base(cfg["rope_base"])
    w.add_layer_norm_rms_eps(cfg["rms_eps"])
    w.add_vocab_size(cfg["n_vocab"])
    w.add_tokenizer_model(cfg["tokenizer_model"])
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)


def write_f32_copy(name, cfg, weights, path):
    """The same model with every tensor stored as F32 (the dequantized values). llama.cpp
    runs F32 matmuls without rounding activations, so this copy checks the file's meaning
    (layout, rope, GQA, biases) against transformers to float32 precision. Not committed."""
    w = GGUFWriter(path, cfg["arch"])
    write_metadata(w, name, dict(cfg, file_type=0))
    for tname, v in weights.items():
        w.add_tensor(tname, np.ascontiguousarray(v, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def build_model(name, cfg, path):
    rng = np.random.default_rng(cfg["seed"])
    arch = cfg["arch"]
    n_embd, n_head, n_head_kv = cfg["n_embd"], cfg["n_head"], cfg["n_head_kv"]
    head_dim = n_embd // n_head
    n_ff, n_vocab = cfg["n_ff"], cfg["n_vocab"]
    weights = {}   # name -> dequantized float32 (numpy shape), for the cross-check
    types = {}     # name -> ggml type name
    block_mins = {}  # Q4_1/Q5_1 name -> per-block m (rows, cols/32), for the cross-check

    w = GGUFWriter(path, arch)
    write_metadata(w, name, cfg)

    def add(tname, arr, qtype, deq):
        w.add_tensor(tname, arr, raw_dtype=qtype)
        weights[tname] = deq
        types[tname] = qtype.name

    def add_matrix(tname, shape, qtype, std):
        raw, deq = make_matrix(rng, shape, qtype, std)
        add(tname, raw, qtype, deq)
        if qtype in (QT.Q4_1, QT.Q5_1):
            _, type_size = gguf.GGML_QUANT_SIZES[qtype]
            blocks = raw.reshape(shape[0], -1, type_size)
            block_mins[tname] = np.ascontiguousarray(blocks[:, :, 2:4]).view(np.float16)[..., 0]

    def add_vector(tname, n, mean, std):
        v = (mean + std * rng.standard_normal(n)).astype(np.float32)
        add(tname, v, QT.F32, v)

    # A tied embedding is also the output matrix: keep it small enough for O(1) logits.
    add_matrix("token_embd.weight", (n_vocab, n_embd), tensor_type(cfg, None, "token_embd"),
               0.25 if cfg["tied"] else STD["token_embd"])
    add_vector("output_norm.weight", n_embd, 1.0, 0.1)
    if not cfg["tied"]:
        add_matrix("output.weight", (n_vocab, n_embd), tensor_type(cfg, None, "output"),
                   STD["output"])
    if cfg["llama3_rope"] is not None:
        f = llama3_rope_factors(head_dim, cfg["rope_base"], **cfg["llama3_rope"])
        add("rope_freqs.weight", f, QT.F32, f)
    shapes = {"attn_q": (n_head * head_dim, n_embd), "attn_k": (n_head_kv * head_dim, n_embd),
              "attn_v": (n_head_kv * head_dim, n_embd), "attn_output": (n_embd, n_head * head_dim),
              "ffn_gate": (n_ff, n_embd), "ffn_up": (n_ff, n_embd), "ffn_down": (n_embd, n_ff)}
    for il in range(cfg["n_layer"]):
        add_vector(f"blk.{il}.attn_norm.weight", n_embd, 1.0, 0.1)
        for kind in ("attn_q", "attn_k", "attn_v", "attn_output"):
            add_matrix(f"blk.{il}.{kind}.weight", shapes[kind], tensor_type(cfg, il, kind),
                       STD[kind])
        if cfg.get("qkv_bias"):
            for kind in ("attn_q", "attn_k", "attn_v"):
                add_vector(f"blk.{il}.{kind}.bias", shapes[kind][0], 0.0, 0.3)
        add_vector(f"blk.{il}.ffn_norm.weight", n_embd, 1.0, 0.1)
        for kind in ("ffn_gate", "ffn_up", "ffn_down"):
            add_matrix(f"blk.{il}.{kind}.weight", shapes[kind], tensor_type(cfg, il, kind),
                       STD[kind])

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return weights, dict(types=types, block_mins=block_mins)


# ---------------------------------------------------------------------------
# llama.cpp reference
# ---------------------------------------------------------------------------

def llamacpp_logits(path, ids, n_threads, n_ctx):
    import llama_cpp
    llm = llama_cpp.Llama(
        model_path=path, n_ctx=n_ctx, n_batch=N_EVAL, n_ubatch=N_EVAL,
        n_threads=n_threads, n_threads_batch=n_threads, n_gpu_layers=0,
        logits_all=True, flash_attn=False,
        type_k=0, type_v=0,  # GGML_TYPE_F32 KV cache
        seed=0, verbose=False)
    llm.eval(ids)
    out = np.array(llm.scores[:len(ids)], dtype=np.float32)
    llm.close()
    return out


def llamacpp_info():
    import llama_cpp
    return {
        "llama_cpp_python": llama_cpp.__version__,
        "llama_cpp_library_version": llama_cpp.llama_version().decode(),
        "llama_cpp_commit": KNOWN_VENDORED_COMMITS.get(llama_cpp.__version__, "unknown"),
        "system_info": llama_cpp.llama_print_system_info().decode().strip(),
    }


# ---------------------------------------------------------------------------
# Independent cross-check with HF transformers on the dequantized weights
# ---------------------------------------------------------------------------

def unpermute_qk(w, n_head):
    """llama GGUF q/k rows are ordered for rotation of adjacent pairs (llama.cpp's
    'normal' rope); HF's LlamaAttention rotates (i, i + d/2). Reorder rows to HF's."""
    rows, cols = w.shape
    hd = rows // n_head
    return w.reshape(n_head, hd // 2, 2, cols).swapaxes(1, 2).reshape(rows, cols)


def round_activations_like_ggml_cpu(x, qtype):
    """What ggml's CPU backend does to a matmul's activations before the dot products
    (its vec_dot_type): 8-bit blocks for quantized weights (Q8_0/Q8_1: 32 values, f16 scale;
    Q8_K: 256 values, f32 scale; both scale = max|x|/127, round to nearest), f16 or bf16
    for f16/bf16 weights, nothing for f32."""
    import torch
    if qtype in ("F16", "BF16"):
        dt = torch.float16 if qtype == "F16" else torch.bfloat16
        return x.to(torch.float32).to(dt).to(x.dtype), None, None
    if qtype == "F32":
        return x, None, None
    block, f16_scale = (256, False) if qtype.endswith("_K") else (32, True)
    shape = x.shape
    xb = x.reshape(-1, shape[-1] // block, block).to(torch.float32)
    amax = xb.abs().amax(-1, keepdim=True)
    d = amax / 127.0
    inv = torch.where(amax == 0, torch.zeros_like(amax), 127.0 / amax)
    q = torch.round(xb * inv).clamp(-128, 127)
    d_stored = d.to(torch.float16).to(torch.float32) if f16_scale else d
    return (q * d_stored).reshape(shape).to(x.dtype), q, d


def q8_1_linear(x, weight, bias, mins):
    """ggml-cpu's Q4_1/Q5_1 x Q8_1 dot: sum_b d_w*d_a*sum(q_w*q_a) + m_b*s_b, where the
    activation block sum s_b = f16(d_a(f32) * sum(q_a)) is rounded on its own."""
    import torch
    xq, q, d = round_activations_like_ggml_cpu(x, "Q4_1")
    s = (d[..., 0] * q.sum(-1)).to(torch.float16).to(torch.float64)      # (rows, n_blocks)
    m = torch.tensor(mins.astype(np.float64))                             # (out, n_blocks)
    w_scaled = weight - m.repeat_interleave(32, dim=1)                    # d_w * q_w part
    y = xq.reshape(-1, x.shape[-1]) @ w_scaled.T + s @ m.T
    if bias is not None:
        y = y + bias
    return y.reshape(*x.shape[:-1], weight.shape[0]).to(x.dtype)


def hf_logits(cfg, weights, ids, layout=None):
    """Logits from transformers on the dequantized weights. With layout (from build_model),
    each linear layer's input is first rounded like ggml-cpu does."""
    import torch
    import transformers
    n_embd, n_head, n_head_kv = cfg["n_embd"], cfg["n_head"], cfg["n_head_kv"]
    common = dict(vocab_size=cfg["n_vocab"], hidden_size=n_embd,
                  intermediate_size=cfg["n_ff"], num_hidden_layers=cfg["n_layer"],
                  num_attention_heads=n_head, num_key_value_heads=n_head_kv,
                  max_position_embeddings=cfg["n_ctx"], rms_norm_eps=cfg["rms_eps"],
                  tie_word_embeddings=cfg["tied"], attention_dropout=0.0)
    rope = {"rope_type": "default", "rope_theta": cfg["rope_base"]}
    if cfg["llama3_rope"] is not None:
        rope = {"rope_type": "llama3", "rope_theta": cfg["rope_base"], **cfg["llama3_rope"]}
    if cfg["arch"] == "llama":
        config = transformers.LlamaConfig(rope_parameters=rope, **common)
        model_cls = transformers.LlamaForCausalLM
    else:
        config = transformers.Qwen2Config(rope_parameters=rope, use_sliding_window=False,
                                          **common)
        model_cls = transformers.Qwen2ForCausalLM
    config._attn_implementation = "eager"
    model = model_cls(config).to(torch.float64).eval()

    hf = {"model.embed_tokens.weight": weights["token_embd.weight"],
          "model.norm.weight": weights["output_norm.weight"],
          "lm_head.weight": weights.get("output.weight", weights["token_embd.weight"])}
    names = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
             "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
             "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}
    for il in range(cfg["n_layer"]):
        p = f"model.layers.{il}."
        hf[p + "input_layernorm.weight"] = weights[f"blk.{il}.attn_norm.weight"]
        hf[p + "post_attention_layernorm.weight"] = weights[f"blk.{il}.ffn_norm.weight"]
        for g, h in names.items():
            m = weights[f"blk.{il}.{g}.weight"]
            if cfg["arch"] == "llama" and g in ("attn_q", "attn_k"):
                m = unpermute_qk(m, n_head if g == "attn_q" else n_head_kv)
            hf[p + h + ".weight"] = m
            b = weights.get(f"blk.{il}.{g}.bias")
            if b is not None:
                hf[p + h + ".bias"] = b
    state = {k: torch.tensor(np.asarray(v, dtype=np.float64)) for k, v in hf.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if "rotary_emb" not in k
               and not (cfg["tied"] and k == "lm_head.weight")]
    assert not missing and not unexpected, (missing, unexpected)
    if layout is not None:
        types = layout["types"]
        gguf_of = {f"model.layers.{il}.{h}": f"blk.{il}.{g}.weight"
                   for il in range(cfg["n_layer"]) for g, h in names.items()}
        gguf_of["lm_head"] = "output.weight" if "output.weight" in types else "token_embd.weight"
        for mname, module in model.named_modules():
            if not isinstance(module, torch.nn.Linear):
                continue
            tname = gguf_of[mname]
            qtype = types[tname]
            if qtype in ("Q4_1", "Q5_1"):
                mins = layout["block_mins"][tname]
                module.register_forward_hook(
                    lambda mod, args, out, mins=mins:
                        q8_1_linear(args[0], mod.weight, mod.bias, mins))
            else:
                module.register_forward_pre_hook(
                    lambda mod, args, qtype=qtype:
                        (round_activations_like_ggml_cpu(args[0], qtype)[0],) + args[1:])
    with torch.no_grad():
        out = model(torch.tensor([ids])).logits[0].numpy()
    return out


# ---------------------------------------------------------------------------
# Dequantization goldens
# ---------------------------------------------------------------------------

def dequant_goldens(rng):
    cases = []
    for qtype in (QT.Q4_0, QT.Q4_1, QT.Q5_0, QT.Q5_1, QT.Q8_0, QT.Q4_K, QT.Q6_K,
                  QT.F16, QT.BF16):
        block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
        if qtype in (QT.F16, QT.BF16):
            # "Blocks" of 16 values: random bit patterns minus Inf/NaN, plus the edge cases.
            n = 16
            bits = rng.integers(0, 1 << 16, size=(4, n), dtype=np.uint16)
            if qtype == QT.F16:
                exp = (bits >> 10) & 0x1F
                bits = np.where(exp == 0x1F, bits & ~np.uint16(0x4000), bits)
                bits[0, :6] = [0x0000, 0x8000, 0x0001, 0x03FF, 0x0400, 0x7BFF]  # 0,-0,subnormals,min normal,max
            else:
                exp = (bits >> 7) & 0xFF
                bits = np.where(exp == 0xFF, bits & ~np.uint16(0x4000), bits)
                bits[0, :6] = [0x0000, 0x8000, 0x0001, 0x007F, 0x0080, 0x7F7F]
            raw_blocks = [bits[i].astype("<u2").view(np.uint8) for i in range(4)]
        else:
            raw_blocks = []
            for i in range(4):
                b = rng.integers(0, 256, size=type_size, dtype=np.uint8)
                # f16 scale fields: finite, small, one block with a negative d.
                sign = -1.0 if i == 3 else 1.0
                d = np.float16(sign * rng.uniform(0.001, 0.05))
                m = np.float16(rng.uniform(-0.05, 0.05))
                dv = np.array([d], dtype="<f2").view(np.uint8)
                mv = np.array([m], dtype="<f2").view(np.uint8)
                if qtype in (QT.Q4_0, QT.Q5_0, QT.Q8_0):
                    b[0:2] = dv
                elif qtype in (QT.Q4_1, QT.Q5_1):
                    b[0:2] = dv
                    b[2:4] = mv
                elif qtype == QT.Q4_K:
                    b[0:2] = dv
                    b[2:4] = np.array([np.float16(abs(float(m)))], dtype="<f2").view(np.uint8)
                elif qtype == QT.Q6_K:
                    b[208:210] = dv
                raw_blocks.append(b)
        values = [gguf.quants.dequantize(rb.copy(), qtype).astype(np.float32).reshape(-1)
                  for rb in raw_blocks]
        cases.append({
            "type": qtype.name, "ggml_type_id": int(qtype),
            "block_size": block_size, "type_size": type_size,
            "blocks": [{"hex": rb.tobytes().hex(),
                        "values": [float(x) for x in v]} for rb, v in zip(raw_blocks, values)],
        })
    return cases


# ---------------------------------------------------------------------------

def write_json(path, obj, row_keys=()):
    """JSON with big numeric arrays one row per line."""
    with open(path, "w", encoding="utf-8") as f:
        f.write("{\n")
        items = list(obj.items())
        for n, (k, v) in enumerate(items):
            f.write(f" {json.dumps(k)}: ")
            if k in row_keys:
                f.write("[\n")
                for j, row in enumerate(v):
                    f.write("  " + json.dumps(row, separators=(",", ":"))
                            + ("," if j + 1 < len(v) else "") + "\n")
                f.write(" ]")
            else:
                f.write(json.dumps(v, separators=(",", ":")))
            f.write(",\n" if n + 1 < len(items) else "\n")
        f.write("}\n")


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main():
    ap = argparse.ArgumentParser(description="tiny GGUF models + llama.cpp goldens")
    ap.add_argument("--no-hf-check", action="store_true",
                    help="skip the transformers cross-check (needs torch)")
    args = ap.parse_args()
    os.makedirs(DATA_DIR, exist_ok=True)
    os.makedirs(GOLDEN_DIR, exist_ok=True)
    info = llamacpp_info()

    for name, cfg in MODELS.items():
        path = os.path.join(DATA_DIR, name + ".gguf")
        weights, layout = build_model(name, cfg, path)
        types = layout["types"]
        ids = [int(x) for x in
               np.random.default_rng(cfg["seed"] + 7).integers(0, cfg["n_vocab"], N_EVAL)]
        n_ctx = cfg["n_ctx"]
        l1 = llamacpp_logits(path, ids, 1, n_ctx)
        l2 = llamacpp_logits(path, ids, 2, n_ctx)
        thread_diff = float(np.max(np.abs(l1 - l2)))
        golden = {
            "description": "llama.cpp logits for every position of input_ids evaluated as one "
                           "batch from an empty KV cache; logits[i][v] rounded to 5 decimals. "
                           "logits_exact: the same from transformers in float64 (see "
                           "crosscheck).",
            "model_file": f"tests/data/gguf/{name}.gguf",
            "model_sha256": sha256(path),
            "model_size_bytes": os.path.getsize(path),
            "arch": cfg["arch"],
            "hparams": {k: cfg[k] for k in ("n_embd", "n_layer", "n_head", "n_head_kv", "n_ff",
                                            "n_vocab", "n_ctx", "rope_base", "rms_eps")},
            "llama3_rope": cfg["llama3_rope"],
            "tied_embeddings": cfg["tied"],
            "rope_style": ("normal: rotates adjacent pairs (2i, 2i+1); q/k rows are stored in "
                           "that order, as llama.cpp's converter permutes HF checkpoints"
                           if cfg["arch"] == "llama" else
                           "neox: rotates (i, i + head_dim/2), as HF does"),
            "tensor_types": types,
            "generator": dict(info, script="tools/make_tiny_gguf.py", gguf_py=gguf_version(),
                              n_ctx=n_ctx, n_batch=N_EVAL, n_ubatch=N_EVAL,
                              type_k="f32", type_v="f32", flash_attn=False, n_gpu_layers=0,
                              logits_threads=1,
                              n_threads_compared=[1, 2],
                              max_abs_diff_threads_1_vs_2=thread_diff),
        }
        if not args.no_hf_check:
            ref = hf_logits(cfg, weights, ids)
            with tempfile.TemporaryDirectory() as tmp:
                f32_path = os.path.join(tmp, name + "-f32.gguf")
                write_f32_copy(name, cfg, weights, f32_path)
                l_f32 = llamacpp_logits(f32_path, ids, 1, n_ctx)
            ref_rounded = hf_logits(cfg, weights, ids, layout)
            diff = np.abs(ref - l1.astype(np.float64))
            diff_f32 = np.abs(ref - l_f32.astype(np.float64))
            diff_rounded = np.abs(ref_rounded - l1.astype(np.float64))
            golden["crosscheck"] = {
                "what": "HF transformers (float64, eager) on the gguf-py-dequantized weights, "
                        "llama3 rope from the HF config (not from rope_freqs.weight). "
                        "f32_copy_max_abs_diff: llama.cpp on an all-F32 copy of this file vs "
                        "transformers; tiny, so layout, rope, GQA, biases and tying mean what "
                        "they should. max_abs_diff: these llama.cpp logits vs transformers; "
                        "this is llama.cpp's own rounding (ggml-cpu rounds each matmul's "
                        "activations to 8-bit blocks for quantized weights, to f16/bf16 for "
                        "f16/bf16 weights), so a float32 engine should expect about this much. "
                        "rounded_activations_*: transformers with each linear input rounded the "
                        "way ggml-cpu does (Q8_0/Q8_1: blocks of 32, f16 scale, Q8_1 block sums "
                        "rounded to f16; Q8_K: blocks of 256; f16; bf16); what is left is a few "
                        "values that fall on the other side of a rounding boundary (perturbing "
                        "the reference by 1e-7 relative moves it as much). logits_exact in "
                        "this file is the float64 transformers result.",
                "max_abs_diff": float(diff.max()),
                "mean_abs_diff": float(diff.mean()),
                "argmax_agreement": float(np.mean(ref.argmax(-1) == l1.argmax(-1))),
                "rounded_activations_max_abs_diff": float(diff_rounded.max()),
                "rounded_activations_mean_abs_diff": float(diff_rounded.mean()),
                "f32_copy_max_abs_diff": float(diff_f32.max()),
            }
            assert diff_f32.max() < 1e-3, f"{name}: F32 copy disagrees with transformers"
        golden["logits_stats"] = {"abs_max": float(np.abs(l1).max()),
                                  "std": float(l1.std())}
        golden["input_ids"] = ids
        golden["logits"] = [[round(float(x), 5) for x in row] for row in l1]
        if not args.no_hf_check:
            golden["logits_exact"] = [[round(float(x), 5) for x in row] for row in ref]
        out = os.path.join(GOLDEN_DIR, name + ".json")
        write_json(out, golden, row_keys=("logits", "logits_exact"))
        print(f"{name}: {os.path.getsize(path)} bytes gguf, logits std {l1.std():.3f} "
              f"max {np.abs(l1).max():.3f}, threads 1 vs 2 diff {thread_diff:.2e}, "
              f"crosscheck {golden.get('crosscheck')}", file=sys.stderr)

    deq = {"description": "Raw blocks (hex, little-endian, exactly as stored in GGUF) and the "
                          "float32 values gguf-py's gguf.quants.dequantize gives for each; "
                          "F16/BF16 'blocks' are 16 values.",
           "generator": {"script": "tools/make_tiny_gguf.py", "gguf_py": gguf_version(),
                         "numpy": np.__version__},
           "types": dequant_goldens(np.random.default_rng(2024))}
    out = os.path.join(GOLDEN_DIR, "dequant.json")
    with open(out, "w", encoding="utf-8") as f:
        f.write("{\n")
        f.write(f' "description": {json.dumps(deq["description"])},\n')
        f.write(f' "generator": {json.dumps(deq["generator"])},\n')
        f.write(' "types": [\n')
        for i, c in enumerate(deq["types"]):
            f.write("  " + json.dumps(c, separators=(",", ":"))
                    + ("," if i + 1 < len(deq["types"]) else "") + "\n")
        f.write(" ]\n}\n")
    print(f"wrote {out}", file=sys.stderr)


def gguf_version():
    try:
        from importlib.metadata import version
        return version("gguf")
    except Exception:
        return "unknown"


if __name__ == "__main__":
    main()
