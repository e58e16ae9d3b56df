// Keys (server/auth.h): what a key file may hold, which "authorization"
// values a set admits, and the errors, which never print a key.
#include "server/auth.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "gtest/gtest.h"

namespace tokenfab {
namespace {

constexpr char kKey[] = "sk-0123456789abcdef";

TEST(KeySetTest, ParsesOneKeyALineSkippingCommentsBlanksAndSpaces) {
  auto keys =
      KeySet::Parse("# the fleet's keys\n\n  sk-0123456789abcdef \r\n\tsecond-key\n# end", "f");
  ASSERT_TRUE(keys.ok()) << keys.status();
  EXPECT_FALSE(keys->open());
  EXPECT_EQ(keys->first(), kKey);
  EXPECT_TRUE(keys->Admits("Bearer sk-0123456789abcdef"));
  EXPECT_TRUE(keys->Admits("Bearer second-key"));
  EXPECT_FALSE(keys->Admits("Bearer # the fleet's keys"));
}

TEST(KeySetTest, RefusesFilesWithoutKeysOrWithBadOnesNamingTheLineNotTheKey) {
  for (const char* text : {"", "\n\n", "# only a comment\n"}) {
    auto keys = KeySet::Parse(text, "keys.txt");
    EXPECT_EQ(keys.status().code(), absl::StatusCode::kInvalidArgument) << "'" << text << "'";
    EXPECT_NE(keys.status().message().find("keys.txt: no key"), std::string_view::npos)
        << keys.status();
  }
  auto inner_space = KeySet::Parse("good-key\nsecret part\n", "keys.txt");
  EXPECT_EQ(inner_space.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(inner_space.status().message().find("keys.txt line 2"), std::string_view::npos)
      << inner_space.status();
  EXPECT_EQ(inner_space.status().message().find("secret"), std::string_view::npos)
      << "the error shows the key: " << inner_space.status();
  auto control = KeySet::Parse(std::string("ok\nbad\x01key\n"), "keys.txt");
  EXPECT_NE(control.status().message().find("line 2"), std::string_view::npos) << control.status();
  auto utf8 = KeySet::Parse("cl\xc3\xa9", "keys.txt");
  EXPECT_EQ(utf8.status().code(), absl::StatusCode::kInvalidArgument);
  auto longest = KeySet::Parse(std::string(1024, 'k'), "keys.txt");
  EXPECT_TRUE(longest.ok()) << longest.status();
  auto too_long = KeySet::Parse(std::string(1025, 'k'), "keys.txt");
  EXPECT_EQ(too_long.status().code(), absl::StatusCode::kInvalidArgument);
  auto huge = KeySet::Parse(std::string((1 << 20) + 1, 'k'), "keys.txt");
  EXPECT_EQ(huge.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(KeySetTest, AdmitsOnlyTheWholeKeyAfterABearerScheme) {
  auto keys = KeySet::Parse(kKey, "f");
  ASSERT_TRUE(keys.ok()) << keys.status();
  EXPECT_TRUE(keys->Admits("Bearer sk-0123456789abcdef"));
  EXPECT_TRUE(keys->Admits("bearer sk-0123456789abcdef"));    // the scheme is case-insensitive
  EXPECT_TRUE(keys->Admits("BEARER  sk-0123456789abcdef "));  // and spaces around the key go
  for (const char* bad :
       {"", "Bearer", "Bearer ", "sk-0123456789abcdef", "Basic sk-0123456789abcdef",
        "Bearer sk-0123456789abcde", "Bearer sk-0123456789abcdefg", "Bearer SK-0123456789ABCDEF",
        "Bearersk-0123456789abcdef", "Bearer sk-0123456789abcdef extra"}) {
    EXPECT_FALSE(keys->Admits(bad)) << "'" << bad << "'";
  }
}

TEST(KeySetTest, AnEmptySetAdmitsEveryoneAndSendsNothing) {
  KeySet open;
  EXPECT_TRUE(open.open());
  EXPECT_TRUE(open.Admits(""));
  EXPECT_TRUE(open.Admits("Bearer anything"));
  EXPECT_EQ(open.first(), "");
}

TEST(KeySetTest, RandomKeysAreFreshHex) {
  const KeySet a = KeySet::Random(), b = KeySet::Random();
  EXPECT_EQ(a.first().size(), 64u);
  EXPECT_EQ(a.first().find_first_not_of("0123456789abcdef"), std::string::npos) << a.first();
  EXPECT_NE(a.first(), b.first());
  EXPECT_TRUE(a.Admits("Bearer " + a.first()));
  EXPECT_FALSE(a.Admits("Bearer " + b.first()));
}

TEST(KeySetTest, LoadsTheFileElseTheEnvironmentElseNothing) {
  const std::string path = ::testing::TempDir() + "/auth_test_keys.txt";
  std::ofstream(path) << "file-key-0123456789\n";
  setenv("TOKENFAB_AUTH_TEST_KEY", "env-key-0123456789", 1);
  auto from_file = KeySet::Load(path, "api-key-file", "TOKENFAB_AUTH_TEST_KEY");
  ASSERT_TRUE(from_file.ok()) << from_file.status();
  EXPECT_EQ(from_file->first(), "file-key-0123456789");
  auto from_env = KeySet::Load("", "api-key-file", "TOKENFAB_AUTH_TEST_KEY");
  ASSERT_TRUE(from_env.ok()) << from_env.status();
  EXPECT_EQ(from_env->first(), "env-key-0123456789");
  unsetenv("TOKENFAB_AUTH_TEST_KEY");
  auto none = KeySet::Load("", "api-key-file", "TOKENFAB_AUTH_TEST_KEY");
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_TRUE(none->open());
  auto missing = KeySet::Load(path + ".missing", "api-key-file", "TOKENFAB_AUTH_TEST_KEY");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(missing.status().message().find("--api-key-file"), std::string_view::npos)
      << missing.status();
  std::remove(path.c_str());
}

}  // namespace
}  // namespace tokenfab
