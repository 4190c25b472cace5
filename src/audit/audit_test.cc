// The classifiers on canned /proc text: what is known is classified, what is
// not (an unknown status line, VmFlag, fdinfo line, /proc entry) is refused.
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "audit/classify.h"
#include "audit/remote_rules.h"
#include "audit/sharing.h"
#include "mem/pagemap_scan.h"

namespace cryo::audit {
namespace {

constexpr const char* kStatus =
    "Name:\tcat\nUmask:\t0022\nState:\tt (tracing stop)\nTgid:\t100\nNgid:\t0\nPid:\t100\nPPid:\t99\n"
    "TracerPid:\t7\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nFDSize:\t256\nGroups:\t \nNStgid:\t100\nNSpid:\t100\n"
    "NSpgid:\t99\nNSsid:\t99\nKthread:\t0\nVmPeak:\t    3060 kB\nVmSize:\t    3060 kB\nVmLck:\t       0 kB\n"
    "VmPin:\t       0 kB\nVmHWM:\t    1736 kB\nVmRSS:\t    1736 kB\nRssAnon:\t     108 kB\nRssFile:\t    1628 kB\n"
    "RssShmem:\t       0 kB\nVmData:\t     360 kB\nVmStk:\t     132 kB\nVmExe:\t      20 kB\nVmLib:\t    1528 kB\n"
    "VmPTE:\t      48 kB\nVmSwap:\t       0 kB\nHugetlbPages:\t       0 kB\nCoreDumping:\t0\nTHP_enabled:\t1\n"
    "untag_mask:\t0xffffffffffffffff\nThreads:\t1\nSigQ:\t0/96367\nSigPnd:\t0000000000000000\n"
    "ShdPnd:\t0000000000000000\nSigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n"
    "SigCgt:\t0000000000000000\nCapInh:\t0000000000000000\nCapPrm:\t000001fffeffffff\n"
    "CapEff:\t000001fffeffffff\nCapBnd:\t000001fffeffffff\nCapAmb:\t0000000000000000\nNoNewPrivs:\t0\n"
    "Seccomp:\t0\nSeccomp_filters:\t0\nSpeculation_Store_Bypass:\tvulnerable\n"
    "SpeculationIndirectBranch:\talways enabled\nCpus_allowed:\t3\nCpus_allowed_list:\t0-1\n"
    "Mems_allowed:\t00000001\nMems_allowed_list:\t0\nvoluntary_ctxt_switches:\t0\nnonvoluntary_ctxt_switches:\t0\n";

constexpr const char* kStat =
    "100 (cat) t 99 99 99 0 -1 4194304 98 0 0 0 0 0 0 0 20 0 1 0 746080 3133440 394 18446744073709551615 "
    "94212092735488 94212092755369 140737301273088 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 94212092771376 94212092772992 "
    "94212247261184 140737301281419 140737301281439 140737301281439 140737301282795 0";

Baseline Cryo() {
  Baseline b;
  b.pid = 7;
  for (const auto& [k, v] : KeyValueLines(kStatus)) b.status[std::string(k)] = std::string(v);
  b.ns = {{"net", "net:[4026531833]"}, {"pid", "pid:[4026531836]"}};
  b.cgroup = {"1:cpu:/", "0::/user.slice"};
  b.files = {{"loginuid", "4294967295"}, {"oom_score_adj", "0"}, {"coredump_filter", "00000033"}};
  return b;
}

std::string Refusals(const Report& r) {
  std::string out;
  for (const std::string& l : r.RefusalLines()) out += l + "\n";
  return out;
}

TEST(StatusRules, KnownProcessHasNoRefusal) {
  Report r;
  ClassifyStatus(kStatus, "pid 100", Cryo(), nullptr, &r);
  EXPECT_EQ(Refusals(r), "");
  EXPECT_FALSE(r.Summary().empty());
}

TEST(StatusRules, UnknownLineIsRefused) {
  Report r;
  ClassifyStatus(std::string(kStatus) + "Frobnicated:\t1\n", "pid 100", Cryo(), nullptr, &r);
  EXPECT_NE(Refusals(r).find("pid 100 shows status \"Frobnicated: 1\", which cryo does not know"), std::string::npos)
      << Refusals(r);
}

TEST(StatusRules, StateThatIsLostIsRefused) {
  const Baseline cryo = Cryo();
  struct Case {
    const char* line;
    const char* says;
  } cases[] = {
      {"TracerPid:\t55\n", "is traced by pid 55"},
      {"Speculation_Store_Bypass:\tthread force mitigated\n", "PR_SET_SPECULATION_CTRL"},
      {"NSpid:\t100\t1\n", "nested PID namespace"},
      {"VmPin:\t4 kB\n", "pinned by the kernel"},
      {"x86_Thread_features:\tshstk\n", "shadow stack"},
  };
  for (const Case& c : cases) {
    Report r;
    ClassifyStatus(c.line, "pid 100", cryo, nullptr, &r);
    EXPECT_NE(Refusals(r).find(c.says), std::string::npos) << c.line << " gave: " << Refusals(r);
  }
}

// Seccomp is restored (tree/seccomp.h), per thread, unless cryo itself runs
// under seccomp: then it can neither read nor suspend filters.
TEST(StatusRules, SeccompRestoredUnlessCryoRunsUnderSeccomp) {
  Baseline cryo = Cryo();
  Report restored;
  ClassifyStatus("Seccomp:\t2\nSeccomp_filters:\t3\n", "pid 100 thread 101", cryo, nullptr, &restored);
  EXPECT_EQ(Refusals(restored), "");
  cryo.status["Seccomp"] = "2";
  cryo.status["Seccomp_filters"] = "1";
  Report refused;
  ClassifyStatus("Seccomp:\t2\nSeccomp_filters:\t3\n", "pid 100", cryo, nullptr, &refused);
  EXPECT_NE(Refusals(refused).find("cryo runs under seccomp itself"), std::string::npos) << Refusals(refused);
  Report same;
  ClassifyStatus("Seccomp:\t2\nSeccomp_filters:\t1\n", "pid 100", cryo, nullptr, &same);
  EXPECT_EQ(Refusals(same), "");
}

TEST(StatusRules, ThreadMustMatchItsLeaderWhereCryoRestoresOneValue) {
  const Baseline cryo = Cryo();
  LeaderValues leader;
  for (const auto& [k, v] : KeyValueLines(kStatus)) leader.emplace(std::string(k), std::string(v));
  Report same;
  ClassifyStatus(std::string(kStatus), "pid 100 thread 101", cryo, &leader, &same);
  EXPECT_EQ(Refusals(same), "");
  Report other;
  ClassifyStatus("Uid:\t1000\t1000\t1000\t1000\nName:\tworker\nVmRSS:\t1 kB\n", "pid 100 thread 101", cryo, &leader,
                 &other);
  EXPECT_NE(Refusals(other).find("pid 100 thread 101 has status Uid \"1000\t1000\t1000\t1000\""), std::string::npos)
      << Refusals(other);
  EXPECT_EQ(other.refusals(), 1u);  // a thread's own name is restored; VmRSS is the process's
}

TEST(StatRules, KnownFieldsHaveNoRefusal) {
  Report r;
  ASSERT_TRUE(ClassifyStat(kStat, "pid 100", Cryo(), nullptr, &r).ok());
  EXPECT_EQ(Refusals(r), "");
}

TEST(StatRules, ExtraFieldKernelThreadAndSchedExtAreRefused) {
  Report extra;
  ASSERT_TRUE(ClassifyStat(std::string(kStat) + " 77", "pid 100", Cryo(), nullptr, &extra).ok());
  EXPECT_NE(Refusals(extra).find("\"field 53: 77\""), std::string::npos) << Refusals(extra);

  std::string kthread = kStat;
  kthread.replace(kthread.find("4194304"), 7, std::to_string(0x00200000 | 0x40));
  Report k;
  ASSERT_TRUE(ClassifyStat(kthread, "pid 100", Cryo(), nullptr, &k).ok());
  EXPECT_NE(Refusals(k).find("is a kernel thread"), std::string::npos) << Refusals(k);

  auto fields = StatFields(kStat);
  ASSERT_TRUE(fields.ok());
  ASSERT_EQ((*fields)[40].first, "policy");
  std::string line;
  for (auto& [k2, v] : *fields) line += (line.empty() ? "" : " ") + (k2 == "comm" ? "(" + v + ")" : k2 == "policy" ? "7" : v);
  Report d;
  ASSERT_TRUE(ClassifyStat(line, "pid 100", Cryo(), nullptr, &d).ok());
  EXPECT_NE(Refusals(d).find("SCHED_EXT"), std::string::npos) << Refusals(d);
}

constexpr const char* kSmaps =
    "55a0-55b0 r--p 00000000 fe:00 247134                     /usr/bin/cat\n"
    "Size:                  4 kB\nKernelPageSize:        4 kB\nRss:                   4 kB\nLocked:                0 kB\n"
    "THPeligible:           0\nVmFlags: rd mr mw me \n"
    "7fe6898ed000-7fe6898f1000 r--p 00000000 00:00 0                          [vvar]\n"
    "Size:                 16 kB\nVmFlags: rd mr pf io de dd \n"
    "7fe6898f5000-7fe6898f7000 rw-p 00000000 00:00 0 \n"
    "Size:                  8 kB\nVmFlags: rd wr mr mw me ac nr hg \n";

TEST(VmaRules, KnownFlagsAndKernelMappingsHaveNoRefusal) {
  Report r;
  ASSERT_TRUE(ClassifySmaps(kSmaps, 100, Cryo(), &r).ok());
  EXPECT_EQ(Refusals(r), "");
}

TEST(VmaRules, LostAndUnknownFlagsAreRefused) {
  struct Case {
    const char* smaps;
    const char* says;
  } cases[] = {
      {"1000-2000 rw-p 00000000 00:00 0 \nVmFlags: rd zz\n", "shows VmFlags \"zz: \", which cryo does not know"},
      {"1000-2000 rw-p 00000000 00:00 0 \nVmFlags: rd pf\n", "device or driver memory"},
      {"1000-2000 rw-p 00000000 00:00 0 \nProtectionKey:         3\n", "protection key 3"},
      {"1000-2000 rw-p 00000000 00:00 0 \nNewCounter:    0 kB\n", "shows smaps \"NewCounter: 0 kB\""},
  };
  for (const Case& c : cases) {
    Report r;
    ASSERT_TRUE(ClassifySmaps(c.smaps, 100, Cryo(), &r).ok()) << c.smaps;
    EXPECT_NE(Refusals(r).find(c.says), std::string::npos) << c.smaps << " gave: " << Refusals(r);
  }
}

TEST(VmaRules, RestoredFlags) {
  for (const char* smaps : {"1000-2000 rw-p 00000000 00:00 0 \nVmFlags: rd wr lo lf\n",
                            "1000-2000 rw-p 00000000 00:00 0 \nVmFlags: rd rr\n",
                            "1000-2000 rw-p 00000000 00:00 0 \nVmFlags: rd sr\n",
                            "1000-2000 rw-p 00000000 00:00 0 \nVmFlags: rd wr nr wf dd dp\n",
                            "1000-2000 r--p 00000000 00:00 0 \nVmFlags: rd sl\n",
                            "1000-2000 rw-s 00000000 00:01 7 /memfd:x (deleted)\nVmFlags: rd sh nr\n"}) {
    Report r;
    ASSERT_TRUE(ClassifySmaps(smaps, 100, Cryo(), &r).ok()) << smaps;
    EXPECT_EQ(Refusals(r), "") << smaps;
  }
}

// Guard regions are restored where the kernel's pagemap shows them (6.15+),
// refused by name where it does not (6.13, 6.14).
TEST(VmaRules, GuardRegionsFollowWhatPagemapTells) {
  Report r;
  ASSERT_TRUE(ClassifySmaps("1000-2000 rw-p 00000000 00:00 0 \nVmFlags: rd wr gu\n", 100, Cryo(), &r).ok());
  if (GuardRegionsVisible())
    EXPECT_EQ(Refusals(r), "");
  else
    EXPECT_NE(Refusals(r).find("pid 100 VMA 1000-2000 may hold guard regions"), std::string::npos) << Refusals(r);
}

TEST(VmaRules, NumaPolicyOtherThanDefaultIsRefused) {
  Report r;
  ASSERT_TRUE(ClassifyNumaMaps("55a0 default file=/bin/cat mapped=2 N0=2\n7f00 bind:0 anon=1 N0=1\n", 100, &r).ok());
  EXPECT_EQ(r.refusals(), 1u);
  EXPECT_NE(Refusals(r).find("pid 100 VMA at 7f00 has the NUMA memory policy \"bind:0\""), std::string::npos);
}

proc::FdInfo Info(const char* text) {
  auto info = proc::ParseFdInfo(text);
  EXPECT_TRUE(info.ok()) << text;
  return info.ok() ? *info : proc::FdInfo{};
}

TEST(FdInfoRules, KindLinesBelongToTheirKind) {
  const char* eventfd = "pos:\t0\nflags:\t02\nmnt_id:\t16\nino:\t1057\neventfd-count:                5\n"
                        "eventfd-id: 3\neventfd-semaphore: 0\n";
  Report ok;
  ClassifyFdInfo(image::FD_EVENTFD, Info(eventfd), "pid 100 fd 3", &ok);
  EXPECT_EQ(Refusals(ok), "");
  Report wrong;  // the same lines on what the dump calls a regular file
  ClassifyFdInfo(image::FD_REGULAR, Info(eventfd), "pid 100 fd 3", &wrong);
  EXPECT_NE(Refusals(wrong).find("pid 100 fd 3 shows fdinfo \"eventfd-count: 5\""), std::string::npos);
  Report unknown;
  ClassifyFdInfo(image::FD_PIPE, Info("pos:\t0\nflags:\t0\nmnt_id:\t1\nino:\t2\nnew-thing:\t1\n"), "pid 100 fd 4",
                 &unknown);
  EXPECT_NE(Refusals(unknown).find("\"new-thing: 1\", which cryo does not know"), std::string::npos);
}

// A UNIX socket's fds in flight (SCM_RIGHTS) are restored: sent again with
// their messages (net/unix_in_flight.cc refuses the kinds it cannot send).
TEST(FdInfoRules, UnixSocketFdsInFlightRestored) {
  for (const char* n : {"0", "2"}) {
    Report r;
    const std::string text = std::string("pos:\t0\nflags:\t02\nmnt_id:\t8\nino:\t9\nscm_fds: ") + n + "\n";
    ClassifyFdInfo(image::FD_UNIX_SOCKET, Info(text.c_str()), "pid 100 fd 3", &r);
    EXPECT_EQ(r.refusals(), 0u) << Refusals(r);
  }
}

// Locks, O_ASYNC and fd owners are restored (files/file_locks.cc,
// fd_owner.cc, which refuse the cases they cannot restore); unknown flag bits
// are refused.
TEST(FdInfoRules, LocksAsyncAndOwnersRestoredUnknownFlagsRefused) {
  Report lock;
  ClassifyFdInfo(image::FD_REGULAR,
                 Info("pos:\t0\nflags:\t0100002\nmnt_id:\t1\nino:\t2\nlock:\t1: FLOCK  ADVISORY  WRITE 100 fe:00:2 0 "
                      "EOF\n"),
                 "pid 100 fd 5", &lock);
  EXPECT_EQ(lock.refusals(), 0u) << Refusals(lock);
  Report async;
  ClassifyFdInfo(image::FD_PIPE, Info("pos:\t0\nflags:\t020000\nmnt_id:\t1\nino:\t2\n"), "pid 100 fd 6", &async);
  EXPECT_EQ(async.refusals(), 0u) << Refusals(async);
  Report bits;
  ClassifyFdInfo(image::FD_PIPE, Info("pos:\t0\nflags:\t0400000000\nmnt_id:\t1\nino:\t2\n"), "pid 100 fd 7", &bits);
  EXPECT_NE(Refusals(bits).find("flags cryo does not know (0400000000)"), std::string::npos) << Refusals(bits);
  Report owner;
  ClassifyFdOwner({F_OWNER_PID, 100, SIGRTMIN}, "pid 100 fd 8", &owner);
  EXPECT_EQ(owner.refusals(), 0u) << Refusals(owner);
}

TEST(NsRules, OtherNamespacesAreRefusedByName) {
  Report r;
  ClassifyNamespaces({{"pid", "pid:[99]"}, {"uts", "uts:[4026531838]"}, {"quux", "quux:[1]"}}, "pid 100", Cryo(),
                     nullptr, &r);
  const std::string s = Refusals(r);
  EXPECT_NE(s.find("pid 100 lives in a PID namespace other than cryo's (pid:[99]); restoring namespaces is not "
                   "supported yet"),
            std::string::npos)
      << s;
  EXPECT_NE(s.find("namespace cryo does not know"), std::string::npos) << s;
  EXPECT_EQ(r.refusals(), 2u);
  Report thread;
  const std::map<std::string, std::string> leader = {{"net", "net:[4026531833]"}};
  ClassifyNamespaces({{"net", "net:[5]"}}, "pid 100 thread 101", Cryo(), &leader, &thread);
  EXPECT_NE(Refusals(thread).find("other than its process leader's"), std::string::npos);
  // A user namespace of the tree's own is restored (ns/user_ns.h); a thread
  // in another one than its leader's is not.
  Report user;
  ClassifyNamespaces({{"user", "user:[99]"}, {"cgroup", "cgroup:[98]"}}, "pid 100", Cryo(), nullptr, &user);
  EXPECT_EQ(user.refusals(), 0u) << Refusals(user);
  Report user_thread;
  const std::map<std::string, std::string> user_leader = {{"user", "user:[99]"}};
  ClassifyNamespaces({{"user", "user:[98]"}}, "pid 100 thread 101", Cryo(), &user_leader, &user_thread);
  EXPECT_EQ(user_thread.refusals(), 1u);
}

// A tree's own UTS, IPC, network and time namespaces are restored as fresh ones
// (src/ns/); a thread in another one than its leader is still refused.
TEST(NsRules, OwnUtsAndIpcNamespacesAreRestored) {
  Report r;
  ClassifyNamespaces({{"ipc", "ipc:[77]"}, {"uts", "uts:[78]"}, {"net", "net:[79]"}, {"time", "time:[80]"},
                      {"time_for_children", "time:[80]"}},
                     "pid 100", Cryo(), nullptr, &r);
  EXPECT_EQ(r.refusals(), 0u) << Refusals(r);
  Report time_thread;
  const std::map<std::string, std::string> time_leader = {{"time_for_children", "time:[80]"}};
  ClassifyNamespaces({{"time_for_children", "time:[81]"}}, "pid 100 thread 101", Cryo(), &time_leader, &time_thread);
  EXPECT_EQ(time_thread.refusals(), 1u);
  Report thread;
  const std::map<std::string, std::string> leader = {{"ipc", "ipc:[77]"}};
  ClassifyNamespaces({{"ipc", "ipc:[5]"}}, "pid 100 thread 101", Cryo(), &leader, &thread);
  EXPECT_EQ(thread.refusals(), 1u);
}

// A process's cgroups are restored (src/cgroup/); a thread in other cgroups
// than its leader is refused.
TEST(CgroupRules, ThreadInAnotherCgroupIsRefused) {
  Report same;
  ClassifyCgroups("1:cpu:/\n0::/user.slice\n", "pid 100", Cryo(), nullptr, &same);
  EXPECT_EQ(Refusals(same), "");
  Report other;
  ClassifyCgroups("1:cpu:/\n0::/elsewhere\n", "pid 100", Cryo(), nullptr, &other);
  EXPECT_EQ(Refusals(other), "");
  const std::string leader = "1:cpu:/\n0::/elsewhere\n";
  Report thread;
  ClassifyCgroups("1:cpu:/\n0::/other\n", "pid 100 thread 101", Cryo(), &leader, &thread);
  EXPECT_NE(Refusals(thread).find("is in other cgroups than its process leader"), std::string::npos)
      << Refusals(thread);
}

TEST(LocksRules, HeldByTheTreeIsRefusedWaitingIsNot) {
  const char* locks =
      "1: POSIX  ADVISORY  WRITE 100 fe:00:12 0 EOF\n"
      "1: -> POSIX  ADVISORY  WRITE 101 fe:00:12 0 EOF\n"
      "2: FLOCK  ADVISORY  WRITE 555 fe:00:13 0 EOF\n"
      "3: LEASE  ACTIVE    READ  102 fe:00:14 0 EOF\n";
  Report r;
  ClassifyLocks(locks, {100, 101, 102}, {}, &r);
  const std::string s = Refusals(r);
  EXPECT_NE(s.find("pid 100 holds a POSIX lock on inode fe:00:12"), std::string::npos) << s;
  EXPECT_NE(s.find("pid 102 holds a lease on inode fe:00:14"), std::string::npos) << s;
  EXPECT_EQ(r.refusals(), 2u);
  Report seen;  // fdinfo named the POSIX lock already
  ClassifyLocks(locks, {100}, {LockIdentity("7: POSIX  ADVISORY  WRITE 100 fe:00:12 0 EOF")}, &seen);
  EXPECT_EQ(seen.refusals(), 0u);
}

TEST(ProcRules, UnknownEntriesAndChangedValuesAreRefused) {
  Report entries;
  ClassifyProcEntries({"status", "fd", "sessionid", "brand_new_file"}, "pid 100", &entries);
  EXPECT_EQ(entries.refusals(), 1u);
  EXPECT_NE(Refusals(entries).find("\"brand_new_file: \""), std::string::npos) << Refusals(entries);
  const Baseline cryo = Cryo();
  struct Case {
    const char* name;
    const char* content;
    const char* says;  // "" : no refusal
  } cases[] = {
      {"loginuid", "4294967295", ""},
      {"loginuid", "1000", ""},
      {"oom_score_adj", "500\n", ""},
      {"coredump_filter", "0000003f\n", ""},
      {"autogroup", "/autogroup-5 nice 0\n", ""},
      {"autogroup", "/autogroup-5 nice 3\n", ""},
      {"attr/current", "other_label\n", "security label"},
      {"ksm_stat", "ksm_rmap_items 0\nksm_merge_any: no\nksm_mergeable: no\n", ""},
      {"ksm_stat", "ksm_new_counter 0\n", "shows ksm_stat \"ksm_new_counter: 0\""},
      {"ksm_stat", "ksm_merge_any: yes\n", "PR_SET_MEMORY_MERGE"},
  };
  for (const Case& c : cases) {
    Report r;
    ClassifySmallFile(c.name, c.content, "pid 100", cryo, &r);
    if (!*c.says)
      EXPECT_EQ(Refusals(r), "") << c.name << " " << c.content;
    else
      EXPECT_NE(Refusals(r).find(c.says), std::string::npos) << c.name << " gave: " << Refusals(r);
  }
}

TEST(RemoteRules, ComparedWithCryo) {
  const RemoteQuery& membarrier = RemoteQueries()[0];
  EXPECT_EQ(DecideRemote(membarrier, 0x10, 0).verdict, Verdict::kRestored);
  EXPECT_EQ(DecideRemote(membarrier, -EINVAL, 0).verdict, Verdict::kRefused);  // before Linux 6.3: cannot tell
  const RemoteQuery* mdwe_q = nullptr;
  for (const RemoteQuery& q : RemoteQueries())
    if (q.key == "PR_GET_MDWE") mdwe_q = &q;
  ASSERT_NE(mdwe_q, nullptr);
  const RemoteQuery& mdwe = *mdwe_q;
  EXPECT_EQ(DecideRemote(mdwe, 0, 0).verdict, Verdict::kInherited);
  Decision d = DecideRemote(mdwe, 1, 0);
  EXPECT_EQ(d.verdict, Verdict::kRefused);
  EXPECT_NE(d.why.find("PR_SET_MDWE"), std::string::npos);
  const RemoteQuery* flusher = nullptr;
  for (const RemoteQuery& q : RemoteQueries())
    if (q.key == "PR_GET_IO_FLUSHER") flusher = &q;
  ASSERT_NE(flusher, nullptr);
  EXPECT_EQ(DecideRemote(*flusher, -EPERM, 0).verdict, Verdict::kNotState);
  EXPECT_EQ(DecideRemote(*flusher, -EINVAL, 0).verdict, Verdict::kRefused);
}

TEST(RemoteRules, MembarrierWithoutGetRegistrations) {
  // Before Linux 6.3 GET_REGISTRATIONS is EINVAL in cryo and the process alike:
  // not "inherited"; the private expedited commands tell instead.
  ASSERT_EQ(setenv("CRYO_PRETEND_MISSING", "membarrier-registrations", 1), 0);
  const RemoteQuery& get = RemoteQueries()[0];
  Decision d = DecideRemote(get, -EINVAL, -EINVAL);
  EXPECT_EQ(d.verdict, Verdict::kNotState);
  EXPECT_NE(d.why.find("Linux 6.3"), std::string::npos) << d.why;
  const RemoteQuery* priv = nullptr;
  for (const RemoteQuery& q : RemoteQueries())
    if (q.key == "membarrier PRIVATE_EXPEDITED") priv = &q;
  ASSERT_NE(priv, nullptr);
  EXPECT_EQ(DecideRemote(*priv, -EPERM, -EPERM).verdict, Verdict::kInherited);
  d = DecideRemote(*priv, 0, -EPERM);  // registered: the command went through
  EXPECT_EQ(d.verdict, Verdict::kRefused);
  EXPECT_NE(d.why.find("MEMBARRIER_CMD_PRIVATE_EXPEDITED"), std::string::npos) << d.why;
  // With GET_REGISTRATIONS (this kernel), the registrations are restored from it.
  ASSERT_EQ(unsetenv("CRYO_PRETEND_MISSING"), 0);
  if (syscall(SYS_membarrier, 1 << 9, 0, 0) >= 0) {
    EXPECT_EQ(DecideRemote(*priv, 0, -EPERM).verdict, Verdict::kNotState);
    EXPECT_EQ(DecideRemote(get, 0x10, 0).verdict, Verdict::kRestored);
  }
}

TEST(Report, EveryRefusalOnItsOwnLineOnce) {
  Report r;
  r.Add("pid 1", "status", "A", "1", Verdict::kRefused, "is odd");
  r.Add("pid 1", "status", "A", "1", Verdict::kRefused, "is odd");
  r.Add("pid 2 fd 3", "fdinfo", "lock", "x", Verdict::kRefused, "holds a lock");
  r.Add("pid 2", "status", "Name", "x", Verdict::kRestored, "comm");
  Status s = r.ToStatus();
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message(),
            "2 things of the tree cannot be restored; nothing was written and the tree runs on untouched:\n"
            "  pid 1 is odd\n  pid 2 fd 3 holds a lock");
  Report none;
  none.Add("pid 2", "status", "Name", "x", Verdict::kRestored, "comm");
  EXPECT_TRUE(none.ToStatus().ok());
}

// Children of this test sharing its fd table or not (kcmp on live processes).
// A shared address space is refused; a shared fd table is left to
// FindSharedTables (files/shared_tables.cc), which restores it along parents.
TEST(Sharing, SharedAddressSpaceIsRefused) {
  auto spawn = [](unsigned long flags) {
    pid_t pid = static_cast<pid_t>(::syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0));
    if (pid == 0) {
      for (;;) ::pause();
    }
    return pid;
  };
  const pid_t plain = spawn(0), files = spawn(CLONE_FILES);
  ASSERT_GT(plain, 0);
  ASSERT_GT(files, 0);
  Report apart;
  EXPECT_TRUE(ClassifySharing({{plain, {plain}}, {files, {files}}}, ::getpid(), true, &apart).ok());
  EXPECT_EQ(apart.refusals(), 0u) << Refusals(apart);
  for (pid_t p : {plain, files}) {
    ::kill(p, SIGKILL);
    ::waitpid(p, nullptr, 0);
  }
  // CLONE_VM without CLONE_THREAD: the child shares this test's address space.
  // Through clone(3), which runs the child's function on its own stack: a
  // raw clone syscall returning into this function on the new, empty stack
  // (with glibc's syscall() returning through a return address read past its
  // top) crashed the child, which raced the check ("refusal text not found"
  // under load: the check found a dead child, nothing shared).
  static char stack[64 << 10];
  const pid_t vm = ::clone(
      [](void*) -> int {
        for (;;) ::pause();
      },
      stack + sizeof(stack), CLONE_VM | SIGCHLD, nullptr);
  ASSERT_GT(vm, 0);
  Report shared;
  EXPECT_TRUE(ClassifySharing({{vm, {vm}}}, ::getpid(), true, &shared).ok());
  EXPECT_NE(Refusals(shared).find("shares its address space with its parent pid " + std::to_string(::getpid())),
            std::string::npos)
      << Refusals(shared);
  ::kill(vm, SIGKILL);
  ::waitpid(vm, nullptr, 0);
}

}  // namespace
}  // namespace cryo::audit
