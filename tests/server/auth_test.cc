// Keys (server/auth.h): what a key file may hold, which "authorization"
// values a set admits, and the errors, which never print a key; reloading a
// changed file (key_reloader.h) and the counts the metrics read.
#include "server/auth.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <string>

#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "prometheus/client_metric.h"
#include "prometheus/metric_family.h"
#include "server/auth_metrics.h"
#include "server/key_reloader.h"

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

class KeyFileTest : public ::testing::Test {
 protected:
  void Write(const std::string& text) { std::ofstream(path_, std::ios::trunc) << text; }
  void TearDown() override { std::remove(path_.c_str()); }
  // One file per test and process: ctest runs the cases side by side.
  const std::string path_ =
      ::testing::TempDir() + "/auth_test_" +
      ::testing::UnitTest::GetInstance()->current_test_info()->name() + "_" +
      std::to_string(getpid()) + ".txt";
};

TEST_F(KeyFileTest, ReloadTakesAChangedFileInEveryCopyAndSkipsAnUnchangedOne) {
  Write("old-key-0123456789\n");
  auto loaded = KeySet::Load(path_, "api-key-file", "TOKENFAB_AUTH_TEST_UNSET");
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const KeySet copy = *loaded;  // as a service holds it
  EXPECT_TRUE(copy.reloadable());
  EXPECT_EQ(copy.source(), "--api-key-file " + path_);
  EXPECT_EQ(loaded->Reload().value_or(true), false) << "the file did not change";

  Write("new-key-0123456789\nold-key-0123456789\n");
  EXPECT_EQ(loaded->Reload().value_or(false), true);
  EXPECT_EQ(copy.first(), "new-key-0123456789");
  EXPECT_TRUE(copy.Admits("Bearer old-key-0123456789"));
  Write("new-key-0123456789\n");
  EXPECT_EQ(copy.Reload().value_or(false), true);
  EXPECT_FALSE(loaded->Admits("Bearer old-key-0123456789"));
  EXPECT_TRUE(loaded->Admits("Bearer new-key-0123456789"));
  EXPECT_EQ(copy.stats().reloads, 2);
  EXPECT_EQ(copy.stats().keys, 1);
}

TEST_F(KeyFileTest, ABadOrMissingFileKeepsTheOldKeysAndIsReportedOnce) {
  Write("good-key-0123456789\n");
  auto keys = KeySet::Load(path_, "cluster-key-file", "TOKENFAB_AUTH_TEST_UNSET");
  ASSERT_TRUE(keys.ok()) << keys.status();
  for (const std::string bad : {"", "# emptied while editing\n", "has a space\n"}) {
    Write(bad);
    absl::StatusOr<bool> refused = keys->Reload();
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument) << "'" << bad << "'";
    EXPECT_NE(refused.status().message().find("--cluster-key-file " + path_),
              std::string_view::npos)
        << refused.status();
    EXPECT_EQ(keys->Reload().value_or(true), false) << "the same bad text is reported again";
    EXPECT_TRUE(keys->Admits("Bearer good-key-0123456789")) << "'" << bad << "'";
    EXPECT_FALSE(keys->open());
    EXPECT_TRUE(keys->stats().file_refused);
  }
  std::remove(path_.c_str());
  EXPECT_FALSE(keys->Reload().ok()) << "a vanished file";
  EXPECT_EQ(keys->Reload().value_or(true), false);
  EXPECT_EQ(keys->first(), "good-key-0123456789");
  // Neither a huge file nor a FIFO (whose open would wait for a writer) is read.
  Write(std::string(3 << 20, 'k'));
  absl::StatusOr<bool> huge = keys->Reload();
  EXPECT_NE(huge.status().message().find("too large"), std::string_view::npos) << huge.status();
  std::remove(path_.c_str());
  ASSERT_EQ(mkfifo(path_.c_str(), 0600), 0);
  EXPECT_FALSE(keys->Reload().ok()) << "a FIFO";
  std::remove(path_.c_str());
  Write("good-key-0123456789\n");
  EXPECT_EQ(keys->Reload().value_or(true), false) << "back to the keys in force";
  EXPECT_EQ(keys->stats().reload_errors, 6);
  EXPECT_FALSE(keys->stats().file_refused);
  EXPECT_EQ(keys->stats().reloads, 0);
}

TEST(KeySetTest, OnlyAFileIsReloadable) {
  setenv("TOKENFAB_AUTH_TEST_KEY", "env-key-0123456789", 1);
  auto from_env = KeySet::Load("", "api-key-file", "TOKENFAB_AUTH_TEST_KEY");
  unsetenv("TOKENFAB_AUTH_TEST_KEY");
  ASSERT_TRUE(from_env.ok()) << from_env.status();
  EXPECT_FALSE(from_env->reloadable());
  EXPECT_EQ(from_env->source(), "$TOKENFAB_AUTH_TEST_KEY");
  EXPECT_EQ(from_env->Reload().value_or(true), false);
  EXPECT_FALSE(KeySet::Random().reloadable());
  EXPECT_FALSE(KeySet().reloadable());
  EXPECT_EQ(KeySet().Reload().value_or(true), false);
}

