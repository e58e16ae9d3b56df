#include "worker/tokenizer/end_of_generation.h"

#include <algorithm>
#include <set>
#include <string_view>

namespace tokenfab {
namespace {

bool OneOf(std::string_view s, std::initializer_list<std::string_view> names) {
  return std::find(names.begin(), names.end(), s) != names.end();
}

// The text lists of llama.cpp (src/llama-vocab.cpp, llama-cpp-python 0.3.36).
bool IsEotText(std::string_view t) {
  return OneOf(t, {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                   "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]",
                   "<\xEF\xBD\x9C"
                   "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>",
                   "<end_of_utterance>"});
}
bool IsFimPreText(std::string_view t) {
  return OneOf(t, {"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>",
                   "<\xEF\xBD\x9C"
                   "fim\xE2\x96\x81"
                   "begin\xEF\xBD\x9C>",
                   "<PRE>", "\xE2\x96\x81<PRE>", "<|code_prefix|>", "<|prefix|>"});
}
bool IsFimSufText(std::string_view t) {
  return OneOf(t, {"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>",
                   "<\xEF\xBD\x9C"
                   "fim\xE2\x96\x81hole\xEF\xBD\x9C>",
                   "<SUF>", "\xE2\x96\x81<SUF>", "<|code_suffix|>", "<|suffix|>"});
}
bool IsFimMidText(std::string_view t) {
  return OneOf(t, {"<|fim_middle|>", "<fim-middle>", "<fim_middle>",
                   "<\xEF\xBD\x9C"
                   "fim\xE2\x96\x81"
                   "end\xEF\xBD\x9C>",
                   "<MID>", "\xE2\x96\x81<MID>", "<|code_middle|>", "<|middle|>"});
}
bool IsFimPadText(std::string_view t) {
  return OneOf(t, {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"});
}
bool IsFimRepText(std::string_view t) {
  return OneOf(t, {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"});
}
bool IsFimSepText(std::string_view t) { return t == "<|file_sep|>"; }
bool IsEogText(std::string_view t) {
  return OneOf(t, {"<|eot_id|>",
                   "<|im_end|>",
                   "<|end|>",
                   "<|return|>",
                   "<|call|>",
                   "<|flush|>",
                   "<|calls|>",
                   "<end_of_turn>",
                   "<|endoftext|>",
                   "</s>",
                   "<|eom_id|>",
                   "<EOT>",
                   "_<EOT>",
                   "[EOT]",
                   "[EOS]",
                   "<|end_of_text|>",
                   "<end_of_utterance>",
                   "<eos>",
                   "<turn|>",
                   "<|tool_response>",
                   "<\xEF\xBD\x9C"
                   "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>",
                   "[e~["});
}

}  // namespace

EndOfGenerationResult FindEndOfGeneration(const Vocab& vocab, SpecialIds ids) {
  EndOfGenerationResult result;
  std::set<int32_t> control;
  // llama.cpp walks a hash map and keeps the first match per role; with more
  // than one candidate in a vocabulary its choice is unspecified, so take the
  // lowest id. Every candidate is promoted to control either way.
  auto detect = [&](int32_t* id, bool (*matches)(std::string_view)) {
    if (*id >= 0) return;
    for (int32_t i = 0; i < vocab.size(); ++i) {
      if (matches(vocab.texts[i])) {
        *id = i;
        control.insert(i);
        return;
      }
    }
  };
  detect(&ids.eot, IsEotText);
  detect(&ids.eom, [](std::string_view t) { return t == "<|eom_id|>"; });
  detect(&ids.fim_pre, IsFimPreText);
  detect(&ids.fim_suf, IsFimSufText);
  detect(&ids.fim_mid, IsFimMidText);
  detect(&ids.fim_pad, IsFimPadText);
  detect(&ids.fim_rep, IsFimRepText);
  detect(&ids.fim_sep, IsFimSepText);

  std::set<int32_t> eog;
  for (int32_t id : {ids.fim_pad, ids.fim_rep, ids.fim_sep}) {
    if (vocab.Contains(id)) eog.insert(id);
  }
  for (int32_t i = 0; i < vocab.size(); ++i) {
    const std::string& t = vocab.texts[i];
    if (IsEogText(t)) {
      eog.insert(i);
      control.insert(i);
    }
    if (OneOf(t, {"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"})) {
      result.make_user_defined.push_back(i);
    }
  }
  for (int32_t id : {ids.eos, ids.eot, ids.eom}) {
    if (vocab.Contains(id)) eog.insert(id);
  }

  // gpt-oss / solar-open: "<|end|>" ends a message, not the generation.
  bool has_return = false, has_call = false, has_flush = false;
  int32_t end_id = -1;
  for (int32_t id : eog) {
    const std::string& t = vocab.texts[id];
    if (t == "<|return|>") has_return = true;
    if (t == "<|call|>" || t == "<|calls|>") has_call = true;
    if (t == "<|flush|>") has_flush = true;
    if (t == "<|end|>") end_id = id;
  }
  if (end_id >= 0 && ((has_return && has_call) || (has_call && has_flush))) {
    eog.erase(end_id);
    control.erase(end_id);
    result.make_user_defined.push_back(end_id);
  }
  // Gemma 4 and PLaMo use "</s>" as an ordinary token.
  bool has_normal_s_marker = false;
  int32_t s_id = -1;
  for (int32_t id : eog) {
    const std::string& t = vocab.texts[id];
    if (t == "<|tool_response>" || t == "<|plamo:eos|>") has_normal_s_marker = true;
    if (t == "</s>") s_id = id;
  }
  if (has_normal_s_marker && s_id >= 0) {
    eog.erase(s_id);
    control.erase(s_id);
    result.make_normal.push_back(s_id);
  }

  result.eog_ids.assign(eog.begin(), eog.end());
  result.make_control.assign(control.begin(), control.end());
  return result;
}

}  // namespace tokenfab
