// cgroup settings on a fake cgroup directory (regular files): what is read
// from a v1 and a v2 cgroup, the refusals, the comparison with an existing
// cgroup and the writes to a fresh one. cgroup2 controllers cannot be
// enabled on this machine (memory, pids, cpu, cpuset, io are bound to v1
// hierarchies), so the v2 files are tested here.
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <climits>
#include <filesystem>
#include <map>

#include "base/file_util.h"
#include "cgroup/cgroup_settings.h"

namespace cryo::cgroup {
namespace {

class FakeCgroup : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/cryo-cgset-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    dir_ = root_ + "/cg";
    ASSERT_EQ(::mkdir(dir_.c_str(), 0755), 0);
  }
  void TearDown() override { std::filesystem::remove_all(root_); }
  // A file as the kernel shows it: 0644 a setting, 0444 a statistic.
  void Put(const std::string& dir, const std::string& name, const std::string& content, mode_t mode = 0644) {
    const std::string f = dir + "/" + name;
    int fd = ::open(f.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::write(fd, content.data(), content.size()), static_cast<ssize_t>(content.size()));
    ASSERT_EQ(::fchmod(fd, mode), 0);
    ::close(fd);
  }
  // ReadSettings' refusal (its message), "" if it reads.
  std::string Refusal(const std::string& hierarchy) {
    auto r = ReadSettings(dir_, root_, hierarchy, "cgroup /x");
    return r.ok() ? std::string() : r.status().message();
  }
  std::map<std::string, std::string> Read(const std::string& hierarchy) {
    auto r = ReadSettings(dir_, root_, hierarchy, "cg");
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    std::map<std::string, std::string> out;
    if (r.ok())
      for (const image::CgroupSetting& s : *r) out[s.name()] = s.value();
    return out;
  }
  std::string root_, dir_;
};

TEST_F(FakeCgroup, ReadsV2Limits) {
  Put(dir_, "memory.max", "268435456\n");
  Put(dir_, "memory.high", "max\n");
  Put(dir_, "pids.max", "40\n");
  Put(dir_, "cpu.max", "20000 100000\n");
  Put(dir_, "cpu.weight", "50\n");
  Put(dir_, "io.max", "8:0 rbps=1048576 wbps=max riops=max wiops=max\n");
  Put(dir_, "hugetlb.2MB.max", "max\n");
  Put(dir_, "cgroup.subtree_control", "memory pids\n");
  Put(dir_, "cgroup.type", "domain\n");
  Put(dir_, "cgroup.freeze", "0\n");
  Put(dir_, "memory.current", "4096\n", 0444);  // statistics: not a setting
  Put(dir_, "cgroup.procs", "");
  const auto got = Read("");
  EXPECT_EQ(got, (std::map<std::string, std::string>{
                     {"memory.max", "268435456"},
                     {"memory.high", "max"},
                     {"pids.max", "40"},
                     {"cpu.max", "20000 100000"},
                     {"cpu.weight", "50"},
                     {"io.max", "8:0 rbps=1048576 wbps=max riops=max wiops=max"},
                     {"hugetlb.2MB.max", "max"},
                     {"cgroup.subtree_control", "memory pids"},
                 }));
  // Read as v1: the v2 files are no v1 files cryo knows, set otherwise than
  // in the parent (which has none): refused by name (the first in order).
  const std::string v1 = Refusal("memory");
  EXPECT_NE(v1.find("cgroup /x: it has cgroup.subtree_control \"memory pids\" (its parent none), a file cryo does "
                    "not know"),
            std::string::npos)
      << v1;
  EXPECT_TRUE(KnownSetting("", "memory.max"));
  EXPECT_FALSE(KnownSetting("memory", "memory.max"));
  EXPECT_TRUE(KnownSetting("memory", "memory.limit_in_bytes"));
  EXPECT_TRUE(KnownSetting("hugetlb", "hugetlb.1GB.limit_in_bytes"));
  EXPECT_FALSE(KnownSetting("", "cgroup.procs"));
  EXPECT_FALSE(KnownSetting("", "hugetlb..max"));
  EXPECT_FALSE(KnownSetting("", "hugetlb.a/b.max"));
}

TEST_F(FakeCgroup, ReadsV1Limits) {
  Put(dir_, "memory.limit_in_bytes", "268435456\n");
  Put(dir_, "memory.usage_in_bytes", "4096\n", 0444);
  Put(dir_, "cpu.cfs_quota_us", "-1\n");
  Put(dir_, "blkio.throttle.read_bps_device", "8:0 1048576\n8:16 2097152\n");
  Put(dir_, "freezer.state", "THAWED\n");
  Put(dir_, "devices.list", "a *:* rwm\n");
  Put(root_, "devices.list", "a *:* rwm\n");
  EXPECT_EQ(Read("memory"), (std::map<std::string, std::string>{
                                {"memory.limit_in_bytes", "268435456"},
                                {"cpu.cfs_quota_us", "-1"},
                                {"blkio.throttle.read_bps_device", "8:0 1048576\n8:16 2097152"},
                            }));
}

