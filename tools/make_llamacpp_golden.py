#!/usr/bin/env python3
"""Greedy-decoding golden data for SmolLM2-135M-Instruct (Q4_1 GGUF), made by llama.cpp.

Makes:   tests/golden/llamacpp/smollm2_greedy.json
Run:     python3 tools/make_llamacpp_golden.py [--model PATH] [--out PATH]
         (default model: ~/.cache/tokenfab/models/SmolLM2-135M-Instruct.Q4_1.gguf)
Needs:   llama-cpp-python (calls the llama.cpp library it vendors), gguf, numpy, jinja2.

For every prompt (raw text, or a chat rendered from the GGUF's own
tokenizer.chat_template exactly the way HF transformers renders templates) the
file holds: the prompt token ids as llama.cpp tokenizes them (special=True, no
BOS because the model's add_bos_token is false), 64 tokens chosen by argmax of
llama.cpp's logits at each step (no sampler, no penalties, decoding goes on past
end-of-sequence tokens), and the top-5 (id, logit) pairs of every step so a test
can tell a real divergence from a near-tie.

Deterministic: fixed prompts, greedy argmax (ties -> lowest id, numpy.argmax),
fixed thread count. The llama.cpp build and every context setting are recorded
in the JSON under "generator".
"""

import argparse
import json
import os
import sys

import jinja2
import jinja2.ext
import jinja2.sandbox
import numpy as np
from gguf import GGUFReader

import llama_cpp

N_GEN = 64
TOP_K = 5
N_CTX = 2048
N_THREADS = 2
N_BATCH = 512
N_UBATCH = 512

# llama-cpp-python pins one llama.cpp commit per release (its CHANGELOG says which);
# the shared library itself only reports "0.5.0-dev", so the commit is recorded from here.
KNOWN_VENDORED_COMMITS = {
    "0.3.36": "0c1e57098bba43ac29e6e3b677cdceebdd22334f",
}

LONG_ENGLISH = (
    "The history of the lighthouse is a history of people trying to make the sea a little "
    "less dangerous. The earliest lights were simple fires built on hilltops near harbours, "
    "tended by villagers who were paid in grain or coins by the merchants whose ships depended "
    "on them. Later, towers of stone were raised so that the fire could be seen from farther "
    "away, and the most famous of these, the Pharos of Alexandria, stood for more than a "
    "thousand years before earthquakes brought it down. In the centuries that followed, "
    "builders experimented with wood, brick, iron and finally reinforced concrete, each "
    "material bringing its own problems: wood burned, brick cracked in the frost, and iron "
    "rusted in the salt spray. The light itself changed just as much. Open fires gave way to "
    "candles, candles to oil lamps with polished metal reflectors, and oil lamps to the "
    "Fresnel lens, a clever arrangement of glass prisms that could gather almost all of the "
    "light from a small flame and send it out in a narrow, powerful beam. Each lighthouse was "
    "given its own pattern of flashes so that sailors could recognise it at night, and "
    "printed lists of these patterns were carried on every ship. The keepers who lived in the "
    "towers led lonely lives. They trimmed wicks, polished brass, wound the clockwork that "
    "turned the lens, and wrote the weather into logbooks several times a night. Storms could "
    "cut them off from the mainland for weeks at a time, and more than one keeper's diary "
    "records the slow counting of the last tins of food. Today almost every lighthouse in the "
    "world is automatic, watched by sensors and repaired by technicians who arrive by boat or "
    "helicopter, and many of the old keepers' cottages have become museums or holiday homes. "
    "Yet the towers still matter, because satellite navigation can fail, and a light on a "
    "rock is a message that anyone can read. Summarise the main points of this passage:"
)

CODE_CPP = (
    "#include <vector>\n"
    "#include <cstdint>\n\n"
    "// Returns the index of the first element >= key, or v.size() if none.\n"
    "size_t lower_bound_index(const std::vector<int32_t>& v, int32_t key) {\n"
    "  size_t lo = 0, hi = v.size();\n"
    "  while (lo < hi) {\n"
)

RAW_PROMPTS = [
    ("raw_short_en", "The capital of France is"),
    ("raw_code_python", "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"),
    ("raw_code_cpp", CODE_CPP),
    ("raw_french", "La tour Eiffel est un monument de Paris qui"),
    ("raw_chinese_japanese", "東京は日本の首都です。北京是"),
    ("raw_whitespace_digits", "Items:\n\t1)  apples   x12\n\t2)  pears x 3\n\nTotal = 15 ;  next:"),
    ("raw_long_en", LONG_ENGLISH),
]

