"""tools/make_random_model.py writes the checkpoints the GPU benchmark reads:
shrunk real shapes (--layers, --vocab) with a consistent safetensors header
(tests/worker/model/random_model_test.cc loads one into the CPU engine)."""
import json
import os
import struct
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOL = os.path.join(ROOT, "tools", "make_random_model.py")


def header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return n, json.loads(f.read(n))


@pytest.mark.parametrize("shape,hidden,heads,kv,dim,ff,tied", [
    ("llama-3.2-1b", 2048, 32, 8, 64, 8192, True),
    ("llama-3.1-8b", 4096, 32, 8, 128, 14336, False),
])
def test_shapes_and_layout(tmp_path, shape, hidden, heads, kv, dim, ff, tied):
    out = tmp_path / shape
    subprocess.run([sys.executable, TOOL, "--shape", shape, "--layers", "1", "--vocab", "256",
                    "--out", str(out)], check=True, timeout=300)
    config = json.loads((out / "config.json").read_text())
    assert (config["hidden_size"], config["num_attention_heads"], config["num_key_value_heads"],
            config["head_dim"], config["intermediate_size"]) == (hidden, heads, kv, dim, ff)
    assert config["rope_scaling"]["rope_type"] == "llama3"
    assert config["tie_word_embeddings"] == tied
    path = out / "model.safetensors"
    n, h = header(path)
    end = 0
    for name, t in h.items():
        if name == "__metadata__":
            continue
        assert t["dtype"] == "BF16"
        a, b = t["data_offsets"]
        count = 1
        for s in t["shape"]:
            count *= s
        assert b - a == 2 * count, name
        end = max(end, b)
    assert os.path.getsize(path) == 8 + n + end
    assert h["model.layers.0.self_attn.k_proj.weight"]["shape"] == [kv * dim, hidden]
    assert h["model.layers.0.mlp.down_proj.weight"]["shape"] == [hidden, ff]
    assert ("lm_head.weight" in h) == (not tied)
    # Norms are ones; projections are small random values, not all equal.
    with open(path, "rb") as f:
        a, b = h["model.norm.weight"]["data_offsets"]
        f.seek(8 + n + a)
        assert set(struct.unpack(f"<{(b - a) // 2}H", f.read(b - a))) == {0x3F80}
        a, _ = h["model.layers.0.self_attn.q_proj.weight"]["data_offsets"]
        f.seek(8 + n + a)
        values = struct.unpack("<4096H", f.read(8192))
        assert len(set(values)) > 100