TEST_F(FakeCgroup, RefusesWhatIsNotRestored) {
  auto refused = [&](const std::string& hierarchy, const std::string& file, const std::string& value) {
    Put(dir_, file, value);
    auto r = ReadSettings(dir_, root_, hierarchy, "cgroup /x");
    std::filesystem::remove(dir_ + "/" + file);
    return !r.ok() && r.status().message().find("cgroup /x") != std::string::npos;
  };
  EXPECT_TRUE(refused("", "cgroup.freeze", "1\n"));
  EXPECT_TRUE(refused("", "cgroup.type", "threaded\n"));
  EXPECT_TRUE(refused("", "rdma.max", "mlx4_0 hca_handle=2 hca_object=max\n"));
  EXPECT_TRUE(refused("freezer", "freezer.state", "FROZEN\n"));
  EXPECT_TRUE(refused("memory", "memory.oom_control", "oom_kill_disable 1\nunder_oom 0\n"));
  EXPECT_TRUE(refused("cpuset", "cpuset.cpu_exclusive", "1\n"));
  Put(root_, "devices.list", "a *:* rwm\n");
  EXPECT_TRUE(refused("devices", "devices.list", "c 1:3 rwm\n"));
  EXPECT_FALSE(refused("devices", "devices.list", "a *:* rwm\n"));
  EXPECT_FALSE(refused("freezer", "freezer.state", "THAWED\n"));
  EXPECT_FALSE(refused("", "cgroup.type", "domain\n"));
}

// Knobs added with feature cgroup-more-settings: recorded only when not at a
// fresh cgroup's value.
TEST_F(FakeCgroup, RecordsLaterKnobsWhenNotFresh) {
  const std::string unlimited = std::to_string(LONG_MAX / ::sysconf(_SC_PAGESIZE) * ::sysconf(_SC_PAGESIZE));
  Put(dir_, "cpuset.mem_hardwall", "1\n");
  Put(dir_, "cpuset.memory_migrate", "0\n");
  Put(dir_, "cpuset.sched_load_balance", "1\n");
  Put(dir_, "cpuset.sched_relax_domain_level", "1\n");
  Put(dir_, "memory.kmem.tcp.limit_in_bytes", unlimited + "\n");
  Put(dir_, "notify_on_release", "1\n");
  Put(dir_, "cgroup.clone_children", "0\n");
  EXPECT_EQ(Read("cpuset"), (std::map<std::string, std::string>{{"cpuset.mem_hardwall", "1"},
                                                                 {"cpuset.sched_relax_domain_level", "1"},
                                                                 {"notify_on_release", "1"}}));
  Put(dir_, "memory.kmem.tcp.limit_in_bytes", "16777216\n");
  EXPECT_EQ(Read("memory").count("memory.kmem.tcp.limit_in_bytes"), 1u);
  std::filesystem::remove_all(dir_);  // a v2 cgroup now
  ASSERT_EQ(::mkdir(dir_.c_str(), 0755), 0);
  Put(dir_, "cgroup.pressure", "0\n");
  Put(dir_, "io.prio.class", "no-change\n");
  EXPECT_EQ(Read(""), (std::map<std::string, std::string>{{"cgroup.pressure", "0"}}));
  EXPECT_TRUE(KnownSetting("", "cgroup.pressure"));
  EXPECT_TRUE(KnownSetting("cpu", "notify_on_release"));
}

// v1 memory and net_prio state that is not made again, the writable files
// cryo does not know, and what is neither.
TEST_F(FakeCgroup, RefusesOtherV1StateAndUnknownFiles) {
  const std::string unlimited = std::to_string(LONG_MAX / ::sysconf(_SC_PAGESIZE) * ::sysconf(_SC_PAGESIZE));
  Put(dir_, "memory.kmem.limit_in_bytes", unlimited + "\n");
  Put(dir_, "memory.move_charge_at_immigrate", "0\n");
  Put(dir_, "memory.use_hierarchy", "1\n");
  Put(dir_, "memory.failcnt", "3\n");             // a counter
  Put(dir_, "memory.force_empty", "", 0200);       // an action
  Put(dir_, "cgroup.event_control", "", 0222);     // notifications
  Put(dir_, "memory.stat", "cache 0\n", 0444);     // statistics
  EXPECT_EQ(Refusal("memory"), "");
  auto refused = [&](const std::string& file, const std::string& value, const std::string& named) {
    std::string was;
    bool existed = ReadFileToString(dir_ + "/" + file).ok();
    if (existed) was = *ReadFileToString(dir_ + "/" + file);
    Put(dir_, file, value);
    const std::string m = Refusal("memory");
    if (existed) Put(dir_, file, was); else std::filesystem::remove(dir_ + "/" + file);
    EXPECT_NE(m.find("cgroup /x: "), std::string::npos) << m;
    return m.find(named) != std::string::npos ? std::string() : m;
  };
  EXPECT_EQ(refused("memory.kmem.limit_in_bytes", "1048576\n", "memory.kmem.limit_in_bytes 1048576"), "");
  EXPECT_EQ(refused("memory.move_charge_at_immigrate", "1\n", "memory.move_charge_at_immigrate 1"), "");
  EXPECT_EQ(refused("memory.use_hierarchy", "0\n", "memory.use_hierarchy 0"), "");
  // net_prio: the parent's map is inherited; a device on one side only reads 0.
  Put(root_, "net_prio.ifpriomap", "lo 0\neth0 3\n");
  Put(dir_, "net_prio.ifpriomap", "lo 0\neth0 3\nveth9 0\n");
  EXPECT_EQ(Refusal("net_prio"), "");
  EXPECT_EQ(refused("net_prio.ifpriomap", "lo 0\neth0 5\n", "net_prio.ifpriomap \"lo 0\neth0 5\""), "");
  std::filesystem::remove(dir_ + "/net_prio.ifpriomap");
  // Unknown writable files: accepted as in the parent, or fresh without one.
  Put(root_, "memory.shown_ram_in_bytes", "0\n");
  Put(dir_, "memory.shown_ram_in_bytes", "0\n");
  EXPECT_EQ(Refusal("memory"), "");
  EXPECT_EQ(refused("memory.shown_ram_in_bytes", "1073741824\n",
                    "memory.shown_ram_in_bytes \"1073741824\" (its parent \"0\"), a file cryo does not know"),
            "");
  std::filesystem::remove(root_ + "/memory.shown_ram_in_bytes");
  EXPECT_EQ(Refusal("memory"), "");  // "0", no parent's: a fresh value
  EXPECT_EQ(refused("memory.shown_ram_in_bytes", "7\n", "(its parent none)"), "");
  Put(dir_, "memory.shown_ram_in_bytes", "7\n", 0444);  // read-only: statistics
  EXPECT_EQ(Refusal("memory"), "");
}