CHAT_PROMPTS = [
    ("chat_capital", [{"role": "user", "content": "What is the capital of France?"}]),
    ("chat_haiku", [{"role": "user", "content": "Write a haiku about the sea."}]),
    ("chat_system_terse", [
        {"role": "system", "content": "You are a terse assistant. Answer in one word."},
        {"role": "user", "content": "What color is the sky on a clear day?"},
    ]),
    ("chat_system_code", [
        {"role": "system", "content": "You are an expert Python programmer."},
        {"role": "user", "content": "Write a Python function that reverses a string."},
    ]),
    ("chat_spanish", [{"role": "user", "content": "¿Cuál es la capital de España?"}]),
    ("chat_system_translate", [
        {"role": "system", "content": "You translate English into French."},
        {"role": "user", "content": "Good morning, how are you today?\nI am fine, thank you."},
    ]),
    ("chat_multi_turn", [
        {"role": "user", "content": "Give me a number between 1 and 10."},
        {"role": "assistant", "content": "7"},
        {"role": "user", "content": "Now double it."},
    ]),
]


def render_chat_template(template: str, messages, bos_token: str, eos_token: str) -> str:
    """Renders like transformers' apply_chat_template (its _compile_jinja_template)."""

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template).render(
        messages=messages, add_generation_prompt=True,
        bos_token=bos_token, eos_token=eos_token)


def load_hf_tokenizer(model_path):
    """Cross-check only: transformers' tokenizer built from the same GGUF (its gguf_file
    loader). It uses the plain GPT-2 byte-level split, while llama.cpp uses its 'smollm'
    pre-tokenizer regex, so whitespace runs such as "\n\t" can come out differently;
    such cases get hf_tokenizer_agrees = false and hf_prompt_ids. None if transformers
    is not installed."""
    try:
        import transformers
    except ImportError:
        return None
    return transformers.AutoTokenizer.from_pretrained(
        os.path.dirname(model_path), gguf_file=os.path.basename(model_path))


def top_k(logits: np.ndarray, k: int):
    # Stable sort on (-logit, id): ties resolve to the lower id, like numpy.argmax.
    idx = np.lexsort((np.arange(logits.shape[0]), -logits))[:k]
    return [[int(i), round(float(logits[i]), 4)] for i in idx]


