#include "worker/tokenizer/spm_bpe.h"

#include <algorithm>
#include <queue>

#include "worker/tokenizer/utf8.h"

namespace tokenfab {
namespace {

struct Symbol {
  int32_t prev;
  int32_t next;
  size_t begin;  // byte range in the text
  size_t len;    // 0 once merged into its left neighbour
};

struct Bigram {
  int32_t left;
  int32_t right;
  float score;
  size_t len;
};

// Max-heap order: highest score, then leftmost (llm_bigram_spm::comparator).
struct BigramBefore {
  bool operator()(const Bigram& a, const Bigram& b) const {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  }
};

int32_t ByteToken(const Vocab& vocab, uint8_t byte) {
  const int32_t id = vocab.Find(ByteTokenText(byte));
  if (id >= 0) return id;
  const char c = static_cast<char>(byte);
  return vocab.Find(std::string_view(&c, 1));
}

}  // namespace

void EncodeSentencePieceBpe(const Vocab& vocab, std::string_view text, int32_t unk_id,
                            std::vector<int32_t>* out) {
  if (text.empty()) return;
  std::vector<Symbol> symbols;
  symbols.reserve(text.size());
  for (size_t offs = 0; offs < text.size();) {
    const size_t len =
        std::min(Utf8LeadLength(static_cast<uint8_t>(text[offs])), text.size() - offs);
    const int32_t index = static_cast<int32_t>(symbols.size());
    symbols.push_back({index - 1, offs + len == text.size() ? -1 : index + 1, offs, len});
    offs += len;
  }

  std::priority_queue<Bigram, std::vector<Bigram>, BigramBefore> queue;
  auto try_add = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const size_t len = symbols[left].len + symbols[right].len;
    const int32_t id = vocab.Find(text.substr(symbols[left].begin, len));
    if (id < 0) return;
    queue.push({left, right, vocab.scores[id], len});
  };
  for (int32_t i = 1; i < static_cast<int32_t>(symbols.size()); ++i) try_add(i - 1, i);

  while (!queue.empty()) {
    const Bigram b = queue.top();
    queue.pop();
    Symbol& left = symbols[b.left];
    Symbol& right = symbols[b.right];
    // Stale if either side was merged since the bigram was queued.
    if (left.len == 0 || right.len == 0 || left.len + right.len != b.len) continue;
    left.len += right.len;
    right.len = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = b.left;
    try_add(left.prev, b.left);
    try_add(b.left, left.next);
  }

  for (int32_t i = 0; i != -1; i = symbols[i].next) {
    const Symbol& s = symbols[i];
    const std::string_view piece = text.substr(s.begin, s.len);
    const int32_t id = vocab.Find(piece);
    if (id >= 0) {
      out->push_back(id);
      continue;
    }
    // Only single characters can be missing: every merge made a token.
    for (unsigned char c : piece) {
      const int32_t byte_id = ByteToken(vocab, c);
      if (byte_id >= 0) {
        out->push_back(byte_id);
      } else if (unk_id >= 0) {
        out->push_back(unk_id);
      }
    }
  }
}

}  // namespace tokenfab