image::CgroupSettings Settings(const std::string& hierarchy, std::vector<std::pair<std::string, std::string>> files) {
  image::CgroupSettings s;
  s.mutable_cgroup()->set_hierarchy(hierarchy);
  s.mutable_cgroup()->set_path("a");
  for (auto& [n, v] : files) {
    image::CgroupSetting* f = s.add_files();
    f->set_name(n);
    f->set_value(v);
  }
  return s;
}

TEST_F(FakeCgroup, ComparesAnExistingCgroup) {
  Put(dir_, "memory.max", "max\n");
  Put(dir_, "io.max", "8:16 rbps=2 wbps=max riops=max wiops=max\n8:0 rbps=1 wbps=max riops=max wiops=max\n");
  Put(dir_, "cgroup.subtree_control", "pids memory\n");
  EXPECT_TRUE(CheckExistingSettings(dir_, Settings("", {{"memory.max", "max"},
                                                        {"io.max",
                                                         "8:0 rbps=1 wbps=max riops=max wiops=max\n"
                                                         "8:16 rbps=2 wbps=max riops=max wiops=max"},
                                                        {"cgroup.subtree_control", "memory pids"}}))
                  .ok());
  Status s = CheckExistingSettings(dir_, Settings("", {{"memory.max", "1048576"}}));
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find(dir_ + " exists with memory.max \"max\", the image has \"1048576\""), std::string::npos)
      << s.message();
  EXPECT_NE(s.message().find("--cgroup-root"), std::string::npos);
  EXPECT_FALSE(CheckExistingSettings(dir_, Settings("", {{"pids.max", "5"}})).ok());  // no such file there
  EXPECT_FALSE(CheckExistingSettings(dir_, Settings("", {{"cgroup.procs", "1"}})).ok());  // not a setting
}

TEST_F(FakeCgroup, WritesAFreshCgroup) {
  // Fresh files as the kernel would show them (empty here, so that a write
  // of a value reads back as that value).
  Put(dir_, "memory.max", "");
  Put(dir_, "pids.max", "");
  Put(dir_, "cpu.weight", "100\n");
  ASSERT_TRUE(ApplySettings(dir_, Settings("", {{"memory.max", "268435456"}, {"pids.max", "40"}, {"cpu.weight", "100"}}))
                  .ok());
  EXPECT_EQ(*ReadFileToString(dir_ + "/memory.max"), "268435456");
  EXPECT_EQ(*ReadFileToString(dir_ + "/pids.max"), "40");
  EXPECT_EQ(*ReadFileToString(dir_ + "/cpu.weight"), "100\n");  // the same: not written
  Put(dir_, "cgroup.subtree_control", "");
  // Written as the kernel wants it ("+pids"); a regular file then reads back
  // "+pids", not "pids" as the kernel would: the read-back check fails it.
  Status c = ApplySettings(dir_, Settings("", {{"cgroup.subtree_control", "pids"}}));
  EXPECT_EQ(*ReadFileToString(dir_ + "/cgroup.subtree_control"), "+pids");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.message().find("cgroup.subtree_control reads \"+pids\" after writing \"pids\""), std::string::npos)
      << c.message();
  // A file the fresh cgroup lacks (controller not enabled in its parent).
  Status s = ApplySettings(dir_, Settings("", {{"memory.high", "max"}}));
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("has no memory.high"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace cryo::cgroup
