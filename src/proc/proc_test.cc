#include "proc/proc.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <ctime>
#include <string>
#include <thread>

#include "base/file_util.h"

namespace cryo::proc {
namespace {

bool Contains(const std::vector<int>& v, int x) { return std::find(v.begin(), v.end(), x) != v.end(); }

const Vma* FindVma(const std::vector<Vma>& vmas, uint64_t start) {
  for (const Vma& v : vmas)
    if (v.start == start) return &v;
  return nullptr;
}

// ---- maps / smaps ----

TEST(ParseMapsTest, ParsesAllColumns) {
  auto r = ParseMaps(
      "556e9dd06000-556e9dd0b000 r-xp 00002000 fe:0a 247134                     /usr/bin/cat\n"
      "7fb1109dc000-7fb1109e3000 rw-s 0001f000 00:05 12                         /dev/zero\n"
      "7fb110774000-7fb110796000 ---p 00000000 00:00 0 \n");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->size(), 3u);
  const Vma& a = (*r)[0];
  EXPECT_EQ(a.start, 0x556e9dd06000u);
  EXPECT_EQ(a.end, 0x556e9dd0b000u);
  EXPECT_EQ(a.prot, PROT_READ | PROT_EXEC);
  EXPECT_FALSE(a.shared);
  EXPECT_EQ(a.pgoff, 0x2000u);
  EXPECT_EQ(a.dev_major, 0xfeu);
  EXPECT_EQ(a.dev_minor, 0xau);
  EXPECT_EQ(a.inode, 247134u);
  EXPECT_EQ(a.name, "/usr/bin/cat");
  EXPECT_FALSE(a.deleted);
  EXPECT_EQ((*r)[1].prot, PROT_READ | PROT_WRITE);
  EXPECT_TRUE((*r)[1].shared);
  EXPECT_EQ((*r)[1].pgoff, 0x1f000u);
  EXPECT_EQ((*r)[2].prot, 0);
  EXPECT_EQ((*r)[2].name, "");
}

TEST(ParseMapsTest, NamesWithSpacesDeletedAndSpecial) {
  auto r = ParseMaps(
      "1000-2000 rw-s 00000000 00:01 7   /memfd:my buf (deleted)\n"
      "2000-3000 r--p 00000000 fe:00 9   /tmp/a b  c.so\n"
      "3000-4000 r--p 00000000 fe:00 9   /tmp/x (deleted) y\n"
      "4000-6000 r--p 00000000 00:00 0   [vvar_vclock]\n"
      "6000-7000 rw-p 00000000 00:00 0   [anon:glibc malloc]\n"
      "7000-8000 r--p 00000000 fe:00 9   / (deleted)\n");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->size(), 6u);
  EXPECT_EQ((*r)[0].name, "/memfd:my buf");
  EXPECT_TRUE((*r)[0].deleted);
  EXPECT_EQ((*r)[1].name, "/tmp/a b  c.so");
  EXPECT_FALSE((*r)[1].deleted);
  EXPECT_EQ((*r)[2].name, "/tmp/x (deleted) y");
  EXPECT_FALSE((*r)[2].deleted);
  EXPECT_EQ((*r)[3].name, "[vvar_vclock]");
  EXPECT_EQ((*r)[4].name, "[anon:glibc malloc]");
  EXPECT_EQ((*r)[5].name, "/");
  EXPECT_TRUE((*r)[5].deleted);
}

TEST(ParseMapsTest, RejectsMalformedLines) {
  for (const char* line : {
           "1000-2000 rw-p 00000000 00:00",        // no inode
           "1000 rw-p 00000000 00:00 0",           // no end
           "1000-zz rw-p 00000000 00:00 0",        // bad hex
           "2000-1000 rw-p 00000000 00:00 0",      // end before start
           "1000-2000 rw-q 00000000 00:00 0",      // bad sharing
           "1000-2000 wr-p 00000000 00:00 0",      // bad perms order
           "1000-2000 rw-p 00000000 0000 0",       // bad dev
           "1000-2000 rw-p 00000000 00:00 -1 /x",  // bad inode
       }) {
    auto r = ParseMaps(std::string("1000-2000 rw-p 00000000 00:00 0\n") + line + "\n");
    ASSERT_FALSE(r.ok()) << line;
    EXPECT_NE(r.status().message().find(line), std::string::npos) << r.status().message();
  }
}

