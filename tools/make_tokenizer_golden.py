#!/usr/bin/env python3
"""Tokenizer golden data from implementations tokenfab did not write.

Makes:
  tests/golden/tokenizer/smollm2_llamacpp.json
      SmolLM2-135M-Instruct's GGUF vocabulary tokenized by llama.cpp (through
      llama-cpp-python, vocab_only=True): ids with special=True and add_special
      (the model's own add_bos default), a few cases with special=False, the
      end-of-generation set and bos/eos.
  tests/golden/tokenizer/llamacpp_vocab_facts.json
      bos/eos/add_bos and end-of-generation ids of llama.cpp's test vocabularies
      (~/.cache/tokenfab/testdata/llama.cpp-0.3.36/vocab, fetched by scripts/setup).
  tests/golden/tokenizer/hf_<name>.json
      ids, ids without post-processing and skip-special decodes from the Python
      `tokenizers` library for every tokenizer under tests/data/tokenizer/<name>/.
  tests/data/tokenizer/<name>/{tokenizer.json,tokenizer_config.json}
      only with --retrain: small tokenizers trained here with `tokenizers` on the
      corpus below (byte-level BPE in two pre-tokenizer styles, SentencePiece-style
      BPE with byte fallback in two normalizer/pre-tokenizer styles).

Run:   python3 tools/make_tokenizer_golden.py [--retrain] [--model PATH]
Needs: llama-cpp-python, tokenizers.

Inputs that are not valid UTF-8 are written as "hex" (the bytes), all others as
"text". Deterministic: fixed strings, fixed corpus.
"""

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN_DIR = os.path.join(ROOT, "tests", "golden", "tokenizer")
DATA_DIR = os.path.join(ROOT, "tests", "data", "tokenizer")
CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "tokenfab")
DEFAULT_MODEL = os.path.join(CACHE, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")

LONG_WORD = "Pneumonoultramicroscopicsilicovolcanoconiosis" * 8

# Strings for both llama.cpp and `tokenizers`; special tokens of each model are added below.
COMMON_STRINGS = [
    "",
    " ",
    "  ",
    "\t",
    "\n",
    "\n\n\n",
    " \n \n",
    "Hello world",
    " Hello world",
    "Hello, world! How are you today?",
    "    indented line\n        more indented",
    "trailing spaces   ",
    "I'm sure you've seen it; they'll say it's what we'd do. WE'RE HERE, YOU'VE GOT IT",
    "Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e \u00e0 la fran\u00e7aise, na\u00efve \u00fcber Stra\u00dfe",
    "\u4f60\u597d\uff0c\u4e16\u754c\uff01\u4eca\u5929\u5929\u6c14\u5f88\u597d\u3002",
    "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3068\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8",
    "\u041f\u0440\u0438\u0432\u0435\u0442, \u043a\u0430\u043a \u0434\u0435\u043b\u0430? \u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac \u03ba\u03b1\u03b9 \u05e2\u05d1\u05e8\u05d9\u05ea",
    "Emoji: \U0001F600\U0001F680 \U0001F469\u200d\U0001F4bb \U0001F1EB\U0001F1F7 \u2764\ufe0f \U0001F44D\U0001F3FD",
    "def f(x):\n    return x ** 2  # square\n\nprint(f(3))\n",
    "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }",
    "<html><body class=\"x\">&amp; &lt;tag&gt;</body></html>",
    "1 12 123 1234 12345 123456 1234567 3.14159 1,000,000 2024-01-15",
    "\u0661\u0662\u0663 \u0967\u0968\u0969 \u00bd \u2163 \u2460",
    "a\r\nb\rc\n\rd",
    "multiple     spaces\tand\ttabs \t \t mixed",
    "!!!??? ... --- ___ *** ''' \"\"\" ```",
    "$100 + 50% = \u20ac150 \u00a9 \u2122 \u00b0C",
    "user@example.com https://example.org/path?q=1&r=2#frag",
    "CamelCaseIdentifier snake_case_name kebab-case-name",
    "\u00a0non-breaking\u00a0space\u3000ideographic\u2003em space",
    "zero\u200bwidth\u200djoiner\u200c",
    LONG_WORD,
    "The quick brown fox jumps over the lazy dog. " * 4,
    "\u1780\u17b6\u1793\u17cb\u178f\u17c2\u1796\u17b7\u179f\u17c1\u179f",
    "mixed\u4e2d\u6587English\u65e5\u672c123\u00e9\u00e8",
    "   leading and trailing   \n",
    "\u180e mongolian vowel separator and \u2028 line separator",
    # Letters and digits newer than PCRE2 10.42's Unicode 14 tables.
    "Kawi \U00011f04\U00011f05's digits \U00011f50\U00011f51 Nag \U0001e4f0\U0001e4f1 CJK-I \U0002ebf0",
]

SMOLLM_SPECIAL_STRINGS = [
    "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n",
    "text<|im_end|>more text",
    "<|endoftext|>",
    "a <|im_start|> b",
    "<|im_start|><|im_end|>",
    "<|im_start",
    "<repo_name>x<file_sep>y",
]

CORPUS = """
The lighthouse keeper climbed the spiral stairs every evening at dusk. He trimmed the wick,
polished the great lens and wound the clockwork that turned the light. Ships passing in the
night saw the beam sweep across the water once every ten seconds, and they knew where they were.
It's a quiet life, he'd say, but it's never dull: there's always weather, and weather is news.
In 1872 a storm tore the roof from the oil house; in 1903 the lamp was converted to kerosene;
in 1931 electricity arrived, and with it the hum of a generator that never quite stopped.

Tokenizers split text into pieces. A byte-level BPE tokenizer first maps every byte to a
printable character, then merges the most frequent pairs, one rank at a time, until no merge
applies. A SentencePiece-style tokenizer replaces spaces with a visible marker and falls back
to raw bytes for characters it has never seen. Both must round-trip: decode(encode(s)) == s.

def tokenize(text, merges):
    words = split(text)
    for word in words:
        symbols = list(word)
        while True:
            pairs = [(merges.get((a, b), 1e9), i) for i, (a, b) in enumerate(zip(symbols, symbols[1:]))]
            if not pairs or min(pairs)[0] == 1e9:
                break
            _, i = min(pairs)
            symbols[i:i + 2] = [symbols[i] + symbols[i + 1]]
        yield symbols

for (int i = 0; i < n; ++i) {
  total += values[i] * weights[i];  // accumulate the weighted sum
}
if (total > threshold && !stopped) { return Status::Ok(); }

Numbers: 0 1 2 3 4 5 6 7 8 9 10 11 12 42 99 100 256 1024 2048 4096 65536 3.14 2.718 1,000.
Dates: 2023-11-05, 2024-02-29; times: 09:30, 17:45:12. Prices: $5.99, 12 EUR, 100%.
Le caf\u00e9 est tr\u00e8s chaud, na\u00efve fa\u00e7ade, \u00fcber sch\u00f6n, Stra\u00dfe, se\u00f1or, a\u00e7\u00e3o.
\u041f\u0440\u0438\u0432\u0435\u0442 \u043c\u0438\u0440. \u0395\u03bb\u03bb\u03ac\u03b4\u03b1. \u4f60\u597d\u4e16\u754c\u3002 \u3053\u3093\u306b\u3061\u306f\u3002
Questions? Answers! Quotes: "double", 'single', `back`. Brackets: (round) [square] {curly} <angle>.
Email me at keeper@lighthouse.example or visit https://lighthouse.example/log?year=1931.
She said: "We're going to need a bigger lamp." They'd agreed; we'll see; you've been warned.
   Indented text keeps its spaces.
\tTabs\tare\twhitespace\ttoo.
The end of one line.
The start of the next one, and the end of the corpus.
"""


def corpus_lines():
    lines = [line for line in CORPUS.split("\n")]
    # Repeat so pair counts are meaningful, with small variations.
    out = []
    for rep in range(6):
        for line in lines:
            out.append(line if rep % 2 == 0 else line.lower())
    return out


# --------------------------------------------------------------------------- training


def write_config(name, config):
    with open(os.path.join(DATA_DIR, name, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2, ensure_ascii=False)
        f.write("\n")


def save_tokenizer(tok, name):
    os.makedirs(os.path.join(DATA_DIR, name), exist_ok=True)
    # Compact JSON keeps the committed file small; tokenizers reads it back unchanged.
    data = json.loads(tok.to_str())
    with open(os.path.join(DATA_DIR, name, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")


LLAMA3_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def train_byte_level_llama3_style():
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                "<|eot_id|>"]
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=900, min_frequency=2, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(corpus_lines(), trainer=trainer)
    # A non-special added token exercises the user-defined path (split even when
    # special parsing is off), one with lstrip/rstrip the whitespace handling.
    from tokenizers import AddedToken
    tok.add_tokens([AddedToken("<tool_call>", special=False, normalized=False)])
    tok.add_special_tokens([AddedToken("<|mask|>", lstrip=True, rstrip=True, special=True,
                                       normalized=False)])
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
        special_tokens=[("<|begin_of_text|>", bos)])
    save_tokenizer(tok, "bytelevel_llama3")
    write_config("bytelevel_llama3", {
        "add_bos_token": True, "add_eos_token": False,
        "bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
        "tokenizer_class": "PreTrainedTokenizerFast",
    })


def train_byte_level_gpt2_style():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=700, min_frequency=2, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(corpus_lines(), trainer=trainer)
    save_tokenizer(tok, "bytelevel_gpt2")
    write_config("bytelevel_gpt2", {
        "add_prefix_space": False,
        "bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "unk_token": "<|endoftext|>",
        "tokenizer_class": "GPT2Tokenizer",
    })


def sentencepiece_bpe_json(pre_style):
    """Trains merges over Metaspace-split words, then lays out a Llama-2-style vocabulary:
    <unk> <s> </s>, the 256 byte-fallback tokens, then the learned pieces."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always",
                                                  split=True)
    trainer = trainers.BpeTrainer(vocab_size=800, min_frequency=2,
                                  special_tokens=["<unk>", "<s>", "</s>"], limit_alphabet=70,
                                  show_progress=False)
    tok.train_from_iterator(corpus_lines(), trainer=trainer)
    trained = json.loads(tok.to_str())
    old_vocab = trained["model"]["vocab"]
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab["<0x%02X>" % b] = len(vocab)
    for piece, _ in sorted(old_vocab.items(), key=lambda kv: kv[1]):
        if piece not in vocab:
            vocab[piece] = len(vocab)
    added = [{"id": vocab[t], "content": t, "single_word": False, "lstrip": False,
              "rstrip": False, "normalized": False, "special": True}
             for t in ["<unk>", "<s>", "</s>"]]
    data = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "model": {
            "type": "BPE", "dropout": None, "unk_token": "<unk>",
            "continuing_subword_prefix": None, "end_of_word_suffix": None,
            "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
            "vocab": vocab, "merges": trained["model"]["merges"],
        },
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<s>", "type_id": 1}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}},
        },
    }
    if pre_style == "normalizer":
        # Llama 2 / Mistral v0.1 as converted by transformers (legacy): Prepend + Replace.
        data["normalizer"] = {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "\u2581"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"},
        ]}
        data["pre_tokenizer"] = None
        data["decoder"] = {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
            {"type": "ByteFallback"},
            {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0},
        ]}
    else:
        # Newer conversions: Metaspace pre-tokenizer (prepend on the first section only).
        data["normalizer"] = None
        data["pre_tokenizer"] = {"type": "Metaspace", "replacement": "\u2581",
                                 "prepend_scheme": "first", "split": False}
        data["decoder"] = {"type": "Sequence", "decoders": [
            {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first",
             "split": False},
            {"type": "ByteFallback"},
            {"type": "Fuse"},
        ]}
    return data


def train_sentencepiece_bpe(name, pre_style):
    from tokenizers import Tokenizer

    data = sentencepiece_bpe_json(pre_style)
    tok = Tokenizer.from_str(json.dumps(data))  # validates the layout
    save_tokenizer(tok, name)
    write_config(name, {
        "add_bos_token": True, "add_eos_token": False,
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
        "legacy": pre_style == "normalizer",
        "tokenizer_class": "LlamaTokenizerFast",
    })


# --------------------------------------------------------------------------- goldens


def case_entry(s):
    if isinstance(s, bytes):
        try:
            s.decode("utf-8")
            return {"text": s.decode("utf-8")}
        except UnicodeDecodeError:
            return {"hex": s.hex()}
    return {"text": s}


def case_bytes(s):
    return s if isinstance(s, bytes) else s.encode("utf-8")


def write_golden(name, data):
    os.makedirs(GOLDEN_DIR, exist_ok=True)
    path = os.path.join(GOLDEN_DIR, name)
    # One line per case keeps the files small and diffs readable.
    def dumps(v):
        return json.dumps(v, ensure_ascii=False, separators=(",", ": "))

    with open(path, "w", encoding="utf-8") as f:
        f.write("{\n")
        items = list(data.items())
        for i, (key, value) in enumerate(items):
            sep = "," if i + 1 < len(items) else ""
            if isinstance(value, list) and value and isinstance(value[0], dict):
                f.write(" %s: [\n" % dumps(key))
                f.write(",\n".join("  " + dumps(v) for v in value))
                f.write("\n ]%s\n" % sep)
            elif isinstance(value, dict) and key == "vocabs":
                f.write(" %s: {\n" % dumps(key))
                f.write(",\n".join("  %s: %s" % (dumps(k), dumps(v)) for k, v in value.items()))
                f.write("\n }%s\n" % sep)
            else:
                f.write(" %s: %s%s\n" % (dumps(key), dumps(value), sep))
        f.write("}\n")
    print("wrote", os.path.relpath(path, ROOT), file=sys.stderr)


def make_llamacpp_golden(model_path):
    import llama_cpp

    llm = llama_cpp.Llama(model_path, vocab_only=True, verbose=False)
    vocab = llm._model.vocab
    n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
    strings = COMMON_STRINGS + SMOLLM_SPECIAL_STRINGS + [
        b"invalid \xff\xfe utf8 \xe4\xbd", b"\xc3(", b"overlong \xc0\xaf surrogate \xed\xa0\x80x"]
    cases = []
    for s in strings:
        entry = case_entry(s)
        # add_bos=True is llama.cpp's add_special: BOS only if the model's add_bos_token says so.
        entry["ids"] = llm.tokenize(case_bytes(s), add_bos=True, special=True)
        cases.append(entry)
    no_special = []
    for s in SMOLLM_SPECIAL_STRINGS + ["Hello world", "<|im_start|>"]:
        entry = case_entry(s)
        entry["ids"] = llm.tokenize(case_bytes(s), add_bos=False, special=False)
        no_special.append(entry)
    write_golden("smollm2_llamacpp.json", {
        "generator": "llama-cpp-python %s, llama_tokenize(vocab_only=True)" % llama_cpp.__version__,
        "model": os.path.basename(model_path),
        "n_vocab": n_vocab,
        "bos_id": llama_cpp.llama_vocab_bos(vocab),
        "eos_id": llama_cpp.llama_vocab_eos(vocab),
        "add_bos": bool(llama_cpp.llama_vocab_get_add_bos(vocab)),
        "eog_ids": [i for i in range(n_vocab) if llama_cpp.llama_vocab_is_eog(vocab, i)],
        "cases_special": cases,
        "cases_no_special": no_special,
    })


def special_strings_for(name):
    if name.startswith("bytelevel_llama3"):
        return ["<|begin_of_text|>Hello<|eot_id|>",
                "<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>",
                "call <tool_call>{\"a\": 1}</tool_call> done",
                "word   <|mask|>   next", "x<|mask|>y", "a\u3000<|mask|>\u2028b", "<|eot_id"]
    if name.startswith("bytelevel_gpt2"):
        return ["<|im_start|>user\nHello!<|im_end|>\n", "a<|endoftext|>b", "<|im_end|><|im_end|>"]
    return ["<s>Hello</s>", "text <s> more", "</s> end", "<unk>"]


def make_hf_golden(name):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.path.join(DATA_DIR, name, "tokenizer.json"))
    cases = []
    for s in COMMON_STRINGS + special_strings_for(name):
        with_special = tok.encode(s, add_special_tokens=True)
        plain = tok.encode(s, add_special_tokens=False)
        cases.append({
            "text": s,
            "ids": with_special.ids,
            "ids_no_bos": plain.ids,
            "decoded_skip_special": tok.decode(with_special.ids, skip_special_tokens=True),
        })
    write_golden("hf_%s.json" % name, {
        "generator": "tokenizers %s" % __import__("tokenizers").__version__,
        "tokenizer": "tests/data/tokenizer/%s" % name,
        "vocab_size": tok.get_vocab_size(with_added_tokens=True),
        "cases": cases,
    })


def make_vocab_facts_golden():
    """bos/eos/add_bos and the end-of-generation set of llama.cpp's test vocabularies."""
    import llama_cpp

    vocab_dir = os.path.join(CACHE, "testdata", "llama.cpp-0.3.36", "vocab")
    facts = {}
    for name in ["llama-spm", "llama-bpe", "qwen2", "gpt-2"]:
        llm = llama_cpp.Llama(os.path.join(vocab_dir, "ggml-vocab-%s.gguf" % name), vocab_only=True,
                              verbose=False)
        vocab = llm._model.vocab
        n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
        facts[name] = {
            "n_vocab": n_vocab,
            "bos_id": llama_cpp.llama_vocab_bos(vocab),
            "eos_id": llama_cpp.llama_vocab_eos(vocab),
            "add_bos": bool(llama_cpp.llama_vocab_get_add_bos(vocab)),
            "eog_ids": [i for i in range(n_vocab) if llama_cpp.llama_vocab_is_eog(vocab, i)],
        }
        del llm
    write_golden("llamacpp_vocab_facts.json", {
        "generator": "llama-cpp-python %s" % llama_cpp.__version__,
        "vocabs": facts,
    })


HF_TOKENIZERS = ["bytelevel_llama3", "bytelevel_gpt2", "spm_bpe_legacy", "spm_bpe_metaspace"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--retrain", action="store_true",
                        help="retrain the small tokenizers under tests/data/tokenizer")
    parser.add_argument("--skip-llamacpp", action="store_true")
    args = parser.parse_args()

    if args.retrain:
        train_byte_level_llama3_style()
        train_byte_level_gpt2_style()
        train_sentencepiece_bpe("spm_bpe_legacy", "normalizer")
        train_sentencepiece_bpe("spm_bpe_metaspace", "metaspace")
    for name in HF_TOKENIZERS:
        make_hf_golden(name)
    if not args.skip_llamacpp:
        make_llamacpp_golden(args.model)
        make_vocab_facts_golden()


if __name__ == "__main__":
    main()
