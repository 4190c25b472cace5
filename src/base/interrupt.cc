#include "base/interrupt.h"

#include <signal.h>
#include <string.h>

#include <atomic>
#include <cstdlib>
#include <string>

namespace cryo {

namespace {
volatile sig_atomic_t g_interrupt = 0;
std::atomic<uint64_t> g_passed{0};
uint64_t g_fault_at = 0;  // 0: only count
int g_fault_signal = SIGKILL;

void OnInterrupt(int sig) {
  if (!g_interrupt) g_interrupt = sig;
}
}  // namespace

namespace internal {
bool g_fault_points_armed = false;

void PassFaultPoint() {
  const uint64_t n = g_passed.fetch_add(1) + 1;
  if (g_fault_at != 0 && n == g_fault_at) ::raise(g_fault_signal);
}
}  // namespace internal

void CatchInterrupts() {
  struct sigaction sa = {};
  sa.sa_handler = OnInterrupt;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGPIPE}) sigaction(sig, &sa, nullptr);
}

int InterruptSignal() { return g_interrupt; }

Status CheckInterrupt() {
  FaultPoint();
  const int sig = g_interrupt;
  if (!sig) return Status::Ok();
  return Status::Error(std::string("interrupted by SIG") + sigabbrev_np(sig));
}

void InitFaultPoints() {
  const char* at = std::getenv("CRYO_FAULT_POINT");
  if (!at || !*at) return;
  g_fault_at = std::strtoull(at, nullptr, 10);
  const char* sig = std::getenv("CRYO_FAULT_SIGNAL");
  if (sig && *sig) {
    const std::string s = sig;
    for (int n : {SIGKILL, SIGINT, SIGTERM, SIGHUP, SIGPIPE})
      if (s == sigabbrev_np(n) || s == std::string("SIG") + sigabbrev_np(n)) g_fault_signal = n;
  }
  internal::g_fault_points_armed = true;
}

uint64_t FaultPointsPassed() { return g_passed.load(); }

void DisarmFaultPoints() { internal::g_fault_points_armed = false; }

}  // namespace cryo