TEST(ParseSmapsVmFlagsTest, MatchesByRange) {
  std::vector<Vma> vmas = *ParseMaps(
      "1000-2000 rw-p 00000000 00:00 0\n"
      "2000-3000 r--p 00000000 fe:00 9   /lib/a b.so\n");
  Status s = ParseSmapsVmFlags(
      "1000-2000 rw-p 00000000 00:00 0\n"
      "Size:                  4 kB\n"
      "AnonHugePages:      4096 kB\n"
      "VmFlags: rd wr mr mw me ac \n"
      "2000-3000 r--p 00000000 fe:00 9   /lib/a b.so\n"
      "Rss:                   0 kB\n"
      "AnonHugePages:         0 kB\n"
      "THPeligible:           0\n"
      "VmFlags: rd mr mw me dd\n",
      &vmas);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(vmas[0].vm_flags, (std::vector<std::string>{"rd", "wr", "mr", "mw", "me", "ac"}));
  EXPECT_EQ(vmas[0].anon_huge_kb, 4096u);
  EXPECT_EQ(vmas[1].anon_huge_kb, 0u);
  EXPECT_TRUE(vmas[1].HasFlag("dd"));
  EXPECT_FALSE(vmas[1].HasFlag("wr"));
}

TEST(ParseSmapsVmFlagsTest, RejectsUnknownRangeAndMalformedHeader) {
  std::vector<Vma> vmas = *ParseMaps("1000-2000 rw-p 00000000 00:00 0\n");
  Status s = ParseSmapsVmFlags("1000-3000 rw-p 00000000 00:00 0\nVmFlags: rd\n", &vmas);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("1000-3000"), std::string::npos) << s.message();
  s = ParseSmapsVmFlags("1000-2000 rw-p 00000000\nVmFlags: rd\n", &vmas);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("1000-2000 rw-p 00000000"), std::string::npos) << s.message();
  s = ParseSmapsVmFlags("VmFlags: rd\n", &vmas);
  EXPECT_FALSE(s.ok());
  s = ParseSmapsVmFlags("1000-2000 rw-p 00000000 00:00 0\nAnonHugePages: lots kB\nVmFlags: rd\n", &vmas);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("AnonHugePages: lots"), std::string::npos) << s.message();
}

