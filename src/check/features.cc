#include "check/features.h"

#include <string>

#include "base/kernel_features.h"

namespace cryo::check {

const std::vector<Feature>& Features() {
  static const std::vector<Feature> kFeatures = {
      {"ptrace-seize", "Linux 3.4", true, false, "cryo cannot stop and inspect a process: no checkpoint"},
      {"xsave", "an x86-64 CPU with XSAVE", true, false, "the FPU/SSE/AVX registers cannot be saved: no checkpoint"},
      {"process-vm-readv", "Linux 3.2 (CONFIG_CROSS_MEMORY_ATTACH)", true, false,
       "cryo cannot read a process's memory or run its remote calls: no checkpoint"},
      {"pidfd-getfd", "Linux 5.6", true, false, "cryo cannot take a process's files to inspect them: no checkpoint"},
      {"clone3-set-tid", "Linux 5.5", true, false, "processes cannot get their own PIDs back: no restore"},
      {"pr-set-mm-map", "Linux 3.18 (CONFIG_CHECKPOINT_RESTORE)", true, false,
       "a restored process's memory layout (brk, arguments, auxv, exe link) cannot be set: no restore"},
      {"userfaultfd-wp-async", "Linux 6.7", false, false, "cryo dump --track-mem: dirty tracking (else --parent compares every page)"},
      {"pagemap-scan", "Linux 6.7", false, true,
       "the dump reads the 64-bit entries of /proc/PID/pagemap to find the pages to store (8 bytes a page, "
       "slower for large processes); the images are the same"},
      {"membarrier-registrations", "Linux 6.3", false, true,
       "a process registered for private expedited membarrier(2) commands is found by issuing them in it (and "
       "refused); a MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED registration cannot be seen and is not restored"},
      {"timer-restore-ids", "Linux 6.15", false, true,
       "POSIX timers are restored only when their ids are 0, 1, ... n-1 (the ids a new process gets); a process "
       "with other timer ids is refused at dump"},
      {"eventfd-semaphore", "Linux 6.6", false, true,
       "an eventfd's semaphore mode (EFD_SEMAPHORE) is found by a read of cryo's duplicate while the tree is "
       "stopped (the counter is put back; a poller of the tree may see one spurious wakeup)"},
      {"tcp-repair", "Linux 3.5", false, false,
       "established TCP connections cannot be checkpointed: a dump of a tree holding one fails naming TCP_REPAIR"},
      {"sock-diag", "Linux 3.3 (CONFIG_UNIX_DIAG)", false, false,
       "processes with unix sockets cannot be described: their dump fails naming NETLINK_SOCK_DIAG"},
      {"bpf-iter-udp", "Linux 5.9 (iter/udp; kernel BTF, CONFIG_DEBUG_INFO_BTF; CAP_BPF + CAP_PERFMON)", false, true,
       "the datagrams queued on a UDP socket cannot be counted exactly (an empty datagram the program already "
       "peeked at hides from peeking): a dump of a socket with datagrams queued is refused unless "
       "--udp-queue-unverified"},
      {"namespaces", "Linux 3.8", false, false, "nothing cryo restores needs it (processes in other namespaces than cryo's are refused)"},
      {"capabilities", "root, or CAP_CHECKPOINT_RESTORE (Linux 5.9) + CAP_SYS_PTRACE", true, false,
       "cryo must run as root or with CAP_CHECKPOINT_RESTORE + CAP_SYS_PTRACE"},
      {"soft-dirty", "CONFIG_MEM_SOFT_DIRTY", false, false, "nothing: shown for information"},
      {"madv-collapse", "Linux 6.1 (CONFIG_TRANSPARENT_HUGEPAGE)", false, true,
       "a restore fills memory that was in transparent huge pages with small pages (the same contents, one page "
       "fault per 4 KiB instead of per 2 MiB)"},
      {"bpf-iter-tcp", "Linux 5.15 (iter/tcp with bpf_getsockopt; kernel BTF; CAP_BPF + CAP_PERFMON)", false, true,
       "the dump reads the options of each TCP connection with a getsockopt(2) per option instead of one pass "
       "over all of them (slower with many connections); the images are the same"},
  };
  return kFeatures;
}

const Feature* FindFeature(std::string_view name) {
  for (const Feature& f : Features())
    if (f.name == name) return &f;
  return nullptr;
}

Status CheckPretendedNames() {
  std::string bad;
  for (const std::string& name : PretendedMissing()) {
    const Feature* f = FindFeature(name);
    if (f != nullptr && f->pretendable) continue;
    bad += (bad.empty() ? "'" : ", '") + name + (f == nullptr ? "' (no such feature)" : "' (a hard requirement)");
  }
  if (bad.empty()) return Status::Ok();
  std::string allowed;
  for (const Feature& f : Features())
    if (f.pretendable) allowed += (allowed.empty() ? "" : ", ") + std::string(f.name);
  return Status::Error(std::string(kPretendMissingEnv) + " names " + bad + "; it takes features cryo can do without: " + allowed);
}

}  // namespace cryo::check
