// The contract between cryo's restore helper and the restorer blob: one block of
// memory, filled by the helper, read by the blob. Plain data only (the blob has
// no libc and no relocations); variable-length arrays sit after the struct and
// are found by byte offsets from the start of Args.
#pragma once

#include <stdint.h>

namespace cryo::restorer {

inline constexpr int kMaxKeep = 8;
inline constexpr int kMaxSpecial = 4;
inline constexpr int kMaxGroups = 64;
// CredsArg.ngroups: leave the supplementary groups as they are (set by the
// helper before it joined the tree's user namespace, where setgroups(2) may be
// denied: user_namespaces(7)).
inline constexpr uint32_t kKeepGroups = 0xffffffffu;
inline constexpr int kAuxvWords = 128;
inline constexpr uint64_t kTaskSize = 0x7ffffffff000ull;  // x86_64 4-level user address space top

struct Range {
  uint64_t start;
  uint64_t len;
};

// One mapping to move with mremap: from its premapped place to its final address.
struct Move {
  uint64_t from;
  uint64_t to;
  uint64_t len;
};

// The kernel's struct sigaction for rt_sigaction(2) on x86_64.
struct KSigaction {
  uint64_t handler;
  uint64_t flags;
  uint64_t restorer;
  uint64_t mask;
};

// include/uapi/linux/prctl.h: struct prctl_mm_map.
struct PrctlMmMap {
  uint64_t start_code, end_code, start_data, end_data, start_brk, brk, start_stack;
  uint64_t arg_start, arg_end, env_start, env_end;
  uint64_t auxv;  // pointer, filled in by the blob
  uint32_t auxv_size;
  uint32_t exe_fd;
};

struct ITimerArg {
  uint32_t set;
  uint64_t interval_us;
  uint64_t value_us;
};

struct CredsArg {
  uint32_t uid[4];  // real, effective, saved, fs
  uint32_t gid[4];
  uint32_t ngroups;
  uint32_t groups[kMaxGroups];
  uint64_t cap_inh, cap_prm, cap_eff, cap_bnd, cap_amb;
  uint32_t securebits;
  uint32_t no_new_privs;
  uint32_t last_cap;  // highest capability number the kernel knows
};

// Why the blob failed: written to status_fd before it exits.
struct Failure {
  uint8_t tag;        // 'B' (HelperRecord::kBlobFailure)
  uint8_t pad[3];
  int32_t pid;
  int32_t err;        // positive errno
  char step[52];      // what failed
  uint64_t addr;      // the address / number it concerns
};

struct Args;

// One seccomp filter to install (seccomp(SECCOMP_SET_MODE_FILTER)).
struct SeccompFilterArg {
  uint64_t prog_off;  // struct sock_filter[n_insns], from the start of Args
  uint32_t n_insns;
  uint32_t flags;     // SECCOMP_FILTER_FLAG_*
};

// What one thread installs itself, after the filters all threads share.
struct ThreadSeccomp {
  uint32_t strict;       // then SECCOMP_MODE_STRICT
  uint32_t n_filters;
  uint64_t filters_off;  // SeccompFilterArg[n_filters], from the start of Args
};

// A thread other than the leader: created by the blob with clone3(set_tid).
struct ThreadArg {
  Args* args;            // filled by the blob
  int32_t tid;
  uint32_t n_pending;    // private pending siginfos (128 bytes each) at pending_off
  uint64_t pending_off;  // from the start of Args
  uint64_t stack;        // lowest address of its stack in the restorer area
  uint64_t stack_size;
  uint64_t robust_list;
  uint64_t robust_list_len;
  uint64_t clear_child_tid;
  uint64_t rseq_addr;
  uint32_t rseq_len;
  uint32_t rseq_sig;
  uint64_t altstack_sp;
  uint64_t altstack_size;
  int32_t altstack_flags;
  uint64_t timer_slack_ns;
  char comm[16];
  ThreadSeccomp seccomp;
  // Filled by the blob: the threads [create_first, create_last) this one
  // creates before its own set-up (threads are created fanned out, so that
  // the creators' ptrace clone events overlap).
  uint32_t create_first;
  uint32_t create_last;
};

struct Args {
  int32_t pid;
  int32_t status_fd;  // pipe to cryo: a Failure on error; closed on success

  // Everything outside these ranges is unmapped first (the blob, its args and
  // stack, the premapped memory, the helper's vDSO).
  uint32_t n_keep;
  Range keep[kMaxKeep];

  // [vvar], [vvar_vclock], [vdso]: moved to their saved addresses, through a
  // scratch area so that no move lands on a mapping not yet moved.
  uint32_t n_special;
  Move special[kMaxSpecial];
  uint64_t special_scratch;

  // The premapped VMAs, moved into place in order; then `premap` (the premap
  // part of the window) and `unmap_after` (the rest of the window's area part,
  // around this process's own area) are unmapped.
  Range premap;
  Range unmap_after[2];
  uint32_t n_vmas;
  uint64_t vmas_off;  // Move[n_vmas]

  PrctlMmMap mm_map;
  uint64_t auxv[kAuxvWords];

  uint8_t has_action[65];
  KSigaction actions[65];

  uint64_t altstack_sp;
  uint64_t altstack_size;
  int32_t altstack_flags;
  ITimerArg itimers[3];  // ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF

  uint64_t rseq_addr;
  uint32_t rseq_len;
  uint32_t rseq_sig;
  uint64_t robust_list;
  uint64_t robust_list_len;
  uint64_t clear_child_tid;
  int32_t pdeath_sig;
  int32_t dumpable;  // PR_GET_DUMPABLE of the image (2: from fs.suid_dumpable)

  uint32_t n_pending_private;
  uint32_t n_pending_shared;
  uint64_t pending_off;  // 128-byte siginfos: private ones first, then shared

  uint32_t restore_creds;
  CredsArg creds;

  uint32_t n_threads;    // threads besides the leader
  uint64_t threads_off;  // ThreadArg[n_threads]

  // Seccomp: what every thread has (installed by the leader before it creates
  // the threads, which inherit it), then the leader's own rest.
  ThreadSeccomp seccomp_common;
  ThreadSeccomp seccomp;

  // cryo restore --lazy: the process's userfaultfd (made by the helper, -1
  // without), and the VMAs the blob registers with it, at their final
  // addresses, once they are in place (Range[n_lazy]).
  int32_t uffd;
  uint32_t n_lazy;
  uint64_t lazy_off;
};

}  // namespace cryo::restorer
