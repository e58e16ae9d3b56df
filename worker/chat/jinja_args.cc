#include "worker/chat/jinja_args.h"

#include "absl/status/status.h"
#include "common/strings.h"

namespace tokenfab::jinja {

absl::StatusOr<BoundArgs> BindArgs(const Signature& signature, const CallArgs& args) {
  std::vector<std::string_view> params(signature.params);
  BoundArgs bound;
  bound.values.resize(params.size());
  for (size_t i = 0; i < args.positional.size(); ++i) {
    if (i < params.size()) {
      bound.values[i] = args.positional[i];
    } else if (signature.allow_rest) {
      bound.rest.push_back(args.positional[i]);
    } else {
      return absl::InvalidArgumentError(StrCat(signature.function, "() takes at most ",
                                               params.size(), " argument(s) (",
                                               args.positional.size(), " given)"));
    }
  }
  for (const auto& [name, value] : args.keyword) {
    bool found = false;
    for (size_t i = 0; i < params.size(); ++i) {
      if (params[i] != name) continue;
      if (bound.values[i]) {
        return absl::InvalidArgumentError(
            StrCat(signature.function, "() got multiple values for argument '", name, "'"));
      }
      bound.values[i] = value;
      found = true;
      break;
    }
    if (found) continue;
    if (!signature.allow_rest_keywords) {
      return absl::InvalidArgumentError(
          StrCat(signature.function, "() got an unexpected keyword argument '", name, "'"));
    }
    bound.rest_keywords.emplace_back(name, value);
  }
  for (size_t i = 0; i < signature.required && i < params.size(); ++i) {
    if (!bound.values[i]) {
      return absl::InvalidArgumentError(
          StrCat(signature.function, "() missing required argument '", params[i], "'"));
    }
  }
  return bound;
}

}  // namespace tokenfab::jinja
