#include "worker/tokenizer/utf8.h"

#include <string>

#include "gtest/gtest.h"
#include "worker/tokenizer/byte_unicode.h"

namespace tokenfab {
namespace {

const std::string kFffd = "\xEF\xBF\xBD";

TEST(Utf8Test, LossyReplacesMaximalSubparts) {
  std::string out;
  // E4 BD is a truncated 3-byte sequence (one U+FFFD), C3 ( has a bad second byte.
  AppendUtf8Lossy(
      "a\xE4\xBD"
      "b\xC3(\xFF",
      /*final=*/true, &out);
  EXPECT_EQ(out, "a" + kFffd + "b" + kFffd + "(" + kFffd);
  out.clear();
  // Surrogates and overlong forms are ill-formed byte by byte.
  AppendUtf8Lossy("\xED\xA0\x80\xC0\xAF", true, &out);
  EXPECT_EQ(out, kFffd + kFffd + kFffd + kFffd + kFffd);
}

TEST(Utf8Test, LossyHoldsBackAnIncompleteTailUntilFinal) {
  std::string out;
  EXPECT_EQ(AppendUtf8Lossy("ok\xF0\x9F\xA6", /*final=*/false, &out), 2u);
  EXPECT_EQ(out, "ok");
  out.clear();
  EXPECT_EQ(AppendUtf8Lossy("\xF0\x9F\xA6", /*final=*/true, &out), 3u);
  EXPECT_EQ(out, kFffd);
}

TEST(Utf8Test, LlamaStyleSanitizeReplacesEachBadLeadByte) {
  // As llama.cpp's unicode_cpts_from_utf8: E4 BD at the end is two U+FFFD.
  EXPECT_EQ(SanitizeUtf8LlamaStyle("x\xE4\xBD"), "x" + kFffd + kFffd);
  EXPECT_EQ(SanitizeUtf8LlamaStyle("\xC3("), kFffd + "(");
  EXPECT_EQ(SanitizeUtf8LlamaStyle("caf\xC3\xA9"), "caf\xC3\xA9");
  // Overlong forms are re-encoded, surrogates kept, beyond U+10FFFF replaced.
  EXPECT_EQ(SanitizeUtf8LlamaStyle("\xC0\xAF"), "/");
  EXPECT_EQ(SanitizeUtf8LlamaStyle("\xED\xA0\x80x"), "\xED\xA0\x80x");
  EXPECT_EQ(SanitizeUtf8LlamaStyle("\xF4\x90\x80\x80"), kFffd);
  EXPECT_EQ(SanitizeUtf8LlamaStyle("\xF8\x88"), kFffd + kFffd);
}

TEST(ByteUnicodeTest, MappingIsGpt2sAndReversible) {
  EXPECT_EQ(ByteToCodepoint(' '), 0x120u);   // "Ġ"
  EXPECT_EQ(ByteToCodepoint('\n'), 0x10Au);  // "Ċ"
  EXPECT_EQ(ByteToCodepoint('A'), static_cast<uint32_t>('A'));
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  EXPECT_EQ(ByteLevelTextToBytes(BytesToByteLevelText(all)), all);
}

}  // namespace
}  // namespace tokenfab
