// Black-box tests of the `tokenfab` binary's command-line contract, which
// other tools depend on: output forms, exit codes and one-line errors.
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "scheduler/profile.h"
#include "tests/support/gguf_builder.h"
#include "tests/support/subprocess.h"
#include "tests/test_paths.h"

namespace tokenfab {
namespace {

using ::testing::HasSubstr;
using testing::ProcessResult;
using testing::RunProcess;
using ::testing::StartsWith;

ProcessResult Tokenfab(std::vector<std::string> args) {
  args.insert(args.begin(), testing::TokenfabBinary());
  return RunProcess(args);
}

std::vector<std::string> Lines(const std::string& s) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < s.size()) {
    size_t end = s.find('\n', start);
    if (end == std::string::npos) end = s.size();
    lines.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

// An error is exactly one line on stderr and a non-zero exit.
void ExpectOneLineError(const ProcessResult& r, const std::string& expected) {
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.exit_code, -1) << "crashed or timed out";
  EXPECT_EQ(Lines(r.err).size(), 1u) << r.err;
  EXPECT_THAT(r.err, HasSubstr(expected));
  EXPECT_TRUE(r.out.empty()) << r.out;
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!testing::RequireFile(testing::DefaultModelPath())) GTEST_SKIP();
    model_ = testing::DefaultModelPath();
  }
  std::string model_;
};

