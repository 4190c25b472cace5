#include "base/fault.h"

#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

namespace cryo {

namespace {

std::string g_point;
int g_signal = SIGKILL;
pid_t g_cryo = 0;

}  // namespace

void ArmRestoreFaults() {
  const char* v = ::getenv("CRYO_RESTORE_FAULT_POINT");
  if (!v || !*v) return;
  std::string spec = v;
  const size_t colon = spec.find(':');
  g_point = spec.substr(0, colon);
  if (colon != std::string::npos) {
    const std::string sig = spec.substr(colon + 1);
    g_signal = sig == "INT" ? SIGINT : sig == "TERM" ? SIGTERM : sig == "KILL" ? SIGKILL : std::atoi(sig.c_str());
  }
  g_cryo = ::getpid();
}

void RestoreFaultPoint(const char* name) {
  if (g_point.empty() || g_point != name) return;
  ::kill(g_cryo, g_signal);
  if (::getpid() == g_cryo) return;
  // A helper: it goes on once cryo is gone, as if cryo had died right here
  // (its parent-death signal or ptrace's EXITKILL then ends it).
  for (int i = 0; i < 500 && ::kill(g_cryo, 0) == 0; ++i) ::usleep(10000);
}

void RestoreFaultAwait(const char* name) {
  if (g_point.empty() || g_point != name) return;
  for (int i = 0; i < 500; ++i) ::usleep(10000);
}

}  // namespace cryo
