// Python `str` semantics over UTF-8 bytes, for the chat template interpreter.
//
// Templates index, slice, strip, split and case-map strings the way Python
// does: by code point, with Python's notion of whitespace. Strings stay UTF-8
// in the interpreter; these helpers decode where code points matter. Bytes
// that are not valid UTF-8 decode to U+DC80+byte (Python's surrogateescape)
// and encode back to the same byte, so no input byte is lost or altered.
// Case mapping covers ASCII, Latin-1, Latin Extended-A and Additional, Greek,
// Cyrillic, Armenian and fullwidth Latin; other scripts are left unchanged.
// Pure functions; any thread.
#ifndef TOKENFAB_WORKER_CHAT_JINJA_TEXT_H_
#define TOKENFAB_WORKER_CHAT_JINJA_TEXT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tokenfab::jinja {

std::u32string DecodeUtf8(std::string_view s);
std::string EncodeUtf8(std::u32string_view s);
void AppendUtf8(char32_t c, std::string* out);
// Number of code points (Python len()).
int64_t CodePointCount(std::string_view s);

// str.isspace() for one code point.
bool IsPySpace(char32_t c);
// str.isprintable() for one code point (approximate outside the BMP's common
// blocks: controls, separators and format characters are non-printable).
bool IsPyPrintable(char32_t c);
bool IsPyCased(char32_t c);
// str.isalpha() / str.isdigit() for one code point. Exact for Latin, Greek and
// Cyrillic; elsewhere letters are approximated as printable code points
// outside the punctuation, symbol and emoji blocks.
bool IsPyAlpha(char32_t c);
bool IsPyDigit(char32_t c);
bool IsPyUpper(char32_t c);
bool IsPyLower(char32_t c);

// Whole-string case operations (str.upper, str.lower, str.title,
// str.capitalize, str.swapcase).
std::string PyUpper(std::string_view s);
std::string PyLower(std::string_view s);
std::string PyTitle(std::string_view s);
std::string PyCapitalize(std::string_view s);
std::string PySwapcase(std::string_view s);

// str.strip / lstrip / rstrip; `chars` absent means whitespace.
std::string PyStrip(std::string_view s, const std::optional<std::string>& chars, bool left,
                    bool right);
// str.split(None, maxsplit) and str.split(sep, maxsplit); maxsplit < 0: no limit.
// `sep` must be non-empty (the caller reports Python's ValueError).
std::vector<std::string> PySplitWhitespace(std::string_view s, int64_t maxsplit);
std::vector<std::string> PySplit(std::string_view s, std::string_view sep, int64_t maxsplit);
std::vector<std::string> PyRSplitWhitespace(std::string_view s, int64_t maxsplit);
std::vector<std::string> PyRSplit(std::string_view s, std::string_view sep, int64_t maxsplit);
// str.splitlines(keepends).
std::vector<std::string> PySplitLines(std::string_view s, bool keepends);
// str.replace(old, new, count); count < 0: all. An empty `old` inserts `new`
// between code points, as Python does.
std::string PyReplace(std::string_view s, std::string_view old_sub, std::string_view new_sub,
                      int64_t count);
// str.count(sub) (non-overlapping).
int64_t PyCount(std::string_view s, std::string_view sub);
// str.center / ljust / rjust (`how` names which) with a one-code-point fill.
std::string PyPad(std::string_view s, int64_t width, std::string_view fill, std::string_view how);
// repr() of a str: quotes chosen and characters escaped as Python does.
std::string PyStringRepr(std::string_view s);

// Code-point slicing with Python's clamping rules, on already-decoded text.
// `start`/`stop` are absent for an omitted bound; `step` is non-zero.
std::u32string SliceCodePoints(const std::u32string& s, std::optional<int64_t> start,
                               std::optional<int64_t> stop, int64_t step);

// Python slice index normalization (slice.indices): fills the indices that a
// slice of a sequence of `length` selects, in order.
std::vector<int64_t> SliceIndices(int64_t length, std::optional<int64_t> start,
                                  std::optional<int64_t> stop, int64_t step);

}  // namespace tokenfab::jinja

#endif  // TOKENFAB_WORKER_CHAT_JINJA_TEXT_H_