TEST(ReadVmasTest, SeesFreshMappingWithFlags) {
  long page = sysconf(_SC_PAGESIZE);
  void* p = mmap(nullptr, 3 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(p, MAP_FAILED);
  // A read-only middle page is its own VMA with a known range (its neighbours differ in prot).
  char* mid = static_cast<char*>(p) + page;
  ASSERT_EQ(mprotect(mid, page, PROT_READ), 0);
  auto vmas = ReadVmas(getpid());
  ASSERT_TRUE(vmas.ok()) << vmas.status().ToString();
  const Vma* v = FindVma(*vmas, reinterpret_cast<uint64_t>(mid));
  ASSERT_NE(v, nullptr);
  EXPECT_EQ(v->end, reinterpret_cast<uint64_t>(mid) + page);
  EXPECT_EQ(v->prot, PROT_READ);
  EXPECT_FALSE(v->shared);
  EXPECT_EQ(v->name, "");
  EXPECT_TRUE(v->HasFlag("rd"));
  EXPECT_FALSE(v->HasFlag("wr"));
  EXPECT_TRUE(v->HasFlag("mw"));  // may be made writable again
  // The rw page may have merged with a neighbouring anonymous VMA.
  auto addr = reinterpret_cast<uint64_t>(p);
  auto w = std::find_if(vmas->begin(), vmas->end(), [&](const Vma& x) { return x.start <= addr && addr < x.end; });
  ASSERT_NE(w, vmas->end());
  EXPECT_EQ(w->prot, PROT_READ | PROT_WRITE);
  EXPECT_TRUE(w->HasFlag("rd"));
  EXPECT_TRUE(w->HasFlag("wr"));
  munmap(p, 3 * page);

  // Every VMA got flags, and the stack is there.
  bool stack = false;
  for (const Vma& x : *vmas) {
    EXPECT_FALSE(x.vm_flags.empty()) << x.name;
    stack |= x.name == "[stack]";
  }
  EXPECT_TRUE(stack);
}

TEST(ReadVmasTest, DeletedFileWithSpacesInName) {
  char path[] = "/tmp/cryo proc test XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, 4096), 0);
  void* p = mmap(nullptr, 4096, PROT_READ, MAP_SHARED, fd, 0);
  ASSERT_NE(p, MAP_FAILED);
  struct stat st;
  ASSERT_EQ(fstat(fd, &st), 0);
  close(fd);
  unlink(path);
  auto vmas = ReadVmas(getpid());
  munmap(p, 4096);
  ASSERT_TRUE(vmas.ok()) << vmas.status().ToString();
  const Vma* v = FindVma(*vmas, reinterpret_cast<uint64_t>(p));
  ASSERT_NE(v, nullptr);
  EXPECT_EQ(v->name, path);
  EXPECT_TRUE(v->deleted);
  EXPECT_TRUE(v->shared);
  EXPECT_EQ(v->inode, st.st_ino);
  EXPECT_EQ(makedev(v->dev_major, v->dev_minor), st.st_dev);
  EXPECT_TRUE(v->HasFlag("sh"));
}

TEST(ReadVmasTest, MatchesMapsFile) {
  // A paused child's VMAs stay put between reads (our own would change as we allocate).
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    pause();
    _exit(0);
  }
  std::string dir = "/proc/" + std::to_string(child) + "/";
  auto maps_text = ReadFileToString(dir + "maps");
  auto smaps_text = ReadFileToString(dir + "smaps");
  auto vmas = ReadVmas(child);
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  ASSERT_TRUE(maps_text.ok() && smaps_text.ok() && vmas.ok()) << vmas.status().ToString();
  // maps + smaps flags gives the same VMAs as smaps alone.
  auto maps = ParseMaps(*maps_text);
  ASSERT_TRUE(maps.ok()) << maps.status().ToString();
  Status s = ParseSmapsVmFlags(*smaps_text, &*maps);
  ASSERT_TRUE(s.ok()) << s.ToString();
  ASSERT_EQ(maps->size(), vmas->size());
  for (size_t i = 0; i < maps->size(); ++i) {
    const Vma &a = (*maps)[i], &b = (*vmas)[i];
    EXPECT_EQ(a.start, b.start);
    EXPECT_EQ(a.end, b.end);
    EXPECT_EQ(a.prot, b.prot);
    EXPECT_EQ(a.name, b.name);
    EXPECT_EQ(a.inode, b.inode);
    EXPECT_FALSE(a.vm_flags.empty()) << a.name;
    EXPECT_EQ(a.vm_flags, b.vm_flags);
  }
}

// ---- stat ----

TEST(ParseStatTest, FieldNumbering) {
  // Field n holds the value n, so any off-by-one shows up.
  std::string line = "42 (a) b) (c d) S";
  for (int n = 4; n <= 52; ++n) {
    line += ' ';  // not `" " + ...`: GCC 12 -O3 false -Wrestrict (bug 105329)
    line += std::to_string(n);
  }
  auto r = ParseStat(line + "\n");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const Stat& s = *r;
  EXPECT_EQ(s.pid, 42);
  EXPECT_EQ(s.comm, "a) b) (c d");
  EXPECT_EQ(s.state, 'S');
  EXPECT_EQ(s.ppid, 4);
  EXPECT_EQ(s.pgrp, 5);
  EXPECT_EQ(s.session, 6);
  EXPECT_EQ(s.tty_nr, 7);
  EXPECT_EQ(s.tpgid, 8);
  EXPECT_EQ(s.flags, 9u);
  EXPECT_EQ(s.priority, 18);
  EXPECT_EQ(s.nice, 19);
  EXPECT_EQ(s.num_threads, 20);
  EXPECT_EQ(s.starttime, 22u);
  EXPECT_EQ(s.startcode, 26u);
  EXPECT_EQ(s.endcode, 27u);
  EXPECT_EQ(s.startstack, 28u);
  EXPECT_EQ(s.exit_signal, 38);
  EXPECT_EQ(s.rt_priority, 40u);
  EXPECT_EQ(s.policy, 41u);
  EXPECT_EQ(s.start_data, 45u);
  EXPECT_EQ(s.end_data, 46u);
  EXPECT_EQ(s.start_brk, 47u);
  EXPECT_EQ(s.arg_start, 48u);
  EXPECT_EQ(s.arg_end, 49u);
  EXPECT_EQ(s.env_start, 50u);
  EXPECT_EQ(s.env_end, 51u);
  EXPECT_EQ(s.exit_code, 52);
}

