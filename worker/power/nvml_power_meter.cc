#include "worker/power/nvml_power_meter.h"

#include <dlfcn.h>

#include <chrono>

#include "common/strings.h"

namespace tokenfab {
namespace {

// The few NVML declarations the meter needs (the CUDA toolkit ships no NVML
// header); values from NVML's documented ABI, whose energy counter is an
// `unsigned long long` (hence the NOLINTs below).
using nvmlReturn_t = int;
using nvmlDevice_t = void*;
constexpr nvmlReturn_t kNvmlSuccess = 0;

double SteadySeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

struct NvmlPowerMeter::Api {
  nvmlReturn_t (*init)();
  nvmlReturn_t (*shutdown)();
  const char* (*error_string)(nvmlReturn_t);
  nvmlReturn_t (*handle_by_index)(unsigned int, nvmlDevice_t*);
  nvmlReturn_t (*power_usage)(nvmlDevice_t, unsigned int*);  // mW
  nvmlReturn_t (*total_energy)(nvmlDevice_t,
                               unsigned long long*);        // mJ  // NOLINT(google-runtime-int)
  nvmlReturn_t (*name)(nvmlDevice_t, char*, unsigned int);  // optional

  std::string Error(const char* op, nvmlReturn_t r) const {
    const char* text = error_string != nullptr ? error_string(r) : nullptr;
    return StrCat(op, " failed: ", text != nullptr ? text : "unknown error", " (", r, ")");
  }
};

absl::StatusOr<std::unique_ptr<NvmlPowerMeter>> NvmlPowerMeter::Create(const std::string& library,
                                                                       uint32_t gpu_index) {
  void* handle = dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* err = dlerror();
    return absl::UnavailableError(StrCat("cannot load NVML (", library,
                                         "): ", err != nullptr ? err : "unknown error",
                                         "; is the NVIDIA driver installed?"));
  }
  std::unique_ptr<NvmlPowerMeter> m(new NvmlPowerMeter());
  m->library_ = handle;
  m->api_ = std::make_unique<Api>();
  Api& a = *m->api_;
  auto resolve = [&](const char* symbol, auto** fn) -> bool {
    *fn = reinterpret_cast<std::remove_pointer_t<decltype(fn)>>(dlsym(handle, symbol));
    return *fn != nullptr;
  };
  for (auto [symbol, ok] :
       {std::pair<const char*, bool>{"nvmlInit_v2", resolve("nvmlInit_v2", &a.init)},
        {"nvmlShutdown", resolve("nvmlShutdown", &a.shutdown)},
        {"nvmlErrorString", resolve("nvmlErrorString", &a.error_string)},
        {"nvmlDeviceGetHandleByIndex_v2",
         resolve("nvmlDeviceGetHandleByIndex_v2", &a.handle_by_index)},
        {"nvmlDeviceGetPowerUsage", resolve("nvmlDeviceGetPowerUsage", &a.power_usage)},
        {"nvmlDeviceGetTotalEnergyConsumption",
         resolve("nvmlDeviceGetTotalEnergyConsumption", &a.total_energy)}}) {
    if (!ok) {
      m->api_.reset();  // nothing initialised yet: the destructor only closes the library
      return absl::UnavailableError(StrCat(library, " has no ", symbol));
    }
  }
  resolve("nvmlDeviceGetName", &a.name);
  if (nvmlReturn_t r = a.init(); r != kNvmlSuccess) {
    absl::Status failed = absl::UnavailableError(a.Error("nvmlInit_v2", r));
    m->api_.reset();  // not initialised: no nvmlShutdown (this frees `a`)
    return failed;
  }
  if (nvmlReturn_t r = a.handle_by_index(gpu_index, &m->device_); r != kNvmlSuccess) {
    return absl::NotFoundError(
        StrCat("GPU ", gpu_index, ": ", a.Error("nvmlDeviceGetHandleByIndex_v2", r)));
  }
  char name[96] = {};
  if (a.name != nullptr && a.name(m->device_, name, sizeof name - 1) != kNvmlSuccess) name[0] = 0;
  unsigned long long mj = 0;  // NOLINT(google-runtime-int)
  m->energy_counter_ = a.total_energy(m->device_, &mj) == kNvmlSuccess;
  if (m->energy_counter_) {
    m->last_mj_ = mj;
  } else {
    unsigned int mw = 0;
    if (nvmlReturn_t r = a.power_usage(m->device_, &mw); r != kNvmlSuccess) {
      return absl::UnavailableError(StrCat("GPU ", gpu_index, " reports neither energy nor power: ",
                                           a.Error("nvmlDeviceGetPowerUsage", r)));
    }
    m->last_watts_ = mw * 1e-3;
    m->last_time_ = SteadySeconds();
  }
  m->description_ = StrCat("NVML GPU ", gpu_index, name[0] ? StrCat(" ", name) : std::string(),
                           m->energy_counter_ ? ", total-energy counter"
                                              : ", power readings integrated (no energy counter)");
  return m;
}

NvmlPowerMeter::~NvmlPowerMeter() {
  if (api_ != nullptr) api_->shutdown();
  if (library_ != nullptr) dlclose(library_);
}

absl::StatusOr<double> NvmlPowerMeter::EnergyJoules() {
  absl::MutexLock lock(&mu_);
  if (energy_counter_) {
    unsigned long long mj = 0;  // NOLINT(google-runtime-int)
    if (nvmlReturn_t r = api_->total_energy(device_, &mj); r != kNvmlSuccess) {
      return absl::UnavailableError(api_->Error("nvmlDeviceGetTotalEnergyConsumption", r));
    }
    // The counter starts again when the driver reloads: count from there.
    joules_ += static_cast<double>(mj >= last_mj_ ? mj - last_mj_ : mj) * 1e-3;
    last_mj_ = mj;
    return joules_;
  }
  unsigned int mw = 0;
  if (nvmlReturn_t r = api_->power_usage(device_, &mw); r != kNvmlSuccess) {
    return absl::UnavailableError(api_->Error("nvmlDeviceGetPowerUsage", r));
  }
  const double t = SteadySeconds();
  const double watts = mw * 1e-3;
  joules_ += 0.5 * (watts + last_watts_) * std::max(0.0, t - last_time_);  // trapezoid
  last_watts_ = watts;
  last_time_ = t;
  return joules_;
}

}  // namespace tokenfab
