// Readers of /proc/PID/*. Each Parse* function takes the file's text (so tests can
// feed real and edge-case input); each Read* function reads the file for a PID.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace cryo::proc {

// One line of /proc/PID/maps, plus its VmFlags from /proc/PID/smaps.
struct Vma {
  uint64_t start = 0;
  uint64_t end = 0;
  int prot = 0;         // PROT_READ | PROT_WRITE | PROT_EXEC
  bool shared = false;  // 's' in the perms column (else 'p')
  uint64_t pgoff = 0;   // file offset in bytes
  uint32_t dev_major = 0;
  uint32_t dev_minor = 0;
  uint64_t inode = 0;
  std::string name;      // path, "[heap]", "[stack]", "[vdso]", "[vvar]", "[vvar_vclock]", "[anon:...]" or ""
  bool deleted = false;  // name ended in " (deleted)" (suffix removed from `name`)
  std::vector<std::string> vm_flags;  // two-letter VmFlags mnemonics: "rd", "wr", "gd", "ht", ...
  uint64_t anon_huge_kb = 0;          // smaps AnonHugePages (transparent huge pages, PMD-mapped)
  uint64_t kernel_page_size = 0;      // smaps KernelPageSize in bytes (0: maps only)
  bool HasFlag(std::string_view f) const;
};

// Parses /proc/PID/maps. Paths may contain spaces.
Result<std::vector<Vma>> ParseMaps(std::string_view text);
// Parses /proc/PID/smaps: its VMAs with their VmFlags and AnonHugePages.
Result<std::vector<Vma>> ParseSmaps(std::string_view text);
// Fills vm_flags and anon_huge_kb of each VMA in `vmas` from /proc/PID/smaps text (matched by range).
Status ParseSmapsVmFlags(std::string_view smaps_text, std::vector<Vma>* vmas);
// maps + smaps of a process.
Result<std::vector<Vma>> ReadVmas(pid_t pid);

// /proc/PID/stat. Field names as in proc(5).
struct Stat {
  pid_t pid = 0;
  std::string comm;  // may contain spaces and parentheses
  char state = '?';
  pid_t ppid = 0;
  pid_t pgrp = 0;
  pid_t session = 0;
  int tty_nr = 0;
  pid_t tpgid = 0;
  uint64_t flags = 0;  // PF_* (PF_KTHREAD = 0x00200000)
  int64_t priority = 0;
  int64_t nice = 0;
  int64_t num_threads = 0;
  uint64_t starttime = 0;
  uint64_t startcode = 0;
  uint64_t endcode = 0;
  uint64_t startstack = 0;
  int exit_signal = 0;
  uint32_t rt_priority = 0;
  uint32_t policy = 0;
  uint64_t start_data = 0;
  uint64_t end_data = 0;
  uint64_t start_brk = 0;
  uint64_t arg_start = 0;
  uint64_t arg_end = 0;
  uint64_t env_start = 0;
  uint64_t env_end = 0;
  int exit_code = 0;
};
Result<Stat> ParseStat(std::string_view text);
Result<Stat> ReadStat(pid_t pid);
Result<Stat> ReadTaskStat(pid_t pid, pid_t tid);
// When `pid` started, in seconds since the epoch, rounded down: btime of
// /proc/stat (itself rounded down) plus its starttime, so never after the true
// start (unless the clock was set back since boot).
Result<int64_t> StartedAtEpoch(pid_t pid);

// /proc/PID/status (the fields cryo uses).
struct ProcStatus {
  std::string name;
  uint32_t umask = 0;
  char state = '?';
  pid_t tgid = 0;
  pid_t pid = 0;
  pid_t ppid = 0;
  pid_t tracer_pid = 0;
  uint32_t uid[4] = {};  // real, effective, saved, fs
  uint32_t gid[4] = {};
  std::vector<uint32_t> groups;
  std::vector<pid_t> ns_tgid;  // NStgid: outermost first
  std::vector<pid_t> ns_pid;   // NSpid
  std::vector<pid_t> ns_pgid;  // NSpgid
  std::vector<pid_t> ns_sid;   // NSsid
  int64_t threads = 0;
  uint64_t sig_pnd = 0;  // per-thread pending
  uint64_t shd_pnd = 0;  // shared pending
  uint64_t sig_blk = 0;
  uint64_t sig_ign = 0;
  uint64_t sig_cgt = 0;
  uint64_t cap_inh = 0;
  uint64_t cap_prm = 0;
  uint64_t cap_eff = 0;
  uint64_t cap_bnd = 0;
  uint64_t cap_amb = 0;
  int no_new_privs = 0;
  int seccomp = 0;
  int seccomp_filters = 0;
};
Result<ProcStatus> ParseStatus(std::string_view text);
Result<ProcStatus> ReadStatus(pid_t pid);

