// A fake NVML for nvml_power_meter_test: one GPU whose power, energy
// counter and support for the counter the test sets through
// fake_nvml_set(). Return codes follow NVML's (0 success, 3 not supported).
#include <cstring>

namespace {
unsigned int g_power_mw = 0;
unsigned long long g_energy_mj = 0;
bool g_energy_supported = true;
bool g_init_fails = false;
int g_inits = 0;
int g_device_token = 0;
}  // namespace

extern "C" {

void fake_nvml_set(unsigned int power_mw, unsigned long long energy_mj, int energy_supported,
                   int init_fails) {
  g_power_mw = power_mw;
  g_energy_mj = energy_mj;
  g_energy_supported = energy_supported != 0;
  g_init_fails = init_fails != 0;
}
int fake_nvml_inits() { return g_inits; }

int nvmlInit_v2() {
  if (g_init_fails) return 9;  // NVML_ERROR_DRIVER_NOT_LOADED
  ++g_inits;
  return 0;
}
int nvmlShutdown() {
  --g_inits;
  return 0;
}
const char* nvmlErrorString(int r) {
  switch (r) {
    case 2:
      return "Invalid Argument";
    case 3:
      return "Not Supported";
    case 9:
      return "Driver Not Loaded";
    default:
      return "Unknown Error";
  }
}
int nvmlDeviceGetHandleByIndex_v2(unsigned int index, void** device) {
  if (index != 0) return 2;
  *device = &g_device_token;
  return 0;
}
int nvmlDeviceGetName(void* device, char* name, unsigned int length) {
  if (device != &g_device_token) return 2;
  std::strncpy(name, "Fake GPU", length);
  return 0;
}
int nvmlDeviceGetPowerUsage(void* device, unsigned int* mw) {
  if (device != &g_device_token) return 2;
  *mw = g_power_mw;
  return 0;
}
int nvmlDeviceGetTotalEnergyConsumption(void* device, unsigned long long* mj) {
  if (device != &g_device_token) return 2;
  if (!g_energy_supported) return 3;
  *mj = g_energy_mj;
  return 0;
}

}  // extern "C"
