#!/usr/bin/env python3
"""Tiny random Hugging Face checkpoints (safetensors) plus transformers reference logits.

Makes:   tests/data/hf/tiny-llama/    LlamaForCausalLM, F32, untied, llama3 rope scaling,
                                      saved in 3 shards (model.safetensors.index.json)
         tests/data/hf/tiny-qwen2/    Qwen2ForCausalLM, BF16, q/k/v biases, tied embeddings,
                                      one model.safetensors
         tests/data/hf/tiny-mistral/  MistralForCausalLM, F16, head_dim 32 != hidden/heads 16,
                                      sliding_window null
         tests/golden/hf/<name>.json  logits of 2 seeded 40-token sequences, every position,
                                      from the saved folder loaded back in float32 (eager)
Run:     python3 tools/make_hf_tiny.py        (under a minute on 2 cores)
Needs:   torch (CPU), transformers, tokenizers, safetensors.

Every folder is a complete HF model folder: config.json, generation_config.json,
safetensors weights, tokenizer.json (a byte-level BPE trained here with the
`tokenizers` library on the text below, vocab = model vocab = 384) and
tokenizer_config.json (bos/eos/pad tokens and a ChatML chat_template).

config.json layout: transformers 5 writes rope settings as "rope_parameters"
(with rope_theta inside) and the dtype as "dtype". Most checkpoints on the Hub
were written by transformers 4 ("rope_theta", "rope_scaling", "torch_dtype"), so
tiny-llama and tiny-mistral are rewritten to that older layout after saving,
and tiny-qwen2 is left in the new one: a loader meets both. The script loads
each folder back with transformers and checks the logits equal those of the
model it saved, so the rewritten configs mean the same thing to transformers.

Weights: seeded normal values, larger than transformers' default init so the
logits are O(1) (the goldens record their spread); norm weights are 1 + noise and
biases are non-zero so a loader that skips either one fails the comparison.

Deterministic: fixed seeds, single-threaded torch; safetensors output is byte-identical.
"""

import json
import os
import shutil
import sys

import numpy as np
import torch
import transformers
import tokenizers
import safetensors
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_DIR = os.path.join(REPO, "tests/data/hf")
GOLDEN_DIR = os.path.join(REPO, "tests/golden/hf")

VOCAB = 384
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # ids 0, 1, 2
BOS, EOS, PAD = "<|im_start|>", "<|im_end|>", "<|endoftext|>"
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SEQ_LEN = 40
N_SEQ = 2

CORPUS = [
    "The quick brown fox jumps over the lazy dog. The dog sleeps in the sun.",
    "A small model is easy to test: every weight fits in a few kilobytes.",
    "Tokens are pieces of text; a tokenizer turns text into numbers and back again.",
    "def add(a, b):\n    return a + b\n\nprint(add(2, 3))\n",
    "for (int i = 0; i < n; ++i) { sum += values[i]; }",
    "Il fait beau aujourd'hui. Das Wetter ist schön. Hace buen tiempo.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 11 12 100 1000 3.14159 2.71828",
    "<|im_start|>user\nHello, who are you?<|im_end|>\n<|im_start|>assistant\nI am a tiny model.",
    "Attention lets each position look at the positions before it and mix their values.",
    "The server reads a request, runs the model, and streams the tokens back to the client.",
] * 4

TOKENIZER_CHECK_TEXTS = [
    "The quick brown fox.",
    "def add(a, b):\n    return a + b",
    "Hello world!  Two  spaces, tabs\tand émojis 🙂.",
    "<|im_start|>user\nhi<|im_end|>",
]


def train_tokenizer():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB, min_frequency=2, special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS, trainer=trainer)
    assert tok.get_vocab_size() == VOCAB, tok.get_vocab_size()
    return tok


