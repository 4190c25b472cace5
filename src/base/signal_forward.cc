#include "base/signal_forward.h"

#include <signal.h>

#include <initializer_list>

namespace cryo {
namespace {

volatile sig_atomic_t g_target = 0;

void Forward(int sig) {
  if (g_target > 0) ::kill(g_target, sig);
}

}  // namespace

void ForwardSignalsTo(pid_t pid) {
  g_target = pid;
  struct sigaction sa = {};
  sa.sa_handler = Forward;
  sa.sa_flags = SA_RESTART;
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2}) ::sigaction(sig, &sa, nullptr);
}

}  // namespace cryo
