#include "cgroup/cgroup_settings.h"

#include <dirent.h>
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <map>

#include "base/clock.h"
#include "base/file_util.h"
#include "base/log.h"
#include "cgroup/cgroup_paths.h"

namespace cryo::cgroup {

namespace {

// How a file is written back. kValue: its content in one write. kLines:
// one write per line (per-device files: io.max, io.weight, blkio.throttle.*;
// the device numbers are this machine's, written as recorded). kControllers:
// cgroup.subtree_control, read "cpu memory", written "+cpu +memory".
enum class Kind { kValue, kLines, kControllers };

struct Knob {
  bool v2;
  const char* name;  // one '*' matches a page size: "hugetlb.*.max"
  Kind kind;
  // nullptr: always recorded. Else the value a fresh cgroup has (kUnlimited:
  // PAGE_COUNTER_MAX in bytes): recorded only when it reads otherwise, with
  // feature "cgroup-more-settings" (knobs added after "cgroup-settings": an
  // image of cgroups at their defaults stays restorable by an older cryo).
  const char* fresh = nullptr;
};

constexpr char kUnlimited[] = "unlimited";

// In the order they are written. cgroup-v1/cpusets.rst: a cpuset needs mems
// and cpus before tasks join. memory.rst (v1): memsw.limit_in_bytes must stay
// at or above limit_in_bytes, so the limit (from unlimited) goes first.
// sched-bwc.rst: the period before the quota, the burst after it.
// cgroup-v2.rst: cpuset.cpus.partition after cpuset.cpus; subtree_control
// last (it only matters to the children, made after it).
constexpr Knob kKnobs[] = {
    {false, "cpuset.mems", Kind::kValue},
    {false, "cpuset.cpus", Kind::kValue},
    {false, "memory.limit_in_bytes", Kind::kValue},
    {false, "memory.memsw.limit_in_bytes", Kind::kValue},
    {false, "memory.soft_limit_in_bytes", Kind::kValue},
    {false, "memory.swappiness", Kind::kValue},
    {false, "pids.max", Kind::kValue},
    {false, "cpu.cfs_period_us", Kind::kValue},
    {false, "cpu.cfs_quota_us", Kind::kValue},
    {false, "cpu.cfs_burst_us", Kind::kValue},
    {false, "cpu.shares", Kind::kValue},
    {false, "cpu.idle", Kind::kValue},
    {false, "cpu.rt_period_us", Kind::kValue},
    {false, "cpu.rt_runtime_us", Kind::kValue},
    {false, "blkio.weight", Kind::kValue},
    {false, "blkio.weight_device", Kind::kLines},
    {false, "blkio.bfq.weight", Kind::kValue},
    {false, "blkio.throttle.read_bps_device", Kind::kLines},
    {false, "blkio.throttle.write_bps_device", Kind::kLines},
    {false, "blkio.throttle.read_iops_device", Kind::kLines},
    {false, "blkio.throttle.write_iops_device", Kind::kLines},
    {false, "net_cls.classid", Kind::kValue},
    {false, "hugetlb.*.limit_in_bytes", Kind::kValue},
    // cgroup-v1/cpusets.rst flags, after cpus and mems (sched_load_balance
    // and sched_relax_domain_level are deprecated in 6.x but still obeyed).
    {false, "cpuset.mem_hardwall", Kind::kValue, "0"},
    {false, "cpuset.memory_migrate", Kind::kValue, "0"},
    {false, "cpuset.memory_spread_page", Kind::kValue, "0"},
    {false, "cpuset.memory_spread_slab", Kind::kValue, "0"},
    {false, "cpuset.sched_load_balance", Kind::kValue, "1"},
    {false, "cpuset.sched_relax_domain_level", Kind::kValue, "-1"},
    // memory.rst (v1) 2.7.1: the socket buffer limit of the cgroup.
    {false, "memory.kmem.tcp.limit_in_bytes", Kind::kValue, kUnlimited},
    // cgroups-v1.rst 1.4: inherited by children made later, so last.
    {false, "notify_on_release", Kind::kValue, "0"},
    {false, "cgroup.clone_children", Kind::kValue, "0"},
    {true, "cpuset.mems", Kind::kValue},
    {true, "cpuset.cpus", Kind::kValue},
    {true, "cpuset.cpus.exclusive", Kind::kValue},
    {true, "cpuset.cpus.partition", Kind::kValue},
    {true, "memory.min", Kind::kValue},
    {true, "memory.low", Kind::kValue},
    {true, "memory.high", Kind::kValue},
    {true, "memory.max", Kind::kValue},
    {true, "memory.swap.high", Kind::kValue},
    {true, "memory.swap.max", Kind::kValue},
    {true, "memory.zswap.max", Kind::kValue},
    {true, "memory.zswap.writeback", Kind::kValue},
    {true, "memory.oom.group", Kind::kValue},
    {true, "pids.max", Kind::kValue},
    {true, "cpu.weight", Kind::kValue},
    {true, "cpu.max", Kind::kValue},
    {true, "cpu.max.burst", Kind::kValue},
    {true, "cpu.idle", Kind::kValue},
    {true, "cpu.uclamp.min", Kind::kValue},
    {true, "cpu.uclamp.max", Kind::kValue},
    {true, "io.weight", Kind::kLines},
    {true, "io.bfq.weight", Kind::kLines},
    {true, "io.max", Kind::kLines},
    {true, "io.latency", Kind::kLines},
    {true, "hugetlb.*.max", Kind::kValue},
    {true, "misc.max", Kind::kLines},
    {true, "io.prio.class", Kind::kValue, "no-change"},
    {true, "cgroup.pressure", Kind::kValue, "1"},  // cgroup-v2.rst: PSI accounting of the cgroup
    {true, "cgroup.max.depth", Kind::kValue},
    {true, "cgroup.max.descendants", Kind::kValue},
    {true, "cgroup.subtree_control", Kind::kControllers},
};

// `name` matches `pattern` ('*': one or more characters without '/' or '*').
bool Matches(std::string_view pattern, std::string_view name) {
  const size_t star = pattern.find('*');
  if (star == std::string_view::npos) return pattern == name;
  const std::string_view pre = pattern.substr(0, star), post = pattern.substr(star + 1);
  if (name.size() <= pre.size() + post.size() || !name.starts_with(pre) || !name.ends_with(post)) return false;
  const std::string_view mid = name.substr(pre.size(), name.size() - pre.size() - post.size());
  return mid.find_first_of("/*") == std::string_view::npos;
}

// Writable files that hold no state a restore loses, or whose state is
// restored or refused elsewhere. Every other writable file of a recorded
// cgroup that cryo does not know is refused unless it reads as in the parent
// cgroup (UnknownFiles).
constexpr const char* kNotSettings[] = {
    // membership: restored per process (cgroup_dump.h)
    "cgroup.procs", "tasks", "cgroup.threads",
    // actions, nothing to read back
    "cgroup.kill", "memory.force_empty", "memory.reclaim", "blkio.reset_stats",
    // counters a write resets (a restored cgroup counts afresh, as for usage)
    "memory.failcnt", "memory.max_usage_in_bytes", "memory.memsw.failcnt", "memory.memsw.max_usage_in_bytes",
    "memory.kmem.failcnt", "memory.kmem.max_usage_in_bytes", "memory.kmem.tcp.failcnt",
    "memory.kmem.tcp.max_usage_in_bytes", "cpuacct.usage", "memory.peak", "memory.swap.peak", "hugetlb.*.failcnt",
    "hugetlb.*.max_usage_in_bytes", "hugetlb.*.rsvd.failcnt", "hugetlb.*.rsvd.max_usage_in_bytes",
    // notifications (eventfd, PSI triggers) belong to the fd that set them up
    "cgroup.event_control", "cpu.pressure", "io.pressure", "memory.pressure", "irq.pressure",
    "memory.pressure_level",
    // a hierarchy's root only (cryo never makes a root)
    "release_agent", "cgroup.sane_behavior", "cpuset.memory_pressure_enabled",
    // checked by Refusal below
    "cgroup.freeze", "cgroup.type", "freezer.state", "devices.allow", "devices.deny", "devices.list",
    "memory.oom_control", "cpuset.cpu_exclusive", "cpuset.mem_exclusive", "rdma.max", "memory.kmem.limit_in_bytes",
    "memory.move_charge_at_immigrate", "memory.use_hierarchy", "net_prio.ifpriomap",
};

const Knob* FindKnob(const std::string& hierarchy, const std::string& name) {
  for (const Knob& k : kKnobs)
    if (k.v2 == hierarchy.empty() && Matches(k.name, name)) return &k;
  return nullptr;
}

Result<std::vector<std::string>> ListDir(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return Status::FromErrno("opendir " + dir);
  std::vector<std::string> out;
  errno = 0;
  while (struct dirent* e = ::readdir(d)) out.emplace_back(e->d_name);
  const int err = errno;
  ::closedir(d);
  if (err) return Status::Errno(err, "readdir " + dir);
  std::sort(out.begin(), out.end());
  return out;
}

// The file's content trimmed, "" with *exists false if there is no such file.
Result<std::string> ReadSetting(const std::string& file, bool* exists) {
  auto r = ReadFileToString(file);
  *exists = r.ok();
  if (r.ok()) return std::string(Trim(*r));
  if (r.status().err() == ENOENT) return std::string();
  return r.status();
}

std::vector<std::string> SortedLines(std::string_view text) {
  std::vector<std::string> out;
  for (std::string_view l : SplitLines(text))
    if (!Trim(l).empty()) out.emplace_back(Trim(l));
  std::sort(out.begin(), out.end());
  return out;
}

bool SameValue(Kind kind, const std::string& a, const std::string& b) {
  if (kind == Kind::kValue) return a == b;
  if (kind == Kind::kLines) return SortedLines(a) == SortedLines(b);
  std::vector<std::string_view> wa = SplitWords(a), wb = SplitWords(b);
  std::sort(wa.begin(), wa.end());
  std::sort(wb.begin(), wb.end());
  return wa == wb;
}

std::string Shown(const std::string& v) { return v.empty() ? "(empty)" : "\"" + v + "\""; }

// PAGE_COUNTER_MAX in bytes, what an unlimited v1 memory limit reads
// (mm/memcontrol-v1.c: LONG_MAX / PAGE_SIZE pages).
std::string UnlimitedBytes() {
  const long page = ::sysconf(_SC_PAGESIZE);
  return std::to_string(LONG_MAX / page * page);
}

std::string FreshValue(const Knob& k) { return k.fresh == kUnlimited ? UnlimitedBytes() : std::string(k.fresh); }

bool NotASetting(const std::string& name) {
  for (const char* n : kNotSettings)
    if (Matches(n, name)) return true;
  return false;
}

// net_prio.ifpriomap ("DEVICE PRIO" lines, every device of the initial
// network namespace): a device missing on one side reads 0 (one may have
// come or gone between the two reads).
bool SamePrioMap(const std::string& a, const std::string& b) {
  auto parse = [](const std::string& text) {
    std::map<std::string, std::string> m;
    for (std::string_view l : SplitLines(text)) {
      std::vector<std::string_view> w = SplitWords(l);
      if (w.size() == 2 && w[1] != "0") m[std::string(w[0])] = std::string(w[1]);
    }
    return m;
  };
  return parse(a) == parse(b);
}

// Refusals (cgroup state that matters and is not restored), checked on the
// files as read. "" if none.
Result<std::string> Refusal(const std::string& dir, const std::string& parent, const std::string& hierarchy) {
  bool exists = false;
  auto read = [&](const std::string& name) { return ReadSetting(dir + "/" + name, &exists); };
  if (hierarchy.empty()) {
    CRYO_ASSIGN_OR_RETURN(std::string freeze, read("cgroup.freeze"));
    if (exists && freeze != "0") return std::string("it is frozen (cgroup.freeze " + freeze + ")");
    CRYO_ASSIGN_OR_RETURN(std::string type, read("cgroup.type"));
    if (exists && type != "domain")
      return std::string("its cgroup.type is " + type + " (threaded cgroups are not restored)");
  } else {
    CRYO_ASSIGN_OR_RETURN(std::string state, read("freezer.state"));
    if (exists && state != "THAWED") return std::string("its freezer.state is " + state);
    CRYO_ASSIGN_OR_RETURN(std::string devices, read("devices.list"));
    if (exists) {
      bool parent_exists = false;
      CRYO_ASSIGN_OR_RETURN(std::string inherited, ReadSetting(parent + "/devices.list", &parent_exists));
      if (devices != inherited)
        return std::string("it has device rules of its own (devices.list differs from its parent's)");
    }
    CRYO_ASSIGN_OR_RETURN(std::string oom, read("memory.oom_control"));
    if (exists && oom.find("oom_kill_disable 1") != std::string::npos)
      return std::string("it disables the OOM killer (memory.oom_control oom_kill_disable 1)");
    for (const char* f : {"cpuset.cpu_exclusive", "cpuset.mem_exclusive"}) {
      CRYO_ASSIGN_OR_RETURN(std::string v, read(f));
      if (exists && v != "0") return std::string("it is an exclusive cpuset (") + f + " " + v + ")";
    }
    // memory.rst (v1): kmem limits and charge moving are deprecated (6.x
    // ignores a kmem limit and refuses to move charges), and a cgroup outside
    // the hierarchy of its parent cannot be made on 6.x: none is made again.
    CRYO_ASSIGN_OR_RETURN(std::string kmem, read("memory.kmem.limit_in_bytes"));
    if (exists && kmem != UnlimitedBytes())
      return std::string("it has a kernel memory limit (memory.kmem.limit_in_bytes " + kmem + ")");
    CRYO_ASSIGN_OR_RETURN(std::string move, read("memory.move_charge_at_immigrate"));
    if (exists && move != "0")
      return std::string("it moves charges with its tasks (memory.move_charge_at_immigrate " + move + ")");
    CRYO_ASSIGN_OR_RETURN(std::string hier, read("memory.use_hierarchy"));
    if (exists && hier != "1") return std::string("it does not account hierarchically (memory.use_hierarchy " + hier + ")");
    // net_prio.rst: a new cgroup copies its parent's map; one of its own is
    // not made again (its device names are this machine's).
    CRYO_ASSIGN_OR_RETURN(std::string prio, read("net_prio.ifpriomap"));
    if (exists) {
      bool parent_exists = false;
      CRYO_ASSIGN_OR_RETURN(std::string inherited, ReadSetting(parent + "/net_prio.ifpriomap", &parent_exists));
      if (!SamePrioMap(prio, inherited))
        return std::string("it has network priorities of its own (net_prio.ifpriomap \"" + prio +
                           "\", its parent's \"" + inherited + "\")");
    }
  }
  CRYO_ASSIGN_OR_RETURN(std::string rdma, read("rdma.max"));
  if (exists && !rdma.empty()) return std::string("it has RDMA limits (rdma.max)");
  return std::string();
}

// A writable file cryo does not know (a newer kernel's, a vendor's) is state
// a restore would lose unless it reads as in the parent cgroup (inherited,
// or a default both have); without one in the parent, unless it reads as a
// fresh value ("", "0", "max", unlimited bytes). Write-only files (actions)
// hold nothing. "" if none, else the refusal.
Result<std::string> UnknownFiles(const std::string& dir, const std::string& parent,
                                 const std::string& hierarchy, const std::vector<std::string>& names) {
  for (const std::string& n : names) {
    if (n == "." || n == ".." || FindKnob(hierarchy, n) || NotASetting(n)) continue;
    struct stat st;
    if (::stat((dir + "/" + n).c_str(), &st) != 0) {
      if (errno == ENOENT) continue;
      return Status::FromErrno("stat " + dir + "/" + n);
    }
    if (!S_ISREG(st.st_mode) || !(st.st_mode & S_IWUSR) || !(st.st_mode & S_IRUSR)) continue;
    bool exists = false, parent_exists = false;
    auto v = ReadSetting(dir + "/" + n, &exists);
    if (!v.ok() && (v.status().err() == EINVAL || v.status().err() == EOPNOTSUPP)) continue;
    if (!v.ok()) return v.status();
    if (!exists) continue;
    auto p = ReadSetting(parent + "/" + n, &parent_exists);
    if (parent_exists && p.ok() && *p == *v) continue;
    if (!parent_exists && (v->empty() || *v == "0" || *v == "max" || *v == UnlimitedBytes())) continue;
    return std::string("it has " + n + " " + Shown(*v) + " (its parent " +
                       (parent_exists && p.ok() ? Shown(*p) : std::string("none")) +
                       "), a file cryo does not know");
  }
  return std::string();
}

}  // namespace

bool KnownSetting(const std::string& hierarchy, const std::string& name) { return FindKnob(hierarchy, name); }

Result<std::vector<image::CgroupSetting>> ReadSettings(const std::string& dir, const std::string& parent,
                                                       const std::string& hierarchy, const std::string& who) {
  CRYO_ASSIGN_OR_RETURN(std::string refusal, Refusal(dir, parent, hierarchy));
  if (!refusal.empty())
    return Status::Error(who + ": " + refusal + "; cryo does not restore that (restored cgroups get their limits only)");
  CRYO_ASSIGN_OR_RETURN(std::vector<std::string> names, ListDir(dir));
  auto unknown = UnknownFiles(dir, parent, hierarchy, names);
  if (!unknown.ok()) return unknown.status().Prefixed(who);
  if (!unknown->empty())
    return Status::Error(who + ": " + *unknown + "; cryo does not restore that (restored cgroups get the settings "
                         "cgroup_settings.h lists only)");
  std::vector<image::CgroupSetting> out;
  for (const Knob& k : kKnobs) {
    if (k.v2 != hierarchy.empty()) continue;
    for (const std::string& n : names) {
      if (!Matches(k.name, n)) continue;
      bool exists = false;
      auto v = ReadSetting(dir + "/" + n, &exists);
      if (!v.ok()) return v.status().Prefixed(who);
      if (!exists) continue;  // gone with a controller disabled meanwhile
      if (k.fresh && *v == FreshValue(k)) continue;
      image::CgroupSetting s;
      s.set_name(n);
      s.set_value(*v);
      out.push_back(std::move(s));
    }
  }
  return out;
}

Status DumpCgroupSettings(const CgroupRecords& records, image::NamespaceTable* out, std::set<std::string>* features) {
  // hierarchy -> relative paths a restore may create
  std::map<std::string, std::set<std::string>> wanted;
  for (const auto& [pid, rec] : records)
    for (const image::CgroupPath& c : rec) {
      std::string prefix;
      bool below = false;
      for (size_t start = 0; start < c.path().size();) {
        size_t slash = c.path().find('/', start);
        if (slash == std::string::npos) slash = c.path().size();
        const std::string comp = c.path().substr(start, slash - start);
        prefix += (prefix.empty() ? "" : "/") + comp;
        below = below || comp != "..";
        if (below) wanted[c.hierarchy()].insert(prefix);
        start = slash + 1;
      }
    }
  if (wanted.empty()) return Status::Ok();
  const double t0 = Now();
  CRYO_ASSIGN_OR_RETURN(std::vector<Membership> own, ReadProcCgroup("/proc/self/cgroup"));
  std::map<std::string, std::string> mine;
  for (const Membership& m : own) mine[m.hierarchy] = m.path;
  CRYO_ASSIGN_OR_RETURN(std::vector<proc::MountInfo> mounts, OwnMounts());
  for (const auto& [hierarchy, rels] : wanted) {
    for (const std::string& rel : rels) {  // parents before children (a prefix sorts first)
      CRYO_ASSIGN_OR_RETURN(std::string path, JoinPath(mine[hierarchy], rel));
      const std::string who = "cgroup " + path + " of hierarchy " + HierarchyName(hierarchy);
      auto dir = CgroupDir(mounts, hierarchy, path);
      if (!dir.ok()) return dir.status().Prefixed(who);
      auto files = ReadSettings(*dir, dir->substr(0, dir->rfind('/')), hierarchy, who);
      if (!files.ok()) return files.status();
      image::CgroupSettings* s = out->add_cgroup_settings();
      s->mutable_cgroup()->set_hierarchy(hierarchy);
      s->mutable_cgroup()->set_path(rel);
      for (image::CgroupSetting& f : *files) {
        if (FindKnob(hierarchy, f.name())->fresh) features->insert("cgroup-more-settings");
        *s->add_files() = std::move(f);
      }
    }
  }
  features->insert("cgroup-settings");
  LOG_DEBUG("cgroup settings of %d cgroups read in %.2f ms", out->cgroup_settings_size(), (Now() - t0) * 1e3);
  return Status::Ok();
}

Status CheckExistingSettings(const std::string& dir, const image::CgroupSettings& s) {
  for (const image::CgroupSetting& f : s.files()) {
    const Knob* k = FindKnob(s.cgroup().hierarchy(), f.name());
    if (!k) return Status::Error("cgroup " + dir + ": the image has setting " + f.name() + ", which cryo does not know");
    bool exists = false;
    CRYO_ASSIGN_OR_RETURN(std::string now, ReadSetting(dir + "/" + f.name(), &exists));
    if (!exists || !SameValue(k->kind, now, f.value()))
      return Status::Error("cgroup " + dir + " exists with " + f.name() + " " +
                           (exists ? Shown(now) : "missing") + ", the image has " + Shown(f.value()) +
                           ": remove it or restore elsewhere (--cgroup-root)");
  }
  return Status::Ok();
}

Status ApplySettings(const std::string& dir, const image::CgroupSettings& s) {
  for (const image::CgroupSetting& f : s.files()) {
    const std::string file = dir + "/" + f.name();
    const Knob* k = FindKnob(s.cgroup().hierarchy(), f.name());
    if (!k) return Status::Error("cgroup " + dir + ": the image has setting " + f.name() + ", which cryo does not know");
    bool exists = false;
    CRYO_ASSIGN_OR_RETURN(std::string fresh, ReadSetting(file, &exists));
    if (!exists)
      return Status::Error("cgroup " + dir + " has no " + f.name() +
                           " (its controller is not enabled in the parent's cgroup.subtree_control, or not here)");
    if (SameValue(k->kind, fresh, f.value())) continue;
    if (k->kind == Kind::kValue) {
      CRYO_RETURN_IF_ERROR(WriteToFile(file, f.value()).Prefixed("cgroup " + dir));
    } else if (k->kind == Kind::kLines) {
      const std::vector<std::string> had = SortedLines(fresh);
      for (const std::string& line : SortedLines(f.value()))
        if (!std::binary_search(had.begin(), had.end(), line))
          CRYO_RETURN_IF_ERROR(WriteToFile(file, line).Prefixed("cgroup " + dir));
    } else {
      std::string enable;
      for (std::string_view c : SplitWords(f.value())) enable += (enable.empty() ? "+" : " +") + std::string(c);
      CRYO_RETURN_IF_ERROR(WriteToFile(file, enable).Prefixed("cgroup " + dir));
    }
    CRYO_ASSIGN_OR_RETURN(std::string now, ReadSetting(file, &exists));
    if (!SameValue(k->kind, now, f.value()))
      return Status::Error("cgroup " + dir + ": " + f.name() + " reads " + Shown(now) + " after writing " +
                           Shown(f.value()));
    LOG_DEBUG("cgroup %s: %s = %s", dir.c_str(), f.name().c_str(), f.value().c_str());
  }
  return Status::Ok();
}

}  // namespace cryo::cgroup