TEST(ParseStatTest, NegativeFieldsAndEmptyComm) {
  std::string line = "7 () R 1 7 7 0 -1 4194560 0 0 0 0 0 0 0 0 -51 -20 1";
  for (int n = 21; n <= 52; ++n) line += " 0";
  auto r = ParseStat(line);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->comm, "");
  EXPECT_EQ(r->tpgid, -1);
  EXPECT_EQ(r->priority, -51);
  EXPECT_EQ(r->nice, -20);
}

TEST(ParseStatTest, RejectsMalformed) {
  std::string tail;
  for (int n = 4; n <= 52; ++n) tail += " 1";
  for (std::string bad : {
           "42 (x S" + tail,               // no ')'
           "42 x) S" + tail,               // no '('
           "zz (x) S" + tail,              // bad pid
           std::string("42 (x) S 1 2 3"),  // too few fields
           "42 (x) SS" + tail,             // state not one char
           "42 (x) S" + tail.substr(2) + " q",  // junk number
       }) {
    auto r = ParseStat(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.status().message().find("malformed stat"), std::string::npos);
  }
}

TEST(ReadStatTest, Self) {
  char comm[17] = {};
  ASSERT_EQ(prctl(PR_GET_NAME, comm), 0);
  auto r = ReadStat(getpid());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->pid, getpid());
  EXPECT_EQ(r->ppid, getppid());
  EXPECT_EQ(r->pgrp, getpgrp());
  EXPECT_EQ(r->session, getsid(0));
  EXPECT_EQ(r->comm, comm);
  EXPECT_EQ(r->state, 'R');
  EXPECT_GE(r->num_threads, 1);
  EXPECT_EQ(r->exit_signal, SIGCHLD);
  EXPECT_NE(r->startstack, 0u);
  EXPECT_LT(r->arg_start, r->arg_end);
  EXPECT_LE(r->arg_end, r->env_start);
  EXPECT_LT(r->env_start, r->env_end);
  EXPECT_LE(r->start_brk, reinterpret_cast<uint64_t>(sbrk(0)));
}

TEST(ReadStatTest, StartedAtEpochIsBeforeNowAndAfterAChildStarted) {
  auto mine = StartedAtEpoch(getpid());
  ASSERT_TRUE(mine.ok()) << mine.status().ToString();
  const int64_t now = time(nullptr);
  EXPECT_LE(*mine, now + 1);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    pause();
    _exit(0);
  }
  auto theirs = StartedAtEpoch(child);
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  ASSERT_TRUE(theirs.ok()) << theirs.status().ToString();
  EXPECT_GE(*theirs + 1, now);
  EXPECT_LE(*theirs, time(nullptr) + 1);
}

TEST(ReadStatTest, TaskStatOfAnotherThreadWithOddName) {
  std::atomic<pid_t> tid{0};
  std::atomic<bool> done{false};
  std::thread t([&] {
    prctl(PR_SET_NAME, "a) (b c)");
    tid = gettid();
    while (!done) usleep(1000);
  });
  while (tid == 0) usleep(1000);
  auto r = ReadTaskStat(getpid(), tid);
  auto threads = ListThreads(getpid());
  done = true;
  t.join();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->pid, tid);
  EXPECT_EQ(r->comm, "a) (b c)");
  EXPECT_GE(r->num_threads, 2);
  ASSERT_TRUE(threads.ok()) << threads.status().ToString();
  EXPECT_TRUE(Contains(*threads, getpid()));
  EXPECT_TRUE(Contains(*threads, tid));
  EXPECT_TRUE(std::is_sorted(threads->begin(), threads->end()));
}

TEST(ReadStatTest, MissingProcessNamesPath) {
  auto r = ReadStat(INT_MAX);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().err(), ENOENT);
  EXPECT_NE(r.status().message().find("/proc/2147483647/stat"), std::string::npos) << r.status().message();
  auto v = ReadVmas(INT_MAX);
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.status().message().find("/proc/2147483647/smaps"), std::string::npos);
  auto f = ListFds(INT_MAX);
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("/proc/2147483647/fd"), std::string::npos);
}

