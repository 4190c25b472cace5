// The TCP connections' reads in repair mode, with the whole tree held.
//
// The kernel lets a dead tracer's tracees run at once (exit_ptrace ->
// __ptrace_detach), so were cryo killed while a socket of a live tree is in
// repair mode, a thread of the tree could call recv(2) (EPERM) or send(2)
// (queued in repair semantics) on it before the guardian ended repair mode.
// So the sockets are put in repair mode only while every thread of every
// process of the tree waits at cryo's gate (inject/injected_code.h): traced,
// at the entry of the gate's sleep; untraced (cryo killed), in a loop of
// 1 ms sleeps until the gate's flag is set, which the guardian
// (net/tcp_guardian.h) does once it has taken every socket out of repair
// mode (at most ~10 s if the guardian is gone too). Then each thread goes
// back to its own state by itself, as from any of cryo's remote calls.
// Cheaper than a cgroup freezer (no moving of the tree between cgroups,
// which it and others could see) and it needs nothing of the tree but what
// every dump already does in it.
#pragma once

#include <vector>

#include "base/status.h"
#include "dump/prefetch.h"
#include "net/tcp_session.h"
#include "tree/seccomp.h"
#include "tree/tree_seize.h"

namespace cryo {

// If the tree has connections (TcpDumpSession::Defer while describing
// it): locks them, holds the tree at the gate, reads them in repair mode,
// lets the tree go (every thread back in its own state, still seized), and
// completes the TCP records of `facts`.
Status ReadTcpConnections(SeizedTree& tree, std::vector<ProcessFacts>& facts,
                          const std::vector<SeccompState>& seccomp, TcpDumpSession& tcp);

}  // namespace cryo
