#include "dump/tcp_hold.h"

#include <memory>

#include "base/clock.h"
#include "base/log.h"
#include "inject/remote_syscall.h"

namespace cryo {

namespace {

// Untraced, a thread sleeps at most this many times 1 ms at the gate: a
// bound should the guardian be gone too.
constexpr uint64_t kGateRounds = 10000;

// The threads of a process at the gate; the owner of the code last in,
// first out of the others' way.
struct HeldProcess {
  std::unique_ptr<SeccompCallCheck> check;  // outlives the syscallers
  std::unique_ptr<RemoteSyscaller> owner;
  std::vector<std::unique_ptr<RemoteSyscaller>> others;
};

// Every thread out of the gate and back in its own state (still seized):
// the flag first, so that a cryo dying from here on lets them go at once.
Status Release(std::vector<HeldProcess>& held) {
  Status first;
  auto keep = [&first](Status s) {
    if (first.ok() && !s.ok()) first = std::move(s);
  };
  for (HeldProcess& p : held)
    if (p.owner) keep(p.owner->OpenGate());
  for (HeldProcess& p : held) {
    for (auto& t : p.others) keep(t->Unhold());
    if (p.owner) keep(p.owner->Unhold());
    for (auto& t : p.others) keep(t->Release());
    p.others.clear();
    if (p.owner) keep(p.owner->Finish());
    p.owner.reset();
  }
  held.clear();
  return first;
}

Status Hold(SeizedProcess& sp, const ProcessFacts& f, const SeccompState& seccomp, TcpDumpSession& tcp,
            HeldProcess* out) {
  out->check = std::make_unique<SeccompCallCheck>(sp.pid(), seccomp);
  CRYO_ASSIGN_OR_RETURN(out->owner, RemoteSyscaller::Attach(sp, f.vmas, f.status.sig_ign, f.status.sig_cgt));
  out->owner->SetStopSink(sp.stop_sink());
  out->owner->SetUntracedCallCheck(out->check.get());
  CRYO_ASSIGN_OR_RETURN(const uint64_t flag, out->owner->PrepareGate());
  // Told before any thread is there: the guardian lets them go if cryo dies.
  CRYO_RETURN_IF_ERROR(tcp.WillHold(sp.pid(), flag));
  for (size_t i = 1; i < sp.threads().size(); ++i) {
    CRYO_ASSIGN_OR_RETURN(auto t, out->owner->ForThread(sp.threads()[i]));
    out->others.push_back(std::move(t));
    CRYO_RETURN_IF_ERROR(out->others.back()->Hold(kGateRounds));
  }
  return out->owner->Hold(kGateRounds);
}

}  // namespace

Status ReadTcpConnections(SeizedTree& tree, std::vector<ProcessFacts>& facts,
                          const std::vector<SeccompState>& seccomp, TcpDumpSession& tcp) {
  if (!tcp.has_deferred()) return Status::Ok();
  const double t0 = Now();
  CRYO_RETURN_IF_ERROR(tcp.LockDeferred());
  std::vector<HeldProcess> held(tree.processes().size());
  Status s;
  for (size_t i = 0; i < held.size() && s.ok(); ++i)
    s = Hold(*tree.processes()[i], facts[i], seccomp[i], tcp, &held[i]).Prefixed("holding pid " + std::to_string(tree.processes()[i]->pid()));
  const double t1 = Now();
  // Repair mode only with every thread at the gate; out of it again before
  // the first is let go (ReadDeferred ends repair mode on every path).
  if (s.ok()) s = tcp.ReadDeferred();
  const double t2 = Now();
  Status r = Release(held);
  if (!s.ok()) return s;
  CRYO_RETURN_IF_ERROR(r);
  LOG_DEBUG("TCP connections: tree held in %.2f ms, read in repair mode in %.2f ms, let go in %.2f ms",
            (t1 - t0) * 1e3, (t2 - t1) * 1e3, (Now() - t2) * 1e3);
  for (ProcessFacts& f : facts)
    for (image::Fd& fd : *f.fds.mutable_fds())
      if (fd.kind() == image::FD_TCP_SOCKET) CRYO_RETURN_IF_ERROR(tcp.Complete(fd.mutable_tcp_socket()));
  return Status::Ok();
}

}  // namespace cryo