// ---- status ----

TEST(ParseStatusTest, AllFields) {
  auto r = ParseStatus(
      "Name:\tmy prog) \n"
      "Umask:\t0027\n"
      "State:\tS (sleeping)\n"
      "Tgid:\t100\n"
      "Ngid:\t0\n"
      "Pid:\t101\n"
      "PPid:\t1\n"
      "TracerPid:\t55\n"
      "Uid:\t1000\t1001\t1002\t1003\n"
      "Gid:\t2000\t2001\t2002\t2003\n"
      "FDSize:\t64\n"
      "Groups:\t4 24 27 \n"
      "NStgid:\t100\t1\n"
      "NSpid:\t101\t2\n"
      "NSpgid:\t100\t1\n"
      "NSsid:\t90\t0\n"
      "Threads:\t2\n"
      "SigQ:\t0/96365\n"
      "SigPnd:\t0000000000000100\n"
      "ShdPnd:\t0000000000004000\n"
      "SigBlk:\t0000000000010000\n"
      "SigIgn:\t0000000000001000\n"
      "SigCgt:\t0000000180000002\n"
      "CapInh:\t0000000000000000\n"
      "CapPrm:\t000001ffffffffff\n"
      "CapEff:\t000001fffeffffff\n"
      "CapBnd:\t000001ffffffffff\n"
      "CapAmb:\t0000000000000001\n"
      "NoNewPrivs:\t1\n"
      "Seccomp:\t2\n"
      "Seccomp_filters:\t3\n"
      "Cpus_allowed_list:\t0-1\n");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const ProcStatus& s = *r;
  EXPECT_EQ(s.name, "my prog) ");
  EXPECT_EQ(s.umask, 027u);
  EXPECT_EQ(s.state, 'S');
  EXPECT_EQ(s.tgid, 100);
  EXPECT_EQ(s.pid, 101);
  EXPECT_EQ(s.ppid, 1);
  EXPECT_EQ(s.tracer_pid, 55);
  EXPECT_EQ(s.uid[0], 1000u);
  EXPECT_EQ(s.uid[3], 1003u);
  EXPECT_EQ(s.gid[1], 2001u);
  EXPECT_EQ(s.groups, (std::vector<uint32_t>{4, 24, 27}));
  EXPECT_EQ(s.ns_tgid, (std::vector<pid_t>{100, 1}));
  EXPECT_EQ(s.ns_pid, (std::vector<pid_t>{101, 2}));
  EXPECT_EQ(s.ns_pgid, (std::vector<pid_t>{100, 1}));
  EXPECT_EQ(s.ns_sid, (std::vector<pid_t>{90, 0}));
  EXPECT_EQ(s.threads, 2);
  EXPECT_EQ(s.sig_pnd, 0x100u);
  EXPECT_EQ(s.shd_pnd, 0x4000u);
  EXPECT_EQ(s.sig_blk, 0x10000u);
  EXPECT_EQ(s.sig_ign, 0x1000u);
  EXPECT_EQ(s.sig_cgt, 0x180000002u);
  EXPECT_EQ(s.cap_inh, 0u);
  EXPECT_EQ(s.cap_prm, 0x1ffffffffffu);
  EXPECT_EQ(s.cap_eff, 0x1fffeffffffu);
  EXPECT_EQ(s.cap_bnd, 0x1ffffffffffu);
  EXPECT_EQ(s.cap_amb, 1u);
  EXPECT_EQ(s.no_new_privs, 1);
  EXPECT_EQ(s.seccomp, 2);
  EXPECT_EQ(s.seccomp_filters, 3);
}

TEST(ParseStatusTest, EmptyGroupsAndMissingOptionalFields) {
  auto r = ParseStatus(
      "Name:\tx\nState:\tR (running)\nPid:\t5\nPPid:\t0\n"
      "Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\t \n");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->groups.empty());
  EXPECT_TRUE(r->ns_pid.empty());
  EXPECT_EQ(r->umask, 0u);
  EXPECT_EQ(r->seccomp_filters, 0);
  EXPECT_EQ(r->cap_amb, 0u);
}

