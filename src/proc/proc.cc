#include "proc/proc.h"

#include <dirent.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include <algorithm>
#include <charconv>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <unordered_map>

#include "base/file_util.h"
#include "base/parse_number.h"

namespace cryo::proc {
namespace {

std::string ProcPath(pid_t pid, const std::string& rest) { return "/proc/" + std::to_string(pid) + "/" + rest; }

template <typename T>
bool ParseList(const std::vector<std::string_view>& words, std::vector<T>* out) {
  out->clear();
  for (std::string_view w : words) {
    T x;
    if (!ParseNumber(w, &x)) return false;
    out->push_back(x);
  }
  return true;
}

// Returns the next whitespace-separated word of *s and advances past it.
std::string_view NextWord(std::string_view* s) {
  size_t b = s->find_first_not_of(" \t");
  if (b == std::string_view::npos) b = s->size();
  size_t e = s->find_first_of(" \t", b);
  if (e == std::string_view::npos) e = s->size();
  std::string_view w = s->substr(b, e - b);
  s->remove_prefix(e);
  return w;
}

std::string Quote(std::string_view s) {
  // Appended piece by piece: GCC 12 at -O3 reports a false -Wrestrict for
  // `"\"" + std::string(s) + "\""` (GCC bug 105329).
  std::string q;
  q.reserve(s.size() + 2);
  q += '"';
  q += s;
  q += '"';
  return q;
}

std::string HexRange(const Vma& v) {
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%" PRIx64 "-%" PRIx64, v.start, v.end);
  return buf;
}

// One maps line (also an smaps VMA header).
Result<Vma> ParseMapsLine(std::string_view line) {
  auto bad = [&] { return Status::Error("malformed maps line " + Quote(line)); };
  std::string_view rest = line;
  std::string_view range = NextWord(&rest), perms = NextWord(&rest), off = NextWord(&rest), dev = NextWord(&rest),
                   ino = NextWord(&rest);
  size_t dash = range.find('-'), colon = dev.find(':');
  if (dash == std::string_view::npos || colon == std::string_view::npos || perms.size() != 4) return bad();
  Vma v;
  if (!ParseNumber(range.substr(0, dash), &v.start, 16) || !ParseNumber(range.substr(dash + 1), &v.end, 16) ||
      !ParseNumber(off, &v.pgoff, 16) || !ParseNumber(dev.substr(0, colon), &v.dev_major, 16) ||
      !ParseNumber(dev.substr(colon + 1), &v.dev_minor, 16) || !ParseNumber(ino, &v.inode) || v.start >= v.end)
    return bad();
  const char* want = "rwx";
  for (int i = 0; i < 3; ++i)
    if (perms[i] != want[i] && perms[i] != '-') return bad();
  if (perms[3] != 's' && perms[3] != 'p') return bad();
  v.prot = (perms[0] == 'r' ? PROT_READ : 0) | (perms[1] == 'w' ? PROT_WRITE : 0) | (perms[2] == 'x' ? PROT_EXEC : 0);
  v.shared = perms[3] == 's';
  // The name starts after the padding and runs to the end of the line (it may contain spaces).
  size_t b = rest.find_first_not_of(" \t");
  std::string_view name = b == std::string_view::npos ? std::string_view() : rest.substr(b);
  constexpr std::string_view kDeleted = " (deleted)";
  if (name.size() > kDeleted.size() && name.ends_with(kDeleted)) {
    name.remove_suffix(kDeleted.size());
    v.deleted = true;
  }
  v.name = std::string(name);
  return v;
}

}  // namespace

// smaps: a maps-format header per VMA followed by "Key: value" lines.
Result<std::vector<Vma>> ParseSmaps(std::string_view text) {
  std::vector<Vma> vmas;
  for (std::string_view line : SplitLines(text)) {
    if (Trim(line).empty()) continue;
    std::string_view rest = line;
    std::string_view key = NextWord(&rest);
    if (!key.ends_with(':')) {
      CRYO_ASSIGN_OR_RETURN(Vma v, ParseMapsLine(line));
      vmas.push_back(std::move(v));
      continue;
    }
    if (vmas.empty()) return Status::Error("smaps field before any VMA header: " + Quote(line));
    if (key == "KernelPageSize:") {
      // "KernelPageSize:     2048 kB"
      const std::string_view n = NextWord(&rest);
      uint64_t kb = 0;
      for (char c : n) {
        if (c < '0' || c > '9') return Status::Error("smaps KernelPageSize not a number: " + Quote(line));
        kb = kb * 10 + static_cast<uint64_t>(c - '0');
      }
      vmas.back().kernel_page_size = kb << 10;
    }
    if (key == "VmFlags:") {
      auto& flags = vmas.back().vm_flags;
      flags.clear();
      for (std::string_view f : SplitWords(rest)) flags.emplace_back(f);
    } else if (key == "AnonHugePages:") {
      if (!ParseNumber(NextWord(&rest), &vmas.back().anon_huge_kb)) return Status::Error("malformed smaps line " + Quote(line));
    }
  }
  return vmas;
}

bool Vma::HasFlag(std::string_view f) const { return std::find(vm_flags.begin(), vm_flags.end(), f) != vm_flags.end(); }

Result<std::vector<Vma>> ParseMaps(std::string_view text) {
  std::vector<Vma> vmas;
  for (std::string_view line : SplitLines(text)) {
    if (Trim(line).empty()) continue;
    CRYO_ASSIGN_OR_RETURN(Vma v, ParseMapsLine(line));
    vmas.push_back(std::move(v));
  }
  return vmas;
}

Status ParseSmapsVmFlags(std::string_view smaps_text, std::vector<Vma>* vmas) {
  CRYO_ASSIGN_OR_RETURN(std::vector<Vma> parsed, ParseSmaps(smaps_text));
  std::unordered_map<uint64_t, Vma*> by_start;
  for (Vma& v : *vmas) by_start[v.start] = &v;
  for (Vma& p : parsed) {
    auto it = by_start.find(p.start);
    if (it == by_start.end() || it->second->end != p.end)
      return Status::Error("smaps VMA " + HexRange(p) + " not in maps");
    it->second->vm_flags = std::move(p.vm_flags);
    it->second->anon_huge_kb = p.anon_huge_kb;
  }
  return Status::Ok();
}

Result<std::vector<Vma>> ReadVmas(pid_t pid) {
  std::string path = ProcPath(pid, "smaps");
  CRYO_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  auto vmas = ParseSmaps(text);
  if (!vmas.ok()) return vmas.status().Prefixed(path);
  return vmas;
}

Result<Stat> ParseStat(std::string_view text) {
  std::string_view line = Trim(text);
  auto bad = [&] { return Status::Error("malformed stat line " + Quote(line)); };
  // comm is raw (unescaped), so it is delimited by the first '(' and the last ')'.
  size_t open = line.find('('), close = line.rfind(')');
  if (open == std::string_view::npos || close == std::string_view::npos || close < open) return bad();
  Stat st;
  if (!ParseNumber(Trim(line.substr(0, open)), &st.pid)) return bad();
  st.comm = std::string(line.substr(open + 1, close - open - 1));
  std::vector<std::string_view> w = SplitWords(line.substr(close + 1));
  if (w.size() < 50 || w[0].size() != 1) return bad();
  auto f = [&](int n) { return w[n - 3]; };  // proc(5) field numbers start at 1 (pid), 2 (comm)
  st.state = f(3)[0];
  bool ok = ParseNumber(f(4), &st.ppid) && ParseNumber(f(5), &st.pgrp) && ParseNumber(f(6), &st.session) &&
            ParseNumber(f(7), &st.tty_nr) && ParseNumber(f(8), &st.tpgid) && ParseNumber(f(9), &st.flags) &&
            ParseNumber(f(18), &st.priority) && ParseNumber(f(19), &st.nice) && ParseNumber(f(20), &st.num_threads) &&
            ParseNumber(f(22), &st.starttime) && ParseNumber(f(26), &st.startcode) && ParseNumber(f(27), &st.endcode) &&
            ParseNumber(f(28), &st.startstack) && ParseNumber(f(38), &st.exit_signal) && ParseNumber(f(40), &st.rt_priority) &&
            ParseNumber(f(41), &st.policy) && ParseNumber(f(45), &st.start_data) && ParseNumber(f(46), &st.end_data) &&
            ParseNumber(f(47), &st.start_brk) && ParseNumber(f(48), &st.arg_start) && ParseNumber(f(49), &st.arg_end) &&
            ParseNumber(f(50), &st.env_start) && ParseNumber(f(51), &st.env_end) && ParseNumber(f(52), &st.exit_code);
  if (!ok) return bad();
  return st;
}

Result<Stat> ReadStat(pid_t pid) {
  std::string path = ProcPath(pid, "stat");
  CRYO_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  auto st = ParseStat(text);
  if (!st.ok()) return st.status().Prefixed(path);
  return st;
}

Result<int64_t> StartedAtEpoch(pid_t pid) {
  CRYO_ASSIGN_OR_RETURN(Stat st, ReadStat(pid));
  CRYO_ASSIGN_OR_RETURN(std::string text, ReadFileToString("/proc/stat"));
  for (std::string_view line : SplitLines(text)) {
    if (!line.starts_with("btime ")) continue;
    int64_t btime = 0;
    if (!ParseNumber(line.substr(6), &btime)) break;
    const long ticks = ::sysconf(_SC_CLK_TCK);
    return btime + static_cast<int64_t>(st.starttime / static_cast<uint64_t>(ticks > 0 ? ticks : 100));
  }
  return Status::Error("/proc/stat: no btime line");
}

Result<Stat> ReadTaskStat(pid_t pid, pid_t tid) {
  std::string path = ProcPath(pid, "task/" + std::to_string(tid) + "/stat");
  CRYO_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  auto st = ParseStat(text);
  if (!st.ok()) return st.status().Prefixed(path);
  return st;
}

Result<ProcStatus> ParseStatus(std::string_view text) {
  ProcStatus s;
  unsigned required = 0;  // bits for Name, State, Pid, PPid, Uid, Gid: these have always been there
  for (std::string_view line : SplitLines(text)) {
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view key = line.substr(0, colon);
    std::string_view raw = line.substr(colon + 1);
    std::string_view val = Trim(raw);
    std::vector<std::string_view> words = SplitWords(val);
    auto ids = [&](uint32_t* out) {
      if (words.size() != 4) return false;
      for (int i = 0; i < 4; ++i)
        if (!ParseNumber(words[i], &out[i])) return false;
      return true;
    };
    bool ok = true;
    if (key == "Name") {
      // Only the tab after the colon is a separator; the name itself may end in spaces.
      s.name = std::string(raw.starts_with('\t') ? raw.substr(1) : raw);
      required |= 1u;
    } else if (key == "Umask") {
      ok = ParseNumber(val, &s.umask, 8);
    } else if (key == "State") {
      ok = !val.empty();
      if (ok) s.state = val[0];
      required |= 2u;
    } else if (key == "Tgid") {
      ok = ParseNumber(val, &s.tgid);
    } else if (key == "Pid") {
      ok = ParseNumber(val, &s.pid);
      required |= 4u;
    } else if (key == "PPid") {
      ok = ParseNumber(val, &s.ppid);
      required |= 8u;
    } else if (key == "TracerPid") {
      ok = ParseNumber(val, &s.tracer_pid);
    } else if (key == "Uid") {
      ok = ids(s.uid);
      required |= 16u;
    } else if (key == "Gid") {
      ok = ids(s.gid);
      required |= 32u;
    } else if (key == "Groups") {
      ok = ParseList(words, &s.groups);
    } else if (key == "NStgid") {
      ok = ParseList(words, &s.ns_tgid);
    } else if (key == "NSpid") {
      ok = ParseList(words, &s.ns_pid);
    } else if (key == "NSpgid") {
      ok = ParseList(words, &s.ns_pgid);
    } else if (key == "NSsid") {
      ok = ParseList(words, &s.ns_sid);
    } else if (key == "Threads") {
      ok = ParseNumber(val, &s.threads);
    } else if (key == "SigPnd") {
      ok = ParseNumber(val, &s.sig_pnd, 16);
    } else if (key == "ShdPnd") {
      ok = ParseNumber(val, &s.shd_pnd, 16);
    } else if (key == "SigBlk") {
      ok = ParseNumber(val, &s.sig_blk, 16);
    } else if (key == "SigIgn") {
      ok = ParseNumber(val, &s.sig_ign, 16);
    } else if (key == "SigCgt") {
      ok = ParseNumber(val, &s.sig_cgt, 16);
    } else if (key == "CapInh") {
      ok = ParseNumber(val, &s.cap_inh, 16);
    } else if (key == "CapPrm") {
      ok = ParseNumber(val, &s.cap_prm, 16);
    } else if (key == "CapEff") {
      ok = ParseNumber(val, &s.cap_eff, 16);
    } else if (key == "CapBnd") {
      ok = ParseNumber(val, &s.cap_bnd, 16);
    } else if (key == "CapAmb") {
      ok = ParseNumber(val, &s.cap_amb, 16);
    } else if (key == "NoNewPrivs") {
      ok = ParseNumber(val, &s.no_new_privs);
    } else if (key == "Seccomp") {
      ok = ParseNumber(val, &s.seccomp);
    } else if (key == "Seccomp_filters") {
      ok = ParseNumber(val, &s.seccomp_filters);
    }
    if (!ok) return Status::Error("malformed status line " + Quote(line));
  }
  if (required != 0x3f) return Status::Error("status lacks one of Name, State, Pid, PPid, Uid, Gid");
  return s;
}

Result<ProcStatus> ReadStatus(pid_t pid) {
  std::string path = ProcPath(pid, "status");
  CRYO_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  auto s = ParseStatus(text);
  if (!s.ok()) return s.status().Prefixed(path);
  return s;
}

Result<std::vector<Limit>> ParseLimits(std::string_view text) {
  struct Name {
    std::string_view name;
    int resource;
  };
  static constexpr Name kNames[] = {
      {"Max cpu time", RLIMIT_CPU},
      {"Max file size", RLIMIT_FSIZE},
      {"Max data size", RLIMIT_DATA},
      {"Max stack size", RLIMIT_STACK},
      {"Max core file size", RLIMIT_CORE},
      {"Max resident set", RLIMIT_RSS},
      {"Max processes", RLIMIT_NPROC},
      {"Max open files", RLIMIT_NOFILE},
      {"Max locked memory", RLIMIT_MEMLOCK},
      {"Max address space", RLIMIT_AS},
      {"Max file locks", RLIMIT_LOCKS},
      {"Max pending signals", RLIMIT_SIGPENDING},
      {"Max msgqueue size", RLIMIT_MSGQUEUE},
      {"Max nice priority", RLIMIT_NICE},
      {"Max realtime priority", RLIMIT_RTPRIO},
      {"Max realtime timeout", RLIMIT_RTTIME},
  };
  auto value = [](std::string_view w, uint64_t* out) {
    if (w == "unlimited") {
      *out = RLIM_INFINITY;
      return true;
    }
    return ParseNumber(w, out);
  };
  std::vector<Limit> limits;
  for (std::string_view line : SplitLines(text)) {
    if (Trim(line).empty() || StartsWith(line, "Limit ")) continue;
    auto known = std::find_if(std::begin(kNames), std::end(kNames), [&](const Name& n) {
      return StartsWith(line, n.name) && line.size() > n.name.size() && line[n.name.size()] == ' ';
    });
    // Columns after the name: soft, hard, and units (absent for the priority rows).
    std::vector<std::string_view> w =
        SplitWords(known == std::end(kNames) ? std::string_view() : line.substr(known->name.size()));
    Limit l;
    if (known == std::end(kNames) || w.size() < 2 || w.size() > 3 || !value(w[0], &l.soft) || !value(w[1], &l.hard))
      return Status::Error("malformed limits line " + Quote(line));
    l.resource = known->resource;
    limits.push_back(l);
  }
  return limits;
}

Result<std::vector<Limit>> ReadLimits(pid_t pid) {
  std::string path = ProcPath(pid, "limits");
  CRYO_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  auto l = ParseLimits(text);
  if (!l.ok()) return l.status().Prefixed(path);
  return l;
}

Result<FdInfo> ParseFdInfo(std::string_view text) {
  FdInfo info;
  bool has_pos = false, has_flags = false;
  for (std::string_view line : SplitLines(text)) {
    if (Trim(line).empty()) continue;
    size_t colon = line.find(':');
    std::string_view key = Trim(line.substr(0, colon));
    std::string_view val = colon == std::string_view::npos ? std::string_view() : Trim(line.substr(colon + 1));
    bool ok = true;
    if (key == "pos") {
      ok = has_pos = ParseNumber(val, &info.pos);
    } else if (key == "flags") {
      ok = has_flags = ParseNumber(val, &info.flags, 8);
    } else if (key == "mnt_id") {
      ok = ParseNumber(val, &info.mnt_id);
    } else if (key == "ino") {
      ok = ParseNumber(val, &info.ino);
    }
    if (!ok) return Status::Error("malformed fdinfo line " + Quote(line));
    info.fields.emplace(key, val);
  }
  if (!has_pos || !has_flags) return Status::Error("fdinfo lacks pos or flags");
  return info;
}

Result<FdInfo> ReadFdInfo(pid_t pid, int fd) {
  std::string path = ProcPath(pid, "fdinfo/" + std::to_string(fd));
  CRYO_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  auto info = ParseFdInfo(text);
  if (!info.ok()) return info.status().Prefixed(path);
  return info;
}

namespace {

// The numeric entry names of a directory, ascending.
Result<std::vector<int>> ListNumericDir(const std::string& path) {
  DIR* dir = ::opendir(path.c_str());
  if (dir == nullptr) return Status::FromErrno("opendir " + path);
  std::vector<int> out;
  errno = 0;
  while (dirent* e = ::readdir(dir)) {
    int n;
    if (ParseNumber(std::string_view(e->d_name), &n)) out.push_back(n);
  }
  int err = errno;
  ::closedir(dir);
  if (err != 0) return Status::Errno(err, "readdir " + path);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

Result<std::vector<int>> ListFds(pid_t pid) { return ListNumericDir(ProcPath(pid, "fd")); }

Result<std::vector<pid_t>> ListThreads(pid_t pid) { return ListNumericDir(ProcPath(pid, "task")); }

Result<std::vector<pid_t>> ReadChildren(pid_t pid, pid_t tid) {
  std::string path = ProcPath(pid, "task/" + std::to_string(tid) + "/children");
  CRYO_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  std::vector<pid_t> out;
  for (std::string_view w : SplitWords(Trim(text))) {
    pid_t p;
    if (!ParseNumber(w, &p)) return Status::Error(path + ": malformed pid " + Quote(w));
    out.push_back(p);
  }
  return out;
}

Result<std::vector<uint64_t>> ReadAuxv(pid_t pid) {
  std::string path = ProcPath(pid, "auxv");
  CRYO_ASSIGN_OR_RETURN(std::string data, ReadFileToString(path));
  if (data.size() % (2 * sizeof(uint64_t)) != 0)
    return Status::Error(path + ": size " + std::to_string(data.size()) + " is not a multiple of 16");
  std::vector<uint64_t> out(data.size() / sizeof(uint64_t));
  std::memcpy(out.data(), data.data(), data.size());
  return out;
}

Status ForEachPid(const std::function<Status(pid_t pid)>& fn) {
  DIR* proc = ::opendir("/proc");
  if (!proc) return Status::FromErrno("opendir /proc");
  Status result;
  while (struct dirent* e = ::readdir(proc)) {
    char* end;
    const long pid = std::strtol(e->d_name, &end, 10);
    if (*end || pid <= 0) continue;
    result = fn(static_cast<pid_t>(pid));
    if (!result.ok()) break;
  }
  ::closedir(proc);
  return result;
}

Status ForEachPidOutside(const std::set<pid_t>& skip, const std::function<Status(pid_t)>& fn) {
  return ForEachPid([&](pid_t pid) {
    if (skip.count(pid) || pid == ::getpid()) return Status::Ok();
    return fn(pid);
  });
}

Status ForEachFdOutside(const std::set<pid_t>& skip, const std::function<Status(const OutsideFd&)>& fn) {
  return ForEachPidOutside(skip, [&](pid_t pid) {
    const std::string dir = "/proc/" + std::to_string(pid) + "/fd";
    DIR* fds = ::opendir(dir.c_str());
    if (!fds) return Status::Ok();  // gone, or a kernel thread
    Status result;
    while (struct dirent* f = ::readdir(fds)) {
      if (f->d_name[0] == '.') continue;
      OutsideFd o{pid, f->d_name, dir + "/" + f->d_name, {}};
      auto link = ReadLink(o.path);
      if (!link.ok()) continue;
      o.link = std::move(*link);
      result = fn(o);
      if (!result.ok()) break;
    }
    ::closedir(fds);
    return result;
  });
}

std::string UnescapeMountField(std::string_view s) {
  auto oct = [](char c) { return c >= '0' && c <= '7'; };
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && oct(s[i + 1]) && oct(s[i + 2]) && oct(s[i + 3])) {
      out.push_back(static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0')));
      i += 3;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

Result<std::vector<MountInfo>> ParseMountInfo(std::string_view text) {
  std::vector<MountInfo> out;
  for (std::string_view line : SplitLines(text)) {
    if (Trim(line).empty()) continue;
    const std::vector<std::string_view> w = SplitWords(line);
    // ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTIONS
    size_t dash = 6;
    while (dash < w.size() && w[dash] != "-") ++dash;
    if (dash + 3 >= w.size()) return Status::Error("malformed mountinfo line " + Quote(line));
    MountInfo m;
    m.root = UnescapeMountField(w[3]);
    m.mount_point = UnescapeMountField(w[4]);
    m.fstype = std::string(w[dash + 1]);
    const std::string_view opts = w[dash + 3];
    for (size_t start = 0; start <= opts.size();) {
      size_t comma = opts.find(',', start);
      if (comma == std::string_view::npos) comma = opts.size();
      if (comma > start) m.super_options.emplace_back(opts.substr(start, comma - start));
      start = comma + 1;
    }
    out.push_back(std::move(m));
  }
  return out;
}

Status ForEachTask(const std::function<Status(pid_t pid, pid_t tid)>& fn) {
  return ForEachPid([&](pid_t pid) {
    if (pid == ::getpid()) return Status::Ok();
    auto tids = ListThreads(pid);
    if (!tids.ok()) return Status::Ok();  // gone
    for (pid_t tid : *tids) CRYO_RETURN_IF_ERROR(fn(pid, tid));
    return Status::Ok();
  });
}

}  // namespace cryo::proc
