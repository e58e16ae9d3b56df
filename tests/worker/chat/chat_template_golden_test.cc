// Byte-for-byte comparison with jinja2, as Hugging Face transformers runs it,
// on real chat templates and on one small template per construct. The
// goldens come from tools/make_chat_golden.py; the real templates are read
// from the cache scripts/setup fills (they are other projects' files).
#include <chrono>
#include <fstream>
#include <sstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/test_paths.h"
#include "worker/chat/chat_template.h"
#include "worker/model/gguf_file.h"

namespace tokenfab {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::ordered_json;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Json ReadGolden(const std::string& name) {
  std::string path = testing::GoldenPath("chat/" + name);
  if (!testing::RequireFile(path)) return Json();
  return Json::parse(ReadFile(path));
}

ChatTemplate::Options FixedClock(int64_t epoch_seconds) {
  ChatTemplate::Options options;
  options.now = [epoch_seconds] {
    return std::chrono::system_clock::time_point(std::chrono::seconds(epoch_seconds));
  };
  return options;
}

// Renders every case of a real-template golden and compares; returns how many matched.
int CheckTemplateGolden(const std::string& template_text, const Json& golden) {
  int matched = 0;
  for (const Json& c : golden["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    auto tmpl =
        ChatTemplate::Create(template_text, FixedClock(c["now_epoch_seconds"].get<int64_t>()));
    EXPECT_TRUE(tmpl.ok()) << tmpl.status();
    if (!tmpl.ok()) continue;
    ChatRenderOptions options;
    options.add_generation_prompt = c["add_generation_prompt"].get<bool>();
    options.bos_token = c["bos_token"].get<std::string>();
    options.eos_token = c["eos_token"].get<std::string>();
    options.extra = c["extra"];
    absl::StatusOr<std::string> out = RenderChat(**tmpl, c["messages"], options);
    if (c.contains("expected")) {
      EXPECT_TRUE(out.ok()) << out.status();
      if (!out.ok()) continue;
      EXPECT_EQ(*out, c["expected"].get<std::string>());
      if (*out == c["expected"].get<std::string>()) ++matched;
    } else {
      EXPECT_FALSE(out.ok()) << "expected an error, rendered: " << *out;
      if (out.ok()) continue;
      std::string error = c["error"].get<std::string>();
      if (c["error_type"] == "TemplateError") {
        // raise_exception(): the template's message, untouched.
        EXPECT_EQ(out.status().message(), error);
        EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
      } else {
        EXPECT_THAT(std::string(out.status().message()), HasSubstr(error));
      }
      if (std::string(out.status().message()).find(error) != std::string::npos) ++matched;
    }
  }
  return matched;
}

void CheckCachedTemplate(const std::string& golden_name, const std::string& template_file) {
  Json golden = ReadGolden(golden_name);
  if (golden.is_null()) return;
  std::string path = testing::LlamaCppTestData("templates/" + template_file);
  if (!testing::RequireFile(path)) return;
  int matched = CheckTemplateGolden(ReadFile(path), golden);
  EXPECT_EQ(matched, static_cast<int>(golden["cases"].size()));
  EXPECT_GE(matched, 8);
}

TEST(ChatTemplateGoldenTest, SmolLM2FromGguf) {
  Json golden = ReadGolden("smollm2-135m-instruct.json");
  if (golden.is_null()) return;
  std::string model = testing::DefaultModelPath();
  if (!testing::RequireFile(model)) return;
  auto gguf = GgufFile::Open(model);
  ASSERT_TRUE(gguf.ok()) << gguf.status();
  auto text = (*gguf)->GetString("tokenizer.chat_template");
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_THAT(*text, HasSubstr("You are a helpful AI assistant named SmolLM"));
  int matched = CheckTemplateGolden(*text, golden);
  EXPECT_EQ(matched, static_cast<int>(golden["cases"].size()));
  EXPECT_GE(matched, 8);
}

TEST(ChatTemplateGoldenTest, Qwen25) {
  CheckCachedTemplate("Qwen-Qwen2.5-7B-Instruct.json", "Qwen-Qwen2.5-7B-Instruct.jinja");
}

TEST(ChatTemplateGoldenTest, Llama31) {
  CheckCachedTemplate("meta-llama-Llama-3.1-8B-Instruct.json",
                      "meta-llama-Llama-3.1-8B-Instruct.jinja");
}

TEST(ChatTemplateGoldenTest, Llama32) {
  CheckCachedTemplate("meta-llama-Llama-3.2-3B-Instruct.json",
                      "meta-llama-Llama-3.2-3B-Instruct.jinja");
}

TEST(ChatTemplateGoldenTest, MistralNemo) {
  CheckCachedTemplate("mistralai-Mistral-Nemo-Instruct-2407.json",
                      "mistralai-Mistral-Nemo-Instruct-2407.jinja");
}

// One small template per construct, all against the same context.
TEST(ChatTemplateGoldenTest, JinjaConstructs) {
  Json golden = ReadGolden("jinja_constructs.json");
  if (golden.is_null()) return;
  int matched = 0;
  for (const Json& c : golden["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>() + ": " + c["template"].get<std::string>());
    auto tmpl = ChatTemplate::Create(c["template"].get<std::string>(),
                                     FixedClock(golden["now_epoch_seconds"].get<int64_t>()));
    ASSERT_TRUE(tmpl.ok()) << tmpl.status();
    absl::StatusOr<std::string> out = (*tmpl)->Render(golden["context"]);
    if (c.contains("expected")) {
      EXPECT_TRUE(out.ok()) << out.status();
      if (out.ok() && *out == c["expected"].get<std::string>()) {
        ++matched;
      } else if (out.ok()) {
        EXPECT_EQ(*out, c["expected"].get<std::string>());
      }
    } else {
      ASSERT_FALSE(out.ok()) << "expected an error, rendered: " << *out;
      std::string error = c["error"].get<std::string>();
      EXPECT_THAT(std::string(out.status().message()), HasSubstr(error));
      if (std::string(out.status().message()).find(error) != std::string::npos) ++matched;
    }
  }
  EXPECT_EQ(matched, static_cast<int>(golden["cases"].size()));
}

}  // namespace
}  // namespace tokenfab