TEST_F(CliTest, TokenizePrintsIdsOnOneLine) {
  // The ids llama.cpp gives (tests/golden/llamacpp/smollm2_greedy.json).
  ProcessResult r = Tokenfab({"tokenize", "--model", model_, "--text", "The capital of France is"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "504 3575 282 4649 314\n");
}

TEST_F(CliTest, GenerateEndsWithTheTokenIdsLine) {
  ProcessResult r = Tokenfab({"generate", "--model", model_, "--prompt", "The capital of France is",
                              "--max-tokens", "5", "--print-token-ids", "--threads", "2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::vector<std::string> lines = Lines(r.out);
  ASSERT_GE(lines.size(), 2u);
  // llama.cpp's greedy continuation starts the same way.
  EXPECT_EQ(lines.back(), "token_ids: 7042 30 198 198 504");
  EXPECT_THAT(r.out, StartsWith(" Paris.\n"));
  EXPECT_THAT(r.err, HasSubstr("generated 5 tokens"));
}

TEST_F(CliTest, ChatUsesTheModelTemplateAndStopsAtEndOfTurn) {
  ProcessResult r =
      Tokenfab({"generate", "--model", model_, "--prompt", "Say hi.", "--chat", "--system",
                "Answer in one short sentence.", "--max-tokens", "60", "--print-token-ids"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("finish: stop"));
  // The last id is the end-of-turn token <|im_end|> (2); its text is not printed.
  EXPECT_THAT(Lines(r.out).back(), ::testing::EndsWith(" 2"));
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("<|im_end|>")));
}

TEST_F(CliTest, SameSeedSameSample) {
  auto run = [&](const std::string& seed) {
    return Tokenfab({"generate", "--model", model_, "--prompt", "Once upon a time", "--max-tokens",
                     "12", "--temperature", "1.0", "--top-p", "0.9", "--seed", seed,
                     "--print-token-ids"});
  };
  ProcessResult a = run("7"), b = run("7"), c = run("8");
  ASSERT_EQ(a.exit_code, 0) << a.err;
  EXPECT_EQ(a.out, b.out);
  EXPECT_NE(Lines(a.out).back(), Lines(c.out).back());
}

TEST_F(CliTest, GeneratesFromAHuggingFaceFolder) {
  ProcessResult r =
      Tokenfab({"generate", "--model", testing::TestDataPath("hf/tiny-llama"), "--prompt",
                "hello world", "--max-tokens", "6", "--ignore-eos", "--print-token-ids"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string last = Lines(r.out).back();
  EXPECT_THAT(last, StartsWith("token_ids: "));
  EXPECT_EQ(std::count(last.begin(), last.end(), ' '), 6);
}

TEST_F(CliTest, BadInputIsAOneLineError) {
  ExpectOneLineError(Tokenfab({"generate", "--model", "/nonexistent/m.gguf", "--prompt", "x"}),
                     "/nonexistent/m.gguf");
  ExpectOneLineError(Tokenfab({"generate", "--prompt", "x"}), "--model is required");
  ExpectOneLineError(Tokenfab({"generate", "--model", model_, "--prompt", "x", "--bogus"}),
                     "unknown flag --bogus");
  ExpectOneLineError(Tokenfab({"tokenize", "--model", model_, "--text", "x", "--prompt", "y"}),
                     "unknown flag --prompt");
  ExpectOneLineError(
      Tokenfab({"generate", "--model", model_, "--prompt", "x", "--max-tokens", "0"}),
      "--max-tokens must be positive");
  ExpectOneLineError(Tokenfab({"frobnicate"}), "unknown command 'frobnicate'");

  // Prompt longer than the context (the tiny model's is 256 tokens).
  std::string long_prompt;
  for (int i = 0; i < 400; ++i) long_prompt += "hello world ";
  ExpectOneLineError(Tokenfab({"generate", "--model", testing::TestDataPath("hf/tiny-llama"),
                               "--prompt", long_prompt}),
                     "context length is 256");

  // A tensor type tokenfab does not run (Q5_K).
  testing::GgufBuilder b;
  b.Header(1, 1).KvStr("general.architecture", "llama").TensorInfo("t", {256}, 13, 0).Pad(32);
  for (int i = 0; i < 176; ++i) b.U8(0);
  const std::string q5k = b.WriteTemp("q5k.gguf");
  ExpectOneLineError(Tokenfab({"generate", "--model", q5k, "--prompt", "x"}),
                     "has type Q5_K (13), which tokenfab does not support");

  // A truncated model file.
  std::ifstream in(model_, std::ios::binary);
  std::string head(4 << 20, '\0');
  in.read(head.data(), head.size());
  const std::string truncated = testing::WriteTempFile("truncated.gguf", head.data(), head.size());
  ExpectOneLineError(Tokenfab({"generate", "--model", truncated, "--prompt", "x"}),
                     "the file may be truncated");
}

// Exit 2 for a bad command line (checked before the model loads), 1 for a
// command that failed.
TEST_F(CliTest, ExitCodesSeparateUsageFromFailure) {
  const std::vector<std::vector<std::string>> usage = {
      {"--max-tokens", "0"},   {"--top-p", "2"},          {"--threads", "0"},
      {"--temperature", "-1"}, {"--kv-cache-type", "f8"}, {"--bogus"},
  };
  for (const auto& extra : usage) {
    std::vector<std::string> args = {"generate", "--model", "/nonexistent.gguf", "--prompt", "x"};
    args.insert(args.end(), extra.begin(), extra.end());
    ProcessResult r = Tokenfab(args);
    EXPECT_EQ(r.exit_code, 2) << extra[0] << ": " << r.err;
    EXPECT_EQ(Lines(r.err).size(), 1u) << r.err;
  }
  EXPECT_EQ(Tokenfab({"generate", "--model", "/nonexistent.gguf", "--prompt", "x"}).exit_code, 1);
}

TEST_F(CliTest, HelpExitsZero) {
  ProcessResult r = Tokenfab({"generate", "--help"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.out, HasSubstr("--print-token-ids"));
  EXPECT_EQ(Tokenfab({}).exit_code, 2);
}

}  // namespace
}  // namespace tokenfab

namespace tokenfab {
namespace {

TEST_F(CliTest, WorkerAndRouterRefuseBadFlagsWithOneLine) {
  ExpectOneLineError(Tokenfab({"worker", "--model", model_}), "--router");
  ExpectOneLineError(Tokenfab({"worker", "--router", "127.0.0.1:1", "--role", "cook"}),
                     "--role must be prefill, decode or both");
  ExpectOneLineError(
      Tokenfab({"worker", "--router", "127.0.0.1:1", "--model", model_, "--device", "gpu0"}),
      "--device must be cpu or cuda:N");
  if (::access("/dev/nvidiactl", F_OK) != 0) {
    // No driver: the CUDA backend (or its module, in a build without nvcc)
    // says why in one line.
    ExpectOneLineError(
        Tokenfab({"worker", "--router", "127.0.0.1:1", "--model", model_, "--device", "cuda:0"}),
        "cuda:");
  }
  ExpectOneLineError(
      Tokenfab({"worker", "--router", "127.0.0.1:1", "--model", model_, "--transport", "nccl"}),
      "--transport nccl moves KV between GPU workers");
  ExpectOneLineError(Tokenfab({"worker", "--router", "127.0.0.1:1", "--model", model_, "--device",
                               "cuda:0", "--transport", "nccl", "--nccl-max-peers", "0"}),
                     "--nccl-max-peers must be 1 to 1024");
  ExpectOneLineError(Tokenfab({"router", "--disagg-threshold", "-1"}),
                     "--disagg-threshold must be between");
  ExpectOneLineError(Tokenfab({"serve", "--workers", "2", "--prefill-workers", "2"}),
                     "--prefill-workers must be between 0 and 1");
}

// `serve --device cuda:N` is one engine on one GPU: the flags are checked
// before the model loads, and without a GPU it says why in one line.
TEST_F(CliTest, ServeOnAGpuRefusesWhatItCannotDoWithOneLine) {
  ExpectOneLineError(Tokenfab({"serve", "--model", model_, "--device", "cuda:x"}),
                     "--device must be cpu or cuda:N");
  ExpectOneLineError(Tokenfab({"serve", "--model", model_, "--device", "cuda:0", "--workers", "2"}),
                     "runs one engine on one GPU");
  ExpectOneLineError(
      Tokenfab({"serve", "--model", model_, "--device", "cuda:0", "--gpu-memory-fraction", "1.5"}),
      "--gpu-memory-fraction must be in (0, 1]");
  if (::access("/dev/nvidiactl", F_OK) != 0) {
    ExpectOneLineError(Tokenfab({"serve", "--model", model_, "--device", "cuda:0", "--grpc-port",
                                 "0", "--http-port", "0", "--metrics-port", "0"}),
                       "cuda:");
  }
}

// `tokenfab profile` measures SmolLM2 on this CPU: a profile the planner
// can read, with figures that behave as compute does.
TEST_F(CliTest, ProfileMeasuresTheModelOnThisMachine) {
  const std::string out = (std::filesystem::temp_directory_path() /
                           ("tokenfab_profile_" + std::to_string(::getpid()) + ".json"))
                              .string();
  ProcessResult r =
      Tokenfab({"profile", "--model", model_, "--out", out, "--threads", "2", "--prefill-lengths",
                "32,256", "--decode-batches", "1,8", "--decode-contexts", "64,256",
                "--decode-steps", "4", "--repeats", "1", "--power-source", "model"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("2 prefill and 4 decode points, power from model"));
  absl::StatusOr<Profile> p = ReadProfile(out);
  std::filesystem::remove(out);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->model, "SmolLM2-135M-Instruct.Q4_1");
  EXPECT_EQ(p->architecture, "llama");
  EXPECT_EQ(p->power_source, "model");
  EXPECT_EQ(p->threads, 2);
  ASSERT_EQ(p->prefill.size(), 2u);
  ASSERT_EQ(p->decode.size(), 4u);
  // Eight times the prompt takes longer; eight sequences per step take longer than one.
  EXPECT_GT(p->prefill[1].seconds, p->prefill[0].seconds);
  EXPECT_GT(p->DecodeStepSeconds(8, 64), p->DecodeStepSeconds(1, 64));
  // The model source: between its idle (10 W) and busy (50 W) figures.
  for (const PrefillPoint& pt : p->prefill)
    EXPECT_THAT(pt.watts, ::testing::AllOf(::testing::Ge(9.9), ::testing::Le(50.1)));
  for (const DecodePoint& pt : p->decode)
    EXPECT_THAT(pt.watts, ::testing::AllOf(::testing::Ge(9.9), ::testing::Le(50.1)));
  EXPECT_NEAR(p->idle_watts, 10.0, 0.5);
}

TEST_F(CliTest, ProfileRefusesBadPointListsWithOneLine) {
  for (const std::vector<std::string>& extra : {std::vector<std::string>{"--decode-batches", "4,2"},
                                                {"--prefill-lengths", "0"},
                                                {"--decode-contexts", "a,b"},
                                                {"--decode-batches", "64"},
                                                {"--device", "cuda:0"}}) {
    std::vector<std::string> args = {"profile", "--model", model_, "--out", "/tmp/unused.json"};
    args.insert(args.end(), extra.begin(), extra.end());
    ProcessResult r = Tokenfab(args);
    EXPECT_NE(r.exit_code, 0) << extra[0];
    EXPECT_NE(r.exit_code, -1) << extra[0];
    EXPECT_EQ(Lines(r.err).size(), 1u) << r.err;
  }
}

// `tokenfab plan` on a profile file: the side-by-side table, JSON, and
// impossible targets refused with a reason and a non-zero exit.
TEST_F(CliTest, PlanPrintsBothDeploymentsOrSaysWhyNot) {
  const std::string path = testing::TestDataPath("profile/paper.json");
  const std::vector<std::string> base = {"plan",  "--profile", path,    "--rate", "4",
                                         "--isl", "256",       "--osl", "100",    "--ttft",
                                         "2s",    "--itl",     "50ms"};
  ProcessResult r = Tokenfab(base);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("disaggregated"));
  EXPECT_THAT(r.out, HasSubstr("prefill: throughput; decode: ITL"));
  std::vector<std::string> json = base;
  json.push_back("--json");
  r = Tokenfab(json);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"prefill_workers\":3"));
  EXPECT_THAT(r.out, HasSubstr("\"decode_workers\":1"));
  std::vector<std::string> tight = base;
  tight[tight.size() - 1] = "5ms";
  ExpectOneLineError(Tokenfab(tight), "no decode batch meets the ITL target 5.0 ms");
  std::vector<std::string> bad = base;
  bad[10] = "soon";
  r = Tokenfab(bad);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("--ttft: 'soon' is not a duration"));
  ExpectOneLineError(Tokenfab({"plan", "--profile", "/nonexistent.json", "--rate", "1", "--isl",
                               "8", "--osl", "8"}),
                     "cannot read profile");
}

}  // namespace
}  // namespace tokenfab
