// String building for error messages and output.
//
// Debian 12's Abseil is built with its own absl::string_view (not
// std::string_view), so absl::StrCat rejects std::string_view arguments.
// tokenfab::StrCat accepts everything absl::StrCat does plus std::string_view;
// use it throughout the project.
#ifndef TOKENFAB_COMMON_STRINGS_H_
#define TOKENFAB_COMMON_STRINGS_H_

#include <cstdio>
#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace tokenfab {
namespace strings_internal {

inline absl::string_view ToAlphaNum(std::string_view s) { return {s.data(), s.size()}; }
template <typename T>
const T& ToAlphaNum(const T& v) {
  return v;
}

}  // namespace strings_internal

template <typename... Args>
std::string StrCat(const Args&... args) {
  return absl::StrCat(strings_internal::ToAlphaNum(args)...);
}

template <typename... Args>
void StrAppend(std::string* out, const Args&... args) {
  out->append(StrCat(args...));
}

// `v` with exactly `digits` digits after the point ("%.*f"), for reports.
inline std::string Fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

}  // namespace tokenfab

#endif  // TOKENFAB_COMMON_STRINGS_H_