TEST(ParseStatusTest, RejectsMalformed) {
  const std::string base = "Name:\tx\nState:\tR\nPid:\t5\nPPid:\t0\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\n";
  for (const char* line : {"SigBlk:\tzz00", "Uid:\t0\t0\t0", "Umask:\t0089", "NSpid:\t1 x", "Pid:\t-"}) {
    auto r = ParseStatus(base + line + "\n");
    ASSERT_FALSE(r.ok()) << line;
    EXPECT_NE(r.status().message().find(line), std::string::npos) << r.status().message();
  }
  EXPECT_FALSE(ParseStatus("Name:\tx\n").ok());  // required fields missing
}

TEST(ReadStatusTest, Self) {
  mode_t old_umask = umask(027);
  sigset_t set, old_set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR2);
  ASSERT_EQ(sigprocmask(SIG_BLOCK, &set, &old_set), 0);
  auto r = ReadStatus(getpid());
  sigprocmask(SIG_SETMASK, &old_set, nullptr);
  umask(old_umask);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  char comm[17] = {};
  prctl(PR_GET_NAME, comm);
  EXPECT_EQ(r->name, comm);
  EXPECT_EQ(r->umask, 027u);
  EXPECT_EQ(r->state, 'R');
  EXPECT_EQ(r->pid, getpid());
  EXPECT_EQ(r->tgid, getpid());
  EXPECT_EQ(r->ppid, getppid());
  EXPECT_EQ(r->uid[0], getuid());
  EXPECT_EQ(r->uid[1], geteuid());
  EXPECT_EQ(r->gid[0], getgid());
  ASSERT_FALSE(r->ns_pid.empty());
  EXPECT_EQ(r->ns_pid.back(), getpid());
  EXPECT_GE(r->threads, 1);
  EXPECT_TRUE(r->sig_blk & (1ull << (SIGUSR2 - 1)));
  EXPECT_EQ(r->no_new_privs, prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0));
  EXPECT_NE(r->cap_bnd, 0u);
}

// ---- limits ----

TEST(ParseLimitsTest, TableWithUnlimitedAndMissingUnits) {
  auto r = ParseLimits(
      "Limit                     Soft Limit           Hard Limit           Units     \n"
      "Max cpu time              unlimited            unlimited            seconds   \n"
      "Max file size             1024                 unlimited            bytes     \n"
      "Max file locks            3                    4                    locks     \n"
      "Max nice priority         0                    40                   \n"
      "Max realtime timeout      unlimited            unlimited            us        \n");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->size(), 5u);
  EXPECT_EQ((*r)[0].resource, RLIMIT_CPU);
  EXPECT_EQ((*r)[0].soft, RLIM_INFINITY);
  EXPECT_EQ((*r)[0].hard, RLIM_INFINITY);
  EXPECT_EQ((*r)[1].resource, RLIMIT_FSIZE);
  EXPECT_EQ((*r)[1].soft, 1024u);
  EXPECT_EQ((*r)[2].resource, RLIMIT_LOCKS);
  EXPECT_EQ((*r)[2].hard, 4u);
  EXPECT_EQ((*r)[3].resource, RLIMIT_NICE);
  EXPECT_EQ((*r)[3].hard, 40u);
  EXPECT_EQ((*r)[4].resource, RLIMIT_RTTIME);
}

TEST(ParseLimitsTest, RejectsMalformed) {
  for (const char* line : {"Max cpu time              lots                 unlimited            seconds",
                           "Max cpu time              5",
                           "Max warp factor           1                    2                    units",
                           "Max cpu timeout           1                    2                    seconds"}) {
    auto r = ParseLimits(std::string("Limit                     Soft Limit           Hard Limit           Units\n") +
                         line + "\n");
    ASSERT_FALSE(r.ok()) << line;
    EXPECT_NE(r.status().message().find(line), std::string::npos) << r.status().message();
  }
}

TEST(ReadLimitsTest, MatchesGetrlimit) {
  auto r = ReadLimits(getpid());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->size(), static_cast<size_t>(RLIM_NLIMITS));
  std::vector<bool> seen(RLIM_NLIMITS);
  for (const Limit& l : *r) {
    ASSERT_GE(l.resource, 0);
    ASSERT_LT(l.resource, RLIM_NLIMITS);
    seen[l.resource] = true;
    struct rlimit rl;
    ASSERT_EQ(getrlimit(static_cast<__rlimit_resource>(l.resource), &rl), 0);
    EXPECT_EQ(l.soft, rl.rlim_cur) << l.resource;
    EXPECT_EQ(l.hard, rl.rlim_max) << l.resource;
  }
  EXPECT_EQ(std::count(seen.begin(), seen.end(), true), RLIM_NLIMITS);
}

