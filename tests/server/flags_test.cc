#include "server/cli/flags.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tokenfab {
namespace {

using ::testing::HasSubstr;

struct Options {
  std::string model;
  int32_t n = 5;
  float t = 0.5f;
  bool flag = false;
  std::optional<uint64_t> seed;
};

FlagSet MakeFlags(Options* o) {
  FlagSet f("test", "A test command.");
  f.AddString("model", &o->model, "model path", /*required=*/true);
  f.AddInt("n", &o->n, "count");
  f.AddFloat("t", &o->t, "temperature");
  f.AddBool("flag", &o->flag, "a switch");
  f.AddOptionalUint64("seed", &o->seed, "seed");
  return f;
}

TEST(FlagSetTest, ParsesBothFormsAndBareBooleans) {
  Options o;
  FlagSet f = MakeFlags(&o);
  ASSERT_TRUE(f.Parse({"--model", "m.gguf", "--n=7", "--t", "0.25", "--flag", "--seed=42"}).ok());
  EXPECT_EQ(o.model, "m.gguf");
  EXPECT_EQ(o.n, 7);
  EXPECT_FLOAT_EQ(o.t, 0.25f);
  EXPECT_TRUE(o.flag);
  EXPECT_EQ(o.seed, 42u);
}

TEST(FlagSetTest, ErrorsAreOneLineAndNameTheFlag) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--model", "m", "--bogus", "1"}, "unknown flag --bogus"},
      {{"--model", "m", "--n", "seven"}, "--n expects an integer, got 'seven'"},
      {{"--model", "m", "--t", "nan"}, "--t expects a number"},
      {{"--model", "m", "--seed", "-1"}, "--seed expects a non-negative integer"},
      {{"--model"}, "--model needs a value"},
      {{"--n", "3"}, "--model is required"},
      {{"--model", "m", "stray"}, "unexpected argument 'stray'"},
      {{"--model", "m", "--flag=maybe"}, "--flag expects true or false"},
  };
  for (const auto& [args, expected] : cases) {
    Options o;
    FlagSet f = MakeFlags(&o);
    absl::Status s = f.Parse(args);
    ASSERT_FALSE(s.ok()) << expected;
    EXPECT_THAT(std::string(s.message()), HasSubstr(expected));
    EXPECT_EQ(std::string(s.message()).find('\n'), std::string::npos);
  }
}

TEST(FlagSetTest, HelpListsEveryFlag) {
  Options o;
  FlagSet f = MakeFlags(&o);
  ASSERT_TRUE(f.Parse({"--help"}).ok());
  EXPECT_TRUE(f.help_requested());
  const std::string usage = f.Usage();
  for (const char* name : {"--model", "--n", "--t", "--flag", "--seed"}) {
    EXPECT_THAT(usage, HasSubstr(name));
  }
  EXPECT_THAT(usage, HasSubstr("(required)"));
}

}  // namespace
}  // namespace tokenfab
