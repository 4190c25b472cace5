// The TCP repair gate after tracer death (tcp_hold.h): a tracer holds every
// thread of a process at cryo's gate, puts its connected socket in repair
// mode (the guardian told first, as tcp_hold.cc does), then dies by SIGKILL.
// The guardian ends repair mode and opens the gate; the process goes on: its
// thread that was in recv(2) is in it again and receives what the peer sends
// (a recv in repair mode would fail with EPERM, tcp_recvmsg). In both places
// of cryo's code (the vDSO's padding, the fallback's page).
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <memory>
#include <vector>

#include "inject/injected_code.h"
#include "inject/remote_syscall.h"
#include "inject/test_child.h"
#include "net/tcp_guardian.h"
#include "proc/proc.h"
#include "seize/seize.h"

namespace cryo {
namespace {

// Rounds of 1 ms the held threads may wait untraced: far more than the test
// waits, so only the guardian's flag lets them go.
constexpr uint64_t kForever = uint64_t{1} << 40;

bool ReadAll(int fd, void* out, size_t n, int timeout_ms = 10000) {
  auto* p = static_cast<char*>(out);
  while (n) {
    struct pollfd pfd = {fd, POLLIN, 0};
    if (poll(&pfd, 1, timeout_ms) != 1) return false;
    const ssize_t r = read(fd, p, n);
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

int g_sock = -1, g_res = -1;

// Reports every byte received ('E' then errno on an error, 'Z' at the end).
void* Receiver(void*) {
  for (;;) {
    char c;
    const ssize_t n = recv(g_sock, &c, 1, 0);
    char m[2] = {n == 1 ? c : n == 0 ? 'Z' : 'E', static_cast<char>(n < 0 ? errno : 0)};
    if (write(g_res, m, 2) != 2 || n <= 0) _exit(3);
  }
}

[[noreturn]] void RunTarget(uint16_t port, int res) {
  g_res = res;
  g_sock = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = port;
  if (g_sock < 0 || connect(g_sock, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) _exit(4);
  pthread_t t;
  if (pthread_create(&t, nullptr, Receiver, nullptr) != 0) _exit(5);
  usleep(20000);  // in recv
  const int ready[2] = {'R', g_sock};
  if (write(res, ready, sizeof(ready)) != sizeof(ready)) _exit(6);
  for (;;) pause();
}

// The tracer: the steps of tcp_hold.cc's Hold() and of a socket put in
// repair mode, then death. Reports the guardian's pid, then 'H'.
[[noreturn]] void RunTracer(pid_t pid, int sock, int out) {
  auto run = [&]() -> Status {
    CRYO_ASSIGN_OR_RETURN(auto guardian, TcpGuardian::Start());
    const pid_t gpid = guardian->pid();
    if (write(out, &gpid, sizeof(gpid)) != sizeof(gpid)) _exit(7);
    CRYO_ASSIGN_OR_RETURN(auto sp, SeizedProcess::Seize(pid));
    CRYO_ASSIGN_OR_RETURN(auto vmas, proc::ReadVmas(pid));
    CRYO_ASSIGN_OR_RETURN(auto st, proc::ReadStatus(pid));
    CRYO_ASSIGN_OR_RETURN(auto owner, RemoteSyscaller::Attach(*sp, vmas, st.sig_ign, st.sig_cgt));
    CRYO_ASSIGN_OR_RETURN(const uint64_t flag, owner->PrepareGate());
    CRYO_RETURN_IF_ERROR(guardian->WillHold(pid, flag));
    std::vector<std::unique_ptr<RemoteSyscaller>> others;
    for (size_t i = 1; i < sp->threads().size(); ++i) {
      CRYO_ASSIGN_OR_RETURN(auto t, owner->ForThread(sp->threads()[i]));
      others.push_back(std::move(t));
      CRYO_RETURN_IF_ERROR(others.back()->Hold(kForever));
    }
    CRYO_RETURN_IF_ERROR(owner->Hold(kForever));
    UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
    UniqueFd dup(static_cast<int>(syscall(SYS_pidfd_getfd, pidfd.get(), sock, 0)));
    if (!dup.valid()) return Status::FromErrno("pidfd_getfd");
    CRYO_RETURN_IF_ERROR(guardian->WillRepair(dup.get(), 0));
    const int on = 1;
    if (setsockopt(dup.get(), IPPROTO_TCP, TCP_REPAIR, &on, sizeof(on)) != 0) return Status::FromErrno("TCP_REPAIR");
    if (write(out, "H", 1) != 1) _exit(8);
    raise(SIGKILL);
    return Status::Ok();
  };
  Status s = run();
  fprintf(stderr, "tracer: %s\n", s.ToString().c_str());
  _exit(1);
}

class GateAfterTracerDeathTest : public testing::TestWithParam<bool> {
 protected:
  void SetUp() override { InjectedCode::SetFallbackForTest(GetParam()); }
  void TearDown() override { InjectedCode::SetFallbackForTest(false); }
};

TEST_P(GateAfterTracerDeathTest, TheGuardianEndsRepairModeThenLetsTheThreadsGo) {
  int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t alen = sizeof(a);
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  ASSERT_EQ(listen(listener, 1), 0);
  ASSERT_EQ(getsockname(listener, reinterpret_cast<sockaddr*>(&a), &alen), 0);
  int res[2], out[2];
  ASSERT_EQ(pipe2(res, O_CLOEXEC), 0);
  ASSERT_EQ(pipe2(out, O_CLOEXEC), 0);
  const pid_t target = fork();
  if (target == 0) RunTarget(a.sin_port, res[1]);
  KillOnExit target_guard{target};
  const int peer = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
  ASSERT_GE(peer, 0);
  int ready[2];
  ASSERT_TRUE(ReadAll(res[0], ready, sizeof(ready)));
  ASSERT_EQ(ready[0], 'R');
  // The receiver works before.
  char m[2];
  ASSERT_EQ(send(peer, "a", 1, 0), 1);
  ASSERT_TRUE(ReadAll(res[0], m, 2));
  ASSERT_EQ(m[0], 'a');

  const pid_t tracer = fork();
  if (tracer == 0) RunTracer(target, ready[1], out[1]);
  close(out[1]);
  pid_t guardian = 0;
  ASSERT_TRUE(ReadAll(out[0], &guardian, sizeof(guardian)));
  char h = 0;
  ASSERT_TRUE(ReadAll(out[0], &h, 1)) << "the tracer did not hold the process";
  ASSERT_EQ(h, 'H');
  int status = 0;
  ASSERT_EQ(waitpid(tracer, &status, 0), tracer);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;

  // The thread in recv is back in it once the guardian ended repair mode and
  // opened the gate: what the peer sends now arrives, no EPERM.
  ASSERT_EQ(send(peer, "b", 1, 0), 1);
  ASSERT_TRUE(ReadAll(res[0], m, 2)) << "the receiving thread did not go on";
  EXPECT_EQ(m[0], 'b') << "recv failed with errno " << int(m[1]);
  UniqueFd pidfd(static_cast<int>(syscall(SYS_pidfd_open, target, 0)));
  UniqueFd sock(static_cast<int>(syscall(SYS_pidfd_getfd, pidfd.get(), ready[1], 0)));
  ASSERT_TRUE(sock.valid());
  int repair = -1;
  socklen_t len = sizeof(repair);
  ASSERT_EQ(getsockopt(sock.get(), IPPROTO_TCP, TCP_REPAIR, &repair, &len), 0);
  EXPECT_EQ(repair, 0);
  // Every thread untraced and running on; the other direction works too.
  auto tids = proc::ListThreads(target);
  ASSERT_TRUE(tids.ok());
  ASSERT_EQ(tids->size(), 2u);
  for (pid_t tid : *tids) {
    auto st = proc::ReadStatus(tid);
    ASSERT_TRUE(st.ok());
    EXPECT_EQ(st->tracer_pid, 0) << tid;
  }
  ASSERT_EQ(send(sock.get(), "c", 1, 0), 1);
  char c = 0;
  ASSERT_EQ(recv(peer, &c, 1, 0), 1);
  EXPECT_EQ(c, 'c');
  // The guardian (the dead tracer's child) is done and gone.
  for (int i = 0; i < 1000 && kill(guardian, 0) == 0; ++i) usleep(10000);
  EXPECT_NE(kill(guardian, 0), 0) << "the guardian did not finish";
  for (int fd : {listener, peer, res[0], res[1], out[0]}) close(fd);
}

INSTANTIATE_TEST_SUITE_P(CodePlaces, GateAfterTracerDeathTest, testing::Values(false, true),
                         [](const testing::TestParamInfo<bool>& i) { return i.param ? "Fallback" : "InVdso"; });

}  // namespace
}  // namespace cryo