def save_tokenizer(tok, folder):
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD,
        model_max_length=256)
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(folder)
    # Keep the chat template inside tokenizer_config.json (the long-standing place), not in
    # a separate chat_template.jinja, and drop files that only repeat tokenizer.json.
    cfg_path = os.path.join(folder, "tokenizer_config.json")
    with open(cfg_path, encoding="utf-8") as f:
        cfg = json.load(f)
    cfg["chat_template"] = CHAT_TEMPLATE
    cfg["add_bos_token"] = False
    cfg["add_eos_token"] = False
    # transformers 5 writes its own class name "TokenizersBackend", which transformers 4
    # does not know; PreTrainedTokenizerFast loads in both.
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    with open(cfg_path, "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2, ensure_ascii=False, sort_keys=True)
        f.write("\n")
    for extra in ("chat_template.jinja", "special_tokens_map.json"):
        p = os.path.join(folder, extra)
        if os.path.exists(p):
            os.remove(p)
    return fast


def init_weights(model, seed, emb_std, w_std):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if "norm" in name:
                v = 1.0 + 0.1 * torch.randn(p.shape, generator=g)
            elif name.endswith(".bias"):
                v = 0.2 * torch.randn(p.shape, generator=g)
            elif "embed_tokens" in name:
                v = emb_std * torch.randn(p.shape, generator=g)
            else:
                v = w_std * torch.randn(p.shape, generator=g)
            p.copy_(v.to(p.dtype))


def to_legacy_config(folder):
    """Rewrite config.json the way transformers 4 wrote it (rope_theta, rope_scaling,
    torch_dtype); see the header comment."""
    path = os.path.join(folder, "config.json")
    with open(path, encoding="utf-8") as f:
        cfg = json.load(f)
    rope = dict(cfg.pop("rope_parameters"))
    cfg["rope_theta"] = rope.pop("rope_theta")
    cfg["rope_scaling"] = rope if rope.get("rope_type", "default") != "default" else None
    if "dtype" in cfg:
        cfg["torch_dtype"] = cfg.pop("dtype")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")


SPECS = {
    "tiny-llama": dict(
        cls="LlamaForCausalLM", cfg_cls="LlamaConfig", seed=2001, dtype=torch.float32,
        legacy_config=True, shard="200KB", emb_std=1.0, w_std=0.1,
        config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2,
                    max_position_embeddings=256, rms_norm_eps=1e-5,
                    tie_word_embeddings=False,
                    rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0,
                                     "factor": 8.0, "low_freq_factor": 1.0,
                                     "high_freq_factor": 4.0,
                                     "original_max_position_embeddings": 32}),
    ),
    "tiny-qwen2": dict(
        cls="Qwen2ForCausalLM", cfg_cls="Qwen2Config", seed=2002, dtype=torch.bfloat16,
        legacy_config=False, shard=None, emb_std=0.15, w_std=0.1,
        config=dict(hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=1,
                    max_position_embeddings=256, rms_norm_eps=1e-6,
                    tie_word_embeddings=True, use_sliding_window=False,
                    rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}),
    ),
    "tiny-mistral": dict(
        cls="MistralForCausalLM", cfg_cls="MistralConfig", seed=2003, dtype=torch.float16,
        legacy_config=True, shard=None, emb_std=1.0, w_std=0.1,
        config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, head_dim=32,
                    max_position_embeddings=256, rms_norm_eps=1e-5,
                    tie_word_embeddings=False, sliding_window=None,
                    rope_parameters={"rope_type": "default", "rope_theta": 10000.0}),
    ),
}


def logits_of(model, seqs):
    with torch.no_grad():
        return np.stack([model(torch.tensor([s])).logits[0].float().numpy() for s in seqs])