// ---- fds ----

TEST(ParseFdInfoTest, KeepsEveryLine) {
  auto r = ParseFdInfo(
      "pos:\t12\n"
      "flags:\t02004002\n"
      "mnt_id:\t16\n"
      "ino:\t1057\n"
      "eventfd-count:                0\n"
      "tfd:        5 events:       19 data:                5  pos:0 ino:40c sdev:f\n"
      "tfd:        6 events:        1 data:                6  pos:0 ino:40d sdev:f\n");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->pos, 12u);
  EXPECT_EQ(r->flags, static_cast<uint32_t>(O_CLOEXEC | O_NONBLOCK | O_RDWR));
  EXPECT_EQ(r->mnt_id, 16);
  EXPECT_EQ(r->ino, 1057u);
  EXPECT_EQ(r->fields.size(), 7u);
  EXPECT_EQ(r->fields.find("flags")->second, "02004002");
  EXPECT_EQ(r->fields.find("eventfd-count")->second, "0");
  EXPECT_EQ(r->fields.count("tfd"), 2u);
  EXPECT_EQ(r->fields.find("tfd")->second, "5 events:       19 data:                5  pos:0 ino:40c sdev:f");
}

TEST(ParseFdInfoTest, RejectsMalformed) {
  auto r = ParseFdInfo("pos:\t0\nflags:\t0800\n");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("flags:\t0800"), std::string::npos);
  EXPECT_FALSE(ParseFdInfo("pos:\t0\n").ok());
  EXPECT_FALSE(ParseFdInfo("pos:\t0\nflags:\t02\nmnt_id:\tx\n").ok());
}

TEST(ReadFdInfoTest, AppendFd) {
  char path[] = "/tmp/cryo-proc-fd-XXXXXX";
  int tmp = mkstemp(path);
  ASSERT_GE(tmp, 0);
  close(tmp);
  int fd = open(path, O_WRONLY | O_APPEND);
  unlink(path);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, "hello", 5), 5);
  struct stat st;
  ASSERT_EQ(fstat(fd, &st), 0);
  auto fds = ListFds(getpid());
  auto info = ReadFdInfo(getpid(), fd);
  close(fd);
  ASSERT_TRUE(fds.ok()) << fds.status().ToString();
  EXPECT_TRUE(Contains(*fds, 0));
  EXPECT_TRUE(Contains(*fds, fd));
  EXPECT_TRUE(std::is_sorted(fds->begin(), fds->end()));
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->pos, 5u);
  EXPECT_EQ(info->flags & O_ACCMODE, static_cast<uint32_t>(O_WRONLY));
  EXPECT_TRUE(info->flags & O_APPEND);
  EXPECT_EQ(info->ino, st.st_ino);
  EXPECT_GT(info->mnt_id, 0);
  EXPECT_EQ(info->fields.count("pos"), 1u);
}

TEST(ReadFdInfoTest, ClosedFdNamesPath) {
  auto r = ReadFdInfo(getpid(), 99999);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("/proc/" + std::to_string(getpid()) + "/fdinfo/99999"), std::string::npos);
}

// ---- children / auxv ----

TEST(ReadChildrenTest, SeesForkedChild) {
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    pause();
    _exit(0);
  }
  auto r = ReadChildren(getpid(), gettid());
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(Contains(*r, child));
}

TEST(ReadAuxvTest, MatchesGetauxval) {
  auto r = ReadAuxv(getpid());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_GE(r->size(), 2u);
  ASSERT_EQ(r->size() % 2, 0u);
  EXPECT_EQ((*r)[r->size() - 2], static_cast<uint64_t>(AT_NULL));
  bool found = false;
  for (size_t i = 0; i + 1 < r->size(); i += 2) {
    if ((*r)[i] == AT_PAGESZ) {
      found = true;
      EXPECT_EQ((*r)[i + 1], getauxval(AT_PAGESZ));
    }
  }
  EXPECT_TRUE(found);
}

}  // namespace
}  // namespace cryo::proc
