#include "worker/tokenizer/normalizer.h"

namespace tokenfab {

std::string Normalizer::Apply(std::string_view text) const {
  std::string s(text);
  for (const Step& step : steps_) {
    if (const auto* prepend = std::get_if<Prepend>(&step)) {
      if (!s.empty()) s.insert(0, prepend->text);
    } else if (const auto* replace = std::get_if<Replace>(&step)) {
      std::string out;
      out.reserve(s.size() + 16);
      size_t last = 0;
      for (const auto& [b, e] : replace->pattern->FindAll(s)) {
        out.append(s, last, b - last);
        out += replace->content;
        last = e;
      }
      out.append(s, last, std::string::npos);
      s = std::move(out);
    }
  }
  return s;
}

}  // namespace tokenfab