def dump_compact(obj, f):
    """JSON with one case field per line: small diffs, small file, still readable."""
    f.write("{\n")
    items = list(obj.items())
    for n, (key, value) in enumerate(items):
        f.write(f" {json.dumps(key)}: ")
        if key == "cases":
            f.write("[\n")
            for m, case in enumerate(value):
                f.write("  {\n")
                fields = list(case.items())
                for j, (ck, cv) in enumerate(fields):
                    sep = "," if j + 1 < len(fields) else ""
                    f.write(f"   {json.dumps(ck)}: "
                            f"{json.dumps(cv, ensure_ascii=False, separators=(',', ':'))}{sep}\n")
                f.write("  }" + ("," if m + 1 < len(value) else "") + "\n")
            f.write(" ]")
        else:
            f.write(json.dumps(value, ensure_ascii=False, separators=(",", ":")))
        f.write(",\n" if n + 1 < len(items) else "\n")
    f.write("}\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--model", default=os.path.expanduser(
        "~/.cache/tokenfab/models/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--out", default=os.path.join(
        repo, "tests/golden/llamacpp/smollm2_greedy.json"))
    args = ap.parse_args()

    reader = GGUFReader(args.model)
    template = reader.fields["tokenizer.chat_template"].contents()
    add_bos = bool(reader.fields["tokenizer.ggml.add_bos_token"].contents())
    tokens_text = reader.fields["tokenizer.ggml.tokens"].contents()
    bos_id = int(reader.fields["tokenizer.ggml.bos_token_id"].contents())
    eos_id = int(reader.fields["tokenizer.ggml.eos_token_id"].contents())
    del reader

    llm = llama_cpp.Llama(
        model_path=args.model,
        n_ctx=N_CTX, n_batch=N_BATCH, n_ubatch=N_UBATCH,
        n_threads=N_THREADS, n_threads_batch=N_THREADS,
        n_gpu_layers=0, logits_all=True, flash_attn=False,
        seed=0, verbose=False)
    # Default KV cache types (type_k/type_v None -> llama.cpp default f16).
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    eog_ids = [i for i in range(llm.n_vocab())
               if llama_cpp.llama_vocab_is_eog(vocab, i)]
    assert llm.token_eos() == eos_id

    hf_tok = load_hf_tokenizer(args.model)
    cases = []
    prompts = [(name, text, False, None) for name, text in RAW_PROMPTS]
    for name, messages in CHAT_PROMPTS:
        text = render_chat_template(template, messages,
                                    tokens_text[bos_id], tokens_text[eos_id])
        prompts.append((name, text, True, messages))

    for name, text, is_chat, messages in prompts:
        prompt_ids = llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)
        llm.reset()
        llm.eval(prompt_ids)
        generated, top = [], []
        for _ in range(N_GEN):
            logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
            tok = int(np.argmax(logits))
            generated.append(tok)
            top.append(top_k(logits, TOP_K))
            llm.eval([tok])
        eos_positions = [i for i, t in enumerate(generated) if t == eos_id]
        eog_positions = [i for i, t in enumerate(generated) if t in eog_ids]
        case = {
            "name": name,
            "chat": is_chat,
            "prompt": text,
            "prompt_ids": prompt_ids,
            "generated_ids": generated,
            "first_eos_index": eos_positions[0] if eos_positions else None,
            "eog_indices": eog_positions,
            "generated_text": llm.detokenize(generated, special=True).decode(
                "utf-8", errors="replace"),
            "top5": top,
        }
        if messages is not None:
            case["messages"] = messages
        if hf_tok is not None:
            hf_ids = hf_tok.encode(text, add_special_tokens=False)
            case["hf_tokenizer_agrees"] = hf_ids == prompt_ids
            if hf_ids != prompt_ids:
                case["hf_prompt_ids"] = hf_ids
            if messages is not None:
                case["hf_chat_render_agrees"] = hf_tok.apply_chat_template(
                    messages, tokenize=False, add_generation_prompt=True) == text
        cases.append(case)
        print(f"{name}: {len(prompt_ids)} prompt tokens, first ids {generated[:8]}, "
              f"eos at {case['first_eos_index']}", file=sys.stderr)

    out = {
        "description": "Greedy (argmax) continuations of SmolLM2-135M-Instruct Q4_1 by llama.cpp; "
                       "generated_ids[i] = argmax of logits after prompt + generated_ids[:i]; "
                       "top5[i] = [[id, logit], ...] for that step, logits rounded to 4 decimals. "
                       "Decoding continues past EOS.",
        "model_file": os.path.basename(args.model),
        "model_size_bytes": os.path.getsize(args.model),
        "generator": {
            "script": "tools/make_llamacpp_golden.py",
            "llama_cpp_python": llama_cpp.__version__,
            "llama_cpp_library_version": llama_cpp.llama_version().decode(),
            "llama_cpp_commit": KNOWN_VENDORED_COMMITS.get(llama_cpp.__version__, "unknown"),
            "system_info": llama_cpp.llama_print_system_info().decode().strip(),
            "n_ctx": N_CTX, "n_batch": N_BATCH, "n_ubatch": N_UBATCH,
            "n_threads": N_THREADS, "n_threads_batch": N_THREADS,
            "n_gpu_layers": 0,
            "flash_attn": False,
            "type_k": "f16 (default)", "type_v": "f16 (default)",
            "logits_all": True,
            "sampling": "none: numpy.argmax over raw logits (ties -> lowest id), "
                        "no temperature, no repeat penalty",
            "prompt_eval": "whole prompt in one llama_decode (<= n_batch tokens), "
                           "then one token per llama_decode",
            "tokenize": {"add_bos": add_bos, "special": True},
            "chat_template_render": "jinja2 ImmutableSandboxedEnvironment(trim_blocks=True, "
                                    "lstrip_blocks=True, extensions=[loopcontrols]), "
                                    "add_generation_prompt=True, template from GGUF "
                                    "tokenizer.chat_template",
            "jinja2": jinja2.__version__,
            "hf_crosscheck": ("transformers " + __import__("transformers").__version__
                              + " AutoTokenizer.from_pretrained(gguf_file=...) and its "
                              "apply_chat_template") if hf_tok is not None else "not run",
        },
        "eos_token_id": eos_id,
        "eog_token_ids": eog_ids,
        "n_generated": N_GEN,
        "chat_template": template,
        "cases": cases,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        dump_compact(out, f)
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
