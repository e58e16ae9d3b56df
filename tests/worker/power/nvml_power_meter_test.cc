// The NVML meter through dlopen, against a fake libnvidia-ml: unit
// conversions (mJ, mW), the power-integration path for GPUs without an
// energy counter, and clear errors when the library or GPU is missing.
#include "worker/power/nvml_power_meter.h"

#include <dlfcn.h>

#include <thread>

#include "gtest/gtest.h"

namespace tokenfab {
namespace {

class NvmlPowerMeterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The meter's dlopen of the same path shares this handle's globals.
    lib_ = dlopen(FAKE_NVML_LIBRARY, RTLD_NOW | RTLD_LOCAL);
    ASSERT_NE(lib_, nullptr) << dlerror();
    set_ = reinterpret_cast<void (*)(unsigned, unsigned long long, int, int)>(
        dlsym(lib_, "fake_nvml_set"));
    inits_ = reinterpret_cast<int (*)()>(dlsym(lib_, "fake_nvml_inits"));
    ASSERT_NE(set_, nullptr);
    ASSERT_NE(inits_, nullptr);
  }
  void TearDown() override {
    if (lib_ != nullptr) dlclose(lib_);
  }
  void* lib_ = nullptr;
  void (*set_)(unsigned, unsigned long long, int, int) = nullptr;
  int (*inits_)() = nullptr;
};

TEST_F(NvmlPowerMeterTest, CountsMillijoulesFromTheEnergyCounter) {
  set_(300000, 5'000'000, 1, 0);
  auto meter = NvmlPowerMeter::Create(FAKE_NVML_LIBRARY, 0);
  ASSERT_TRUE(meter.ok()) << meter.status();
  EXPECT_EQ((*meter)->source(), "nvml");
  EXPECT_NE((*meter)->description().find("Fake GPU"), std::string::npos);
  EXPECT_EQ(inits_(), 1);
  EXPECT_DOUBLE_EQ(*(*meter)->EnergyJoules(), 0.0);  // counted from creation
  set_(300000, 5'012'345, 1, 0);
  EXPECT_NEAR(*(*meter)->EnergyJoules(), 12.345, 1e-9);
  set_(300000, 5'112'345, 1, 0);
  EXPECT_NEAR(*(*meter)->EnergyJoules(), 112.345, 1e-9);
  meter->reset();
  EXPECT_EQ(inits_(), 0);  // nvmlShutdown on destruction
}

TEST_F(NvmlPowerMeterTest, IntegratesPowerWithoutAnEnergyCounter) {
  set_(200000, 0, 0, 0);  // 200 W, no counter (pre-Volta)
  auto meter = NvmlPowerMeter::Create(FAKE_NVML_LIBRARY, 0);
  ASSERT_TRUE(meter.ok()) << meter.status();
  EXPECT_NE((*meter)->description().find("integrated"), std::string::npos);
  const auto t0 = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const double j = *(*meter)->EnergyJoules();
  const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_GT(j, 200.0 * 0.1 * 0.99);
  EXPECT_LE(j, 200.0 * dt * 1.01);
}

TEST_F(NvmlPowerMeterTest, UnknownGpuIsNotFound) {
  set_(1000, 0, 1, 0);
  auto meter = NvmlPowerMeter::Create(FAKE_NVML_LIBRARY, 3);
  EXPECT_EQ(meter.status().code(), absl::StatusCode::kNotFound) << meter.status();
  EXPECT_EQ(inits_(), 0);  // initialised, then shut down again
}

TEST_F(NvmlPowerMeterTest, DriverNotLoadedIsUnavailable) {
  set_(1000, 0, 1, /*init_fails=*/1);
  auto meter = NvmlPowerMeter::Create(FAKE_NVML_LIBRARY, 0);
  EXPECT_EQ(meter.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(meter.status().message().find("Driver Not Loaded"), std::string::npos)
      << meter.status();
}

TEST_F(NvmlPowerMeterTest, MissingLibraryIsUnavailable) {
  auto meter = NvmlPowerMeter::Create("/nonexistent/libnvidia-ml.so.1", 0);
  EXPECT_EQ(meter.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(meter.status().message().find("cannot load NVML"), std::string::npos);
}

}  // namespace
}  // namespace tokenfab
