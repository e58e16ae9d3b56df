// Encode throughput of each tokenizer family on a 10 KB mixed prompt (prose,
// code, accents, CJK, emoji, whitespace runs) and on 64 KB runs of one
// character class, where a regex can backtrack or a merge loop degrade.
//
//   build/bench/tokenizer_bench [--model GGUF_OR_HF_DIR ...]
//
// Without --model it measures the default model and the vocabularies that
// scripts/setup fetches. Prints milliseconds per encode (median of 21) and MB/s.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "worker/model/gguf_file.h"
#include "worker/tokenizer/tokenizer.h"

namespace tokenfab {
namespace {

std::string MixedPrompt(size_t bytes) {
  const std::string paragraph =
      "The quick brown fox jumps over the lazy dog; it's 2024 and we've shipped v1.2.3 "
      "(finally!).\n"
      "def encode(text):\n    return [vocab[w] for w in text.split()]  # \xE2\x9C\x93 fast\n"
      "Caf\xC3\xA9 na\xC3\xAFve \xE4\xBD\xA0\xE5\xA5\xBD\xE4\xB8\x96\xE7\x95\x8C \xF0\x9F\x98\x80  "
      "  indented 1234567890\n";
  std::string text;
  while (text.size() < bytes) text += paragraph;
  return text.substr(0, bytes);
}

double MedianMs(const Tokenizer& t, const std::string& text, size_t* n_tokens) {
  std::vector<double> ms;
  for (int i = 0; i < 21; ++i) {
    const auto start = std::chrono::steady_clock::now();
    *n_tokens = t.Encode(text).size();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
                     .count());
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Load(const std::string& path) {
  if (std::filesystem::is_directory(path)) return Tokenizer::FromHfDirectory(path);
  auto gguf = GgufFile::Open(path);
  if (!gguf.ok()) return gguf.status();
  return Tokenizer::FromGguf(**gguf);
}

int Main(std::vector<std::string> paths) {
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  const char* home = std::getenv("HOME");
  const std::string cache =
      (xdg && *xdg ? std::string(xdg) : std::string(home ? home : "/root") + "/.cache") + "/tokenfab";
  if (paths.empty()) {
    paths.push_back(cache + "/models/SmolLM2-135M-Instruct.Q4_1.gguf");
    for (const char* v : {"llama-bpe", "qwen2", "llama-spm", "gpt-2"}) {
      paths.push_back(cache + "/testdata/llama.cpp-0.3.36/vocab/ggml-vocab-" + v + ".gguf");
    }
  }
  std::printf("tokenfab tokenizer_bench: one thread, median of 21 encodes\n");
  const std::string mixed = MixedPrompt(10 * 1024);
  for (const std::string& path : paths) {
    auto t = Load(path);
    if (!t.ok()) {
      std::fprintf(stderr, "tokenizer_bench: %s\n", std::string(t.status().message()).c_str());
      return 1;
    }
    const std::string name = std::filesystem::path(path).filename().string();
    size_t n = 0;
    const double ms = MedianMs(**t, mixed, &n);
    std::printf("%-34s 10 KB mixed: %6zu tokens %7.2f ms %6.1f MB/s\n", name.c_str(), n, ms,
                mixed.size() / ms / 1000.0);
    for (const std::string unit : {" ", "a", "7", "\xE4\xBD\xA0"}) {
      std::string run;
      while (run.size() < 64 * 1024) run += unit;
      const double run_ms = MedianMs(**t, run, &n);
      std::printf("%-34s 64 KB of '%s': %6zu tokens %7.2f ms\n", "", unit.c_str(), n, run_ms);
    }
  }
  return 0;
}

}  // namespace
}  // namespace tokenfab

int main(int argc, char** argv) {
  return tokenfab::Main(std::vector<std::string>(argv + 1, argv + argc));
}
