// Tokenizer for chat templates, matching jinja2's lexer as Hugging Face
// configures it (trim_blocks=True, lstrip_blocks=True, keep_trailing_newline
// False): newline normalization, the `-`/`+` whitespace-control signs, block
// trimming, comments and {% raw %} are resolved here, so the parser sees only
// literal text and tag contents. Errors name the line and column.
#ifndef TOKENFAB_WORKER_CHAT_JINJA_LEXER_H_
#define TOKENFAB_WORKER_CHAT_JINJA_LEXER_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace tokenfab::jinja {

// 1-based; columns count code points.
struct SourceLocation {
  int line = 1;
  int column = 1;
};

enum class TokenKind {
  kData,           // literal template text, already whitespace-controlled
  kVariableBegin,  // {{
  kVariableEnd,    // }}
  kBlockBegin,     // {%
  kBlockEnd,       // %}
  kName,
  kString,    // text holds the unescaped value
  kInteger,   // int_value
  kFloat,     // float_value
  kOperator,  // text holds the operator, e.g. "//" or "("
  kEof,
};

struct Token {
  TokenKind kind = TokenKind::kEof;
  std::string text;
  int64_t int_value = 0;
  double float_value = 0;
  SourceLocation loc;
};

// "line 3, column 7: <message>"
std::string LocatedMessage(SourceLocation loc, std::string_view message);

// The token stream always ends with one kEof token.
absl::StatusOr<std::vector<Token>> Tokenize(std::string_view source);

}  // namespace tokenfab::jinja

#endif  // TOKENFAB_WORKER_CHAT_JINJA_LEXER_H_
