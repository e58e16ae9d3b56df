// The rapl and model power sources, and how CreatePowerMeter picks one.
// RAPL runs against a powercap tree written to a temporary folder, so the
// counter's wrap-around and bad files are tested on any machine.
#include "worker/power/power_meter.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"
#include "worker/power/model_power_meter.h"
#include "worker/power/rapl_power_meter.h"

namespace tokenfab {
namespace {

namespace fs = std::filesystem;

class FakePowercap {
 public:
  FakePowercap() {
    root_ = fs::temp_directory_path() /
            ("tokenfab_rapl_" + std::to_string(::getpid()) + "_" + std::to_string(counter_++));
    fs::create_directories(root_);
  }
  ~FakePowercap() { fs::remove_all(root_); }
  void Zone(const std::string& dir, const std::string& name, uint64_t energy, uint64_t range) {
    fs::create_directories(root_ / dir);
    Write(dir + "/name", name);
    Write(dir + "/max_energy_range_uj", std::to_string(range));
    Set(dir, energy);
  }
  void Set(const std::string& dir, uint64_t energy) {
    Write(dir + "/energy_uj", std::to_string(energy));
  }
  void Write(const std::string& file, const std::string& text) {
    std::ofstream(root_ / file) << text << "\n";
  }
  std::string root() const { return root_.string(); }