def main():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.makedirs(GOLDEN_DIR, exist_ok=True)
    tok = train_tokenizer()

    for name, spec in SPECS.items():
        folder = os.path.join(DATA_DIR, name)
        if os.path.isdir(folder):
            shutil.rmtree(folder)
        os.makedirs(folder)

        config = getattr(transformers, spec["cfg_cls"])(
            vocab_size=VOCAB, bos_token_id=1, eos_token_id=2, pad_token_id=0,
            hidden_act="silu", initializer_range=spec["w_std"], **spec["config"])
        config._attn_implementation = "eager"
        model = getattr(transformers, spec["cls"])(config).eval()
        init_weights(model, spec["seed"], spec["emb_std"], spec["w_std"])
        model = model.to(spec["dtype"])
        kwargs = {"max_shard_size": spec["shard"]} if spec["shard"] else {}
        model.save_pretrained(folder, **kwargs)
        fast = save_tokenizer(tok, folder)
        if spec["legacy_config"]:
            to_legacy_config(folder)

        # The saved weights upcast to f32 in a fresh model (fresh, so the rope buffers are
        # f32, not rounded by .to(dtype)): what the reloaded folder must equal.
        rng = np.random.default_rng(spec["seed"])
        seqs = [[int(x) for x in rng.integers(0, VOCAB, SEQ_LEN)] for _ in range(N_SEQ)]
        fresh = getattr(transformers, spec["cls"])(config).eval()
        fresh.load_state_dict({k: v.float() for k, v in model.state_dict().items()})
        expected = logits_of(fresh, seqs)

        loaded = getattr(transformers, spec["cls"]).from_pretrained(
            folder, dtype=torch.float32, attn_implementation="eager").eval()
        logits = logits_of(loaded, seqs)
        reload_diff = float(np.abs(logits - expected).max())
        assert reload_diff < 1e-5, f"{name}: reloaded folder differs by {reload_diff}"
        assert 0.3 < logits.std() < 5, f"{name}: logits std {logits.std()} not O(1)"

        # Tokenizer goldens from the saved folder (the tokenizers library via transformers).
        saved_tok = transformers.AutoTokenizer.from_pretrained(folder)
        tok_cases = [{"text": t, "ids": saved_tok.encode(t, add_special_tokens=False)}
                     for t in TOKENIZER_CHECK_TEXTS]
        messages = [{"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Hi there"}]
        chat_text = saved_tok.apply_chat_template(messages, tokenize=False,
                                                  add_generation_prompt=True)
        chat_ids = saved_tok.encode(chat_text, add_special_tokens=False)

        files = sorted(os.listdir(folder))
        for f in files:  # safetensors are written 0600; make the folder plain 0644 files
            os.chmod(os.path.join(folder, f), 0o644)
        golden = {
            "description": "transformers logits (float32, eager attention, each sequence run "
                           "alone from position 0) of the model in model_dir loaded with "
                           "from_pretrained(dtype=float32); logits[s][i][v] rounded to 6 "
                           "decimals.",
            "model_dir": f"tests/data/hf/{name}",
            "files": {f: os.path.getsize(os.path.join(folder, f)) for f in files},
            "architecture": spec["cls"],
            "saved_dtype": str(spec["dtype"]).replace("torch.", ""),
            "config_layout": "transformers4 (rope_theta/rope_scaling/torch_dtype)"
                             if spec["legacy_config"] else
                             "transformers5 (rope_parameters/dtype)",
            "config": {k: v for k, v in spec["config"].items()},
            "vocab_size": VOCAB,
            "generator": {"script": "tools/make_hf_tiny.py",
                          "transformers": transformers.__version__,
                          "torch": torch.__version__,
                          "tokenizers": tokenizers.__version__,
                          "safetensors": safetensors.__version__,
                          "torch_threads": 1, "attn_implementation": "eager",
                          "compute_dtype": "float32",
                          "max_abs_diff_vs_in_memory_model": reload_diff},
            "logits_stats": {"std": float(logits.std()), "abs_max": float(np.abs(logits).max())},
            "tokenizer_cases": tok_cases,
            "chat_case": {"messages": messages, "add_generation_prompt": True,
                          "text": chat_text, "ids": chat_ids},
            "input_ids": seqs,
            "logits": [[[round(float(x), 6) for x in row] for row in seq] for seq in logits],
        }
        out = os.path.join(GOLDEN_DIR, name + ".json")
        with open(out, "w", encoding="utf-8") as f:
            f.write("{\n")
            items = list(golden.items())
            for n, (k, v) in enumerate(items):
                f.write(f" {json.dumps(k)}: ")
                if k == "logits":
                    f.write("[\n")
                    for si, seq in enumerate(v):
                        f.write("  [\n")
                        for ri, row in enumerate(seq):
                            f.write("   " + json.dumps(row, separators=(",", ":"))
                                    + ("," if ri + 1 < len(seq) else "") + "\n")
                        f.write("  ]" + ("," if si + 1 < len(v) else "") + "\n")
                    f.write(" ]")
                else:
                    f.write(json.dumps(v, ensure_ascii=False, separators=(",", ":")))
                f.write(",\n" if n + 1 < len(items) else "\n")
            f.write("}\n")
        size = sum(os.path.getsize(os.path.join(folder, f)) for f in files)
        print(f"{name}: {files} ({size} bytes), logits std {logits.std():.3f} "
              f"max {np.abs(logits).max():.3f}, reload diff {reload_diff:.1e}", file=sys.stderr)


if __name__ == "__main__":
    main()
