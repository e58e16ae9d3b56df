#include "worker/tokenizer/bpe_model.h"

#include "worker/tokenizer/byte_unicode.h"
#include "worker/tokenizer/utf8.h"

namespace tokenfab {

BpeModel::BpeModel(const Vocab& vocab, MergeTable merges, BpeOptions options)
    : merges_(std::move(merges)), options_(options) {
  for (int b = 0; b < 256; ++b) {
    std::string ch;
    AppendUtf8(ByteToCodepoint(static_cast<uint8_t>(b)), &ch);
    byte_ids_[b] = vocab.Find(ch);
    fallback_ids_[b] = vocab.Find(ByteTokenText(static_cast<uint8_t>(b)));
  }
}

void BpeModel::InitialSymbols(const Vocab& vocab, std::string_view word,
                              std::vector<int32_t>* ids) const {
  ids->clear();
  if (options_.byte_level) {
    ids->reserve(word.size());
    for (unsigned char b : word) ids->push_back(byte_ids_[b]);
    return;
  }
  bool last_was_unk = false;
  size_t i = 0;
  while (i < word.size()) {
    uint32_t cp;
    size_t n = DecodeUtf8(word, i, &cp);
    if (n == 0) n = 1;  // callers pass valid UTF-8; never loop on bad input
    const int32_t id = vocab.Find(word.substr(i, n));
    if (id >= 0) {
      ids->push_back(id);
      last_was_unk = false;
    } else {
      bool have_bytes = options_.byte_fallback;
      for (size_t k = 0; have_bytes && k < n; ++k) {
        have_bytes = fallback_ids_[static_cast<unsigned char>(word[i + k])] >= 0;
      }
      if (have_bytes) {
        for (size_t k = 0; k < n; ++k) {
          ids->push_back(fallback_ids_[static_cast<unsigned char>(word[i + k])]);
        }
        last_was_unk = false;
      } else if (!(options_.fuse_unk && last_was_unk)) {
        ids->push_back(options_.unk_id);  // -1 never merges and is dropped below
        last_was_unk = true;
      }
    }
    i += n;
  }
}

void BpeModel::EncodeWord(const Vocab& vocab, std::string_view word,
                          std::vector<int32_t>* out) const {
  if (word.empty()) return;
  if (options_.ignore_merges) {
    const int32_t whole =
        options_.byte_level ? vocab.Find(BytesToByteLevelText(word)) : vocab.Find(word);
    if (whole >= 0) {
      out->push_back(whole);
      return;
    }
  }
  thread_local std::vector<int32_t> ids;
  InitialSymbols(vocab, word, &ids);
  merges_.ApplyMerges(&ids);
  for (int32_t id : ids) {
    if (id >= 0) {
      out->push_back(id);
    } else if (options_.unk_id >= 0 && options_.byte_level) {
      out->push_back(options_.unk_id);
    }
  }
}

}  // namespace tokenfab