// /proc/PID/limits. Keyed by RLIMIT_* number; RLIM_INFINITY for "unlimited".
struct Limit {
  int resource = 0;
  uint64_t soft = 0;
  uint64_t hard = 0;
};
Result<std::vector<Limit>> ParseLimits(std::string_view text);
Result<std::vector<Limit>> ReadLimits(pid_t pid);

// /proc/PID/fdinfo/FD. pos, flags (octal in the file), mnt_id and ino are parsed;
// every line (including those) is kept in `fields` by its key, value trimmed.
struct FdInfo {
  uint64_t pos = 0;
  uint32_t flags = 0;
  int mnt_id = 0;
  uint64_t ino = 0;
  std::multimap<std::string, std::string> fields;
  // Not from fdinfo: fcntl(2) F_GETOWN_EX and F_GETSIG as the dump read them
  // on its duplicate of the fd (files/fd_owner.cc), so that the audit does
  // not take the fd a second time; owner_read is false when they were not
  // read (an O_PATH fd has no owner).
  bool owner_read = false;
  int owner_type = 0, owner_pid = 0, owner_sig = 0;
};
Result<FdInfo> ParseFdInfo(std::string_view text);
Result<FdInfo> ReadFdInfo(pid_t pid, int fd);

// The open fd numbers of a process, ascending (from /proc/PID/fd).
Result<std::vector<int>> ListFds(pid_t pid);
// The thread ids of a process, ascending (from /proc/PID/task).
Result<std::vector<pid_t>> ListThreads(pid_t pid);
// /proc/PID/task/TID/children: the children of one thread.
Result<std::vector<pid_t>> ReadChildren(pid_t pid, pid_t tid);

// /proc/PID/auxv as 64-bit words (type, value pairs, ending with AT_NULL).
Result<std::vector<uint64_t>> ReadAuxv(pid_t pid);

// One fd of a process, as /proc shows it.
struct OutsideFd {
  pid_t pid;
  const char* fd;         // its number, as in /proc/PID/fd
  std::string path;       // /proc/PID/fd/N (stat it for the open file)
  std::string link;       // what it points to
};

// Calls `fn` for every process in /proc (cryo and kernel threads included),
// until `fn` returns an error, which is returned.
Status ForEachPid(const std::function<Status(pid_t pid)>& fn);
// Calls `fn` for every process (by pid, from /proc) but those in `skip` and
// cryo itself, until `fn` returns an error, which is returned.
Status ForEachPidOutside(const std::set<pid_t>& skip, const std::function<Status(pid_t)>& fn);

// Calls `fn` for every fd of every process but those in `skip` and cryo
// itself, until `fn` returns an error, which is returned. Processes that exit
// meanwhile, kernel threads and fds that close are skipped.
Status ForEachFdOutside(const std::set<pid_t>& skip, const std::function<Status(const OutsideFd&)>& fn);

// One line of /proc/PID/mountinfo (proc(5)); paths unescaped (\ooo).
struct MountInfo {
  std::string root;          // the mounted directory of the file system
  std::string mount_point;   // relative to the reader's root
  std::string fstype;        // "ext4", "cgroup", "cgroup2", ...
  std::vector<std::string> super_options;  // comma-separated list after the source
};
Result<std::vector<MountInfo>> ParseMountInfo(std::string_view text);
// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string UnescapeMountField(std::string_view s);

// Calls `fn(pid, tid)` for every thread of every process (but cryo's own),
// until `fn` returns an error, which is returned. Processes and threads that
// exit meanwhile are skipped.
Status ForEachTask(const std::function<Status(pid_t pid, pid_t tid)>& fn);

}  // namespace cryo::proc