 private:
  static inline int counter_ = 0;
  fs::path root_;
};

TEST(RaplPowerMeterTest, SumsPackagesAndIgnoresSubzones) {
  FakePowercap p;
  p.Zone("intel-rapl:0", "package-0", 1'000'000, 262'143'328'850);
  p.Zone("intel-rapl:1", "package-1", 5'000'000, 262'143'328'850);
  p.Zone("intel-rapl:0:0", "core", 0, 262'143'328'850);  // inside package-0: not added
  auto meter = RaplPowerMeter::Create(p.root());
  ASSERT_TRUE(meter.ok()) << meter.status();
  EXPECT_EQ((*meter)->source(), "rapl");
  EXPECT_NE((*meter)->description().find("package-1"), std::string::npos);
  EXPECT_DOUBLE_EQ(*(*meter)->EnergyJoules(), 0.0);
  p.Set("intel-rapl:0", 3'500'000);     // +2.5 J
  p.Set("intel-rapl:1", 6'000'000);     // +1 J
  p.Set("intel-rapl:0:0", 99'000'000);  // ignored
  EXPECT_NEAR(*(*meter)->EnergyJoules(), 3.5, 1e-9);
}

TEST(RaplPowerMeterTest, CountsAcrossTheCounterWrap) {
  FakePowercap p;
  p.Zone("intel-rapl:0", "package-0", 9'000'000, 10'000'000);
  auto meter = RaplPowerMeter::Create(p.root());
  ASSERT_TRUE(meter.ok()) << meter.status();
  p.Set("intel-rapl:0", 9'900'000);
  EXPECT_NEAR(*(*meter)->EnergyJoules(), 0.9, 1e-9);
  p.Set("intel-rapl:0", 400'000);  // wrapped: 0.1 J to the top, then 0.4 J
  EXPECT_NEAR(*(*meter)->EnergyJoules(), 1.4, 1e-9);
  p.Set("intel-rapl:0", 400'000);
  EXPECT_NEAR(*(*meter)->EnergyJoules(), 1.4, 1e-9);
}

TEST(RaplPowerMeterTest, BadCounterIsAnErrorAndChangesNothing) {
  FakePowercap p;
  p.Zone("intel-rapl:0", "package-0", 1'000, 10'000'000);
  auto meter = RaplPowerMeter::Create(p.root());
  ASSERT_TRUE(meter.ok()) << meter.status();
  p.Write("intel-rapl:0/energy_uj", "12abc");
  EXPECT_EQ((*meter)->EnergyJoules().status().code(), absl::StatusCode::kDataLoss);
  p.Set("intel-rapl:0", 20'000'000);  // above the declared range
  EXPECT_EQ((*meter)->EnergyJoules().status().code(), absl::StatusCode::kDataLoss);
  p.Write("intel-rapl:0/energy_uj", "99999999999999999999999");
  EXPECT_FALSE((*meter)->EnergyJoules().ok());
  p.Set("intel-rapl:0", 1'001'000);
  EXPECT_NEAR(*(*meter)->EnergyJoules(), 1.0, 1e-9);
}

TEST(RaplPowerMeterTest, NoPackageIsNotFound) {
  FakePowercap p;
  EXPECT_EQ(RaplPowerMeter::Create(p.root()).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(RaplPowerMeter::Create("/nonexistent/powercap").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(RaplPowerMeterTest, UnreadableCounterIsPermissionDenied) {
  if (::geteuid() == 0) GTEST_SKIP() << "root reads files whatever their mode";
  FakePowercap p;
  p.Zone("intel-rapl:0", "package-0", 1'000, 10'000'000);
  ::chmod((p.root() + "/intel-rapl:0/energy_uj").c_str(), 0);
  auto meter = RaplPowerMeter::Create(p.root());
  EXPECT_EQ(meter.status().code(), absl::StatusCode::kPermissionDenied) << meter.status();
}

TEST(ModelPowerMeterTest, IdlePlusBusyShareOfTheExtraWatts) {
  double now = 100.0, busy = 0.0;
  auto meter = ModelPowerMeter::Create(
      10, 50, [&] { return busy; }, [&] { return now; });
  ASSERT_TRUE(meter.ok()) << meter.status();
  EXPECT_EQ((*meter)->source(), "model");
  now += 2.0;  // idle for 2 s: 20 J
  EXPECT_NEAR(*(*meter)->EnergyJoules(), 20.0, 1e-9);
  now += 1.0;  // busy half of 1 s: 10 + 40 * 0.5 = 30 J
  busy += 0.5;
  EXPECT_NEAR(*(*meter)->EnergyJoules(), 50.0, 1e-9);
  now += 1.0;  // more busy time than wall time: counted as fully busy, 50 J
  busy += 3.0;
  EXPECT_NEAR(*(*meter)->EnergyJoules(), 100.0, 1e-9);
}

TEST(ModelPowerMeterTest, RejectsImpossibleWatts) {
  auto busy = [] { return 0.0; };
  EXPECT_FALSE(ModelPowerMeter::Create(-1, 50, busy).ok());
  EXPECT_FALSE(ModelPowerMeter::Create(60, 50, busy).ok());
  EXPECT_FALSE(ModelPowerMeter::Create(10, std::nan(""), busy).ok());
}

TEST(CreatePowerMeterTest, AutoFallsBackToTheModelAndSaysWhy) {
  FakePowercap empty;
  PowerOptions o;
  o.rapl_root = empty.root();
  std::string why;
  auto meter = CreatePowerMeter(
      o, [] { return 0.0; }, &why);
  ASSERT_TRUE(meter.ok()) << meter.status();
  EXPECT_EQ((*meter)->source(), "model");
  EXPECT_NE(why.find("rapl"), std::string::npos) << why;
}

TEST(CreatePowerMeterTest, AutoPrefersRaplWhereReadable) {
  FakePowercap p;
  p.Zone("intel-rapl:0", "package-0", 1'000, 10'000'000);
  PowerOptions o;
  o.rapl_root = p.root();
  auto meter = CreatePowerMeter(o, [] { return 0.0; });
  ASSERT_TRUE(meter.ok()) << meter.status();
  EXPECT_EQ((*meter)->source(), "rapl");
}

TEST(CreatePowerMeterTest, ExplicitSourceThatIsMissingIsAnError) {
  PowerOptions o;
  o.source = "rapl";
  o.rapl_root = "/nonexistent/powercap";
  EXPECT_EQ(CreatePowerMeter(o, [] { return 0.0; }).status().code(), absl::StatusCode::kNotFound);
  o.source = "nvml";
  o.nvml_library = "/nonexistent/libnvidia-ml.so.1";
  EXPECT_EQ(CreatePowerMeter(o, [] { return 0.0; }).status().code(),
            absl::StatusCode::kUnavailable);
  o.source = "wattmeter";
  EXPECT_EQ(CreatePowerMeter(o, [] { return 0.0; }).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(SharedPowerMeterTest, EachSharerCountsItsShare) {
  FakePowercap p;
  p.Zone("intel-rapl:0", "package-0", 0, 100'000'000);
  auto rapl = RaplPowerMeter::Create(p.root());
  ASSERT_TRUE(rapl.ok());
  std::shared_ptr<PowerMeter> package(std::move(*rapl));
  SharedPowerMeter a(package, 2), b(package, 2);
  p.Set("intel-rapl:0", 8'000'000);
  EXPECT_NEAR(*a.EnergyJoules(), 4.0, 1e-9);
  EXPECT_NEAR(*b.EnergyJoules(), 4.0, 1e-9);
  EXPECT_NE(a.description().find("shared by 2"), std::string::npos);
}

}  // namespace
}  // namespace tokenfab