TEST(KeySetTest, CheckCountsMissingAndInvalidKeysButNotAdmittedOnes) {
  auto keys = KeySet::Parse(kKey, "f");
  ASSERT_TRUE(keys.ok()) << keys.status();
  EXPECT_EQ(keys->Check("Bearer sk-0123456789abcdef"), KeyCheck::kAdmitted);
  EXPECT_EQ(keys->Check(""), KeyCheck::kMissing);
  EXPECT_EQ(keys->Check("  "), KeyCheck::kMissing);
  EXPECT_EQ(keys->Check("Bearer wrong"), KeyCheck::kInvalid);
  EXPECT_EQ(keys->Check("sk-0123456789abcdef"), KeyCheck::kInvalid);
  const KeyStats s = keys->stats();
  EXPECT_EQ(s.refused_missing, 2);
  EXPECT_EQ(s.refused_invalid, 2);
  KeySet open;
  EXPECT_EQ(open.Check(""), KeyCheck::kAdmitted);
  EXPECT_EQ(open.stats().refused_missing, 0);
}

TEST(AuthMetricsTest, EverySecretHasEverySampleFromTheStart) {
  auto api = KeySet::Parse("a-key-0123456789\nb-key-0123456789", "f");
  ASSERT_TRUE(api.ok()) << api.status();
  api->Check("Bearer nope");
  AuthMetrics metrics({{"api_key", *api}, {"cluster_key", KeySet()}});
  std::map<std::string, double> seen;
  for (const prometheus::MetricFamily& f : metrics.Collect()) {
    for (const prometheus::ClientMetric& m : f.metric) {
      std::string name = f.name;
      for (const auto& l : m.label) name += "," + l.name + "=" + l.value;
      seen[name] = f.type == prometheus::MetricType::Counter ? m.counter.value : m.gauge.value;
    }
  }
  EXPECT_EQ(seen.size(), 12u);
  EXPECT_EQ(seen["tokenfab_auth_key_file_refused,secret=api_key"], 0);
  EXPECT_EQ(seen["tokenfab_auth_keys,secret=api_key"], 2);
  EXPECT_EQ(seen["tokenfab_auth_keys,secret=cluster_key"], 0);
  EXPECT_EQ(seen["tokenfab_auth_refusals_total,secret=api_key,reason=invalid"], 1);
  EXPECT_EQ(seen["tokenfab_auth_refusals_total,secret=api_key,reason=missing"], 0);
  EXPECT_EQ(seen.count("tokenfab_auth_key_reloads_total,secret=cluster_key,result=error"), 1u);
}

TEST(AuthMetricsTest, AWorkersLabelsGoOnEverySample) {
  AuthMetrics metrics({{"cluster_key", KeySet::Random()}}, {{"backend", "sim"}});
  int samples = 0;
  for (const prometheus::MetricFamily& f : metrics.Collect()) {
    for (const prometheus::ClientMetric& m : f.metric) {
      ++samples;
      ASSERT_FALSE(m.label.empty()) << f.name;
      EXPECT_EQ(m.label[0].name + "=" + m.label[0].value, "backend=sim") << f.name;
    }
  }
  EXPECT_EQ(samples, 6);
}

TEST_F(KeyFileTest, TheReloaderPicksUpAChangedFileWithoutASignal) {
  Write("first-key-0123456789\n");
  auto keys = KeySet::Load(path_, "api-key-file", "TOKENFAB_AUTH_TEST_UNSET");
  ASSERT_TRUE(keys.ok()) << keys.status();
  KeyReloader reloader("auth_test", {*keys, KeySet()}, absl::Milliseconds(20));
  Write("second-key-0123456789\n");
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (keys->first() != "second-key-0123456789" && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_EQ(keys->first(), "second-key-0123456789");
}

TEST_F(KeyFileTest, ReloadNowTakesTheFileBeforeItReturns) {
  Write("first-key-0123456789\n");
  auto keys = KeySet::Load(path_, "api-key-file", "TOKENFAB_AUTH_TEST_UNSET");
  ASSERT_TRUE(keys.ok()) << keys.status();
  KeyReloader reloader("auth_test", {*keys}, absl::Hours(1));  // the poll never comes
  Write("second-key-0123456789\n");
  reloader.ReloadNow();
  EXPECT_EQ(keys->first(), "second-key-0123456789");
}

TEST_F(KeyFileTest, APollTakesAChangeOnlyOnceTwoReadsAgree) {
  Write("old-key-0123456789\n");
  auto keys = KeySet::Load(path_, "cluster-key-file", "TOKENFAB_AUTH_TEST_UNSET");
  ASSERT_TRUE(keys.ok()) << keys.status();
  // Caught while written in place: a cut-off key is a valid file, and must not be taken.
  Write("new-key-01");
  EXPECT_EQ(keys->Reload(ReloadWhen::kSettled).value_or(true), false);
  Write("new-key-0123456789\n");
  EXPECT_EQ(keys->Reload(ReloadWhen::kSettled).value_or(true), false) << "it changed again";
  EXPECT_EQ(keys->first(), "old-key-0123456789");
  EXPECT_EQ(keys->Reload(ReloadWhen::kSettled).value_or(false), true) << "two reads agree";
  EXPECT_EQ(keys->first(), "new-key-0123456789");
  // An emptied file that stays empty is refused once; the gauge holds while it is.
  Write("");
  EXPECT_EQ(keys->Reload(ReloadWhen::kSettled).value_or(true), false);
  EXPECT_FALSE(keys->Reload(ReloadWhen::kSettled).ok());
  EXPECT_EQ(keys->Reload(ReloadWhen::kSettled).value_or(true), false) << "reported once";
  EXPECT_TRUE(keys->stats().file_refused);
  EXPECT_EQ(keys->stats().reload_errors, 1);
  // Back to the keys in force: nothing to take, and nothing refused any more.
  Write("new-key-0123456789\n");
  EXPECT_EQ(keys->Reload(ReloadWhen::kSettled).value_or(true), false);
  EXPECT_FALSE(keys->stats().file_refused);
  EXPECT_EQ(keys->stats().reloads, 1);
}

}  // namespace
}  // namespace tokenfab
