// Parsing of the fdinfo of eventfd, timerfd, signalfd, epoll and inotify fds,
// and of /proc/PID/timers, on text as Linux 6.x prints it and on live fds.
#include "files/event_fds.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "base/file_util.h"
#include "files/fd_table.h"
#include "tree/posix_timers.h"

namespace cryo {
namespace {

proc::FdInfo Info(const std::string& body) {
  auto r = proc::ParseFdInfo("pos:\t0\nflags:\t02\nmnt_id:\t17\nino:\t1038\n" + body);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : proc::FdInfo{};
}

proc::FdInfo LiveInfo(int fd) {
  auto r = proc::ReadFdInfo(::getpid(), fd);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : proc::FdInfo{};
}

// ---- eventfd ----

TEST(EventfdInfoTest, CountIsHexAndSemaphoreFlag) {
  image::EventfdState e;
  ASSERT_TRUE(ParseEventfdInfo(Info("eventfd-count:             1234\neventfd-id: 1\neventfd-semaphore: 1\n"), &e).ok());
  EXPECT_EQ(e.count(), 0x1234u);
  EXPECT_TRUE(e.semaphore());
}

TEST(EventfdInfoTest, HugeCount) {
  image::EventfdState e;
  ASSERT_TRUE(ParseEventfdInfo(Info("eventfd-count: fffffffffffffffe\neventfd-semaphore: 0\n"), &e).ok());
  EXPECT_EQ(e.count(), 0xfffffffffffffffeull);
  EXPECT_FALSE(e.semaphore());
}

TEST(EventfdInfoTest, NoSemaphoreLineBeforeLinux66IsRefused) {
  image::EventfdState e;
  Status s = ParseEventfdInfo(Info("eventfd-count: 5\neventfd-id: 1\n"), &e);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("semaphore mode (fdinfo \"eventfd-semaphore\", Linux 6.6+)"), std::string::npos) << s.message();
}

TEST(EventfdInfoTest, MissingOrMalformedCountFails) {
  image::EventfdState e;
  EXPECT_FALSE(ParseEventfdInfo(Info(""), &e).ok());
  Status s = ParseEventfdInfo(Info("eventfd-count: 12g\n"), &e);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("12g"), std::string::npos) << s.message();
}

TEST(EventfdInfoTest, SemaphoreModeByReadingLeavesTheCount) {
  for (int sem : {0, 1})
    for (uint64_t count : {0ull, 1ull, 2ull, 7ull, 0xfffffffffffffffeull}) {
      int fd = ::eventfd(0, (sem ? EFD_SEMAPHORE : 0) | EFD_CLOEXEC | EFD_NONBLOCK);
      ASSERT_GE(fd, 0);
      if (count) {
        ASSERT_EQ(::write(fd, &count, 8), 8);
      }
      auto r = EventfdIsSemaphore(fd, count);
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      EXPECT_EQ(*r, sem == 1) << "count " << count;
      image::EventfdState e;
      ASSERT_TRUE(ParseEventfdInfo(LiveInfo(fd), &e).ok());
      EXPECT_EQ(e.count(), count) << "semaphore " << sem;
      ::close(fd);
    }
}

TEST(EventfdInfoTest, LiveEventfd) {
  int fd = ::eventfd(0, EFD_SEMAPHORE | EFD_CLOEXEC);
  ASSERT_GE(fd, 0);
  uint64_t v = 0x123456789ull;
  ASSERT_EQ(::write(fd, &v, 8), 8);
  image::EventfdState e;
  ASSERT_TRUE(ParseEventfdInfo(LiveInfo(fd), &e).ok());
  EXPECT_EQ(e.count(), 0x123456789ull);
  EXPECT_TRUE(e.semaphore());
  ::close(fd);
}

// ---- timerfd ----

TEST(TimerfdInfoTest, AllFields) {
  image::TimerfdState t;
  ASSERT_TRUE(ParseTimerfdInfo(Info("clockid: 1\nticks: 3\nsettime flags: 01\nit_value: (1, 191373181)\n"
                                    "it_interval: (0, 100000000)\n"),
                               &t)
                  .ok());
  EXPECT_EQ(t.clockid(), 1);
  EXPECT_EQ(t.ticks(), 3u);
  EXPECT_EQ(t.settime_flags(), TFD_TIMER_ABSTIME);
  EXPECT_EQ(t.value_ns(), 1191373181u);
  EXPECT_EQ(t.interval_ns(), 100000000u);
}

TEST(TimerfdInfoTest, SettimeFlagsAreOctal) {
  image::TimerfdState t;
  ASSERT_TRUE(ParseTimerfdInfo(Info("clockid: 0\nticks: 0\nsettime flags: 03\nit_value: (0, 0)\nit_interval: (0, 0)\n"),
                               &t)
                  .ok());
  EXPECT_EQ(t.settime_flags(), TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET);
  EXPECT_EQ(t.value_ns(), 0u);
}

TEST(TimerfdInfoTest, MalformedFails) {
  image::TimerfdState t;
  EXPECT_FALSE(ParseTimerfdInfo(Info("clockid: 1\nticks: 0\nsettime flags: 00\nit_value: 1, 2\nit_interval: (0, 0)\n"), &t).ok());
  EXPECT_FALSE(ParseTimerfdInfo(Info("clockid: 1\nticks: 0\nsettime flags: 00\nit_value: (1, 2000000000)\n"
                                     "it_interval: (0, 0)\n"),
                                &t)
                   .ok());
  EXPECT_FALSE(ParseTimerfdInfo(Info("clockid: 1\nticks: 0\nit_value: (0, 0)\nit_interval: (0, 0)\n"), &t).ok());
}

TEST(TimerfdInfoTest, LiveTimerfd) {
  int fd = ::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
  ASSERT_GE(fd, 0);
  struct itimerspec its = {{0, 250000000}, {100, 0}};
  ASSERT_EQ(::timerfd_settime(fd, 0, &its, nullptr), 0);
  image::TimerfdState t;
  ASSERT_TRUE(ParseTimerfdInfo(LiveInfo(fd), &t).ok());
  EXPECT_EQ(t.clockid(), CLOCK_MONOTONIC);
  EXPECT_EQ(t.interval_ns(), 250000000u);
  EXPECT_GT(t.value_ns(), 99000000000u);
  EXPECT_LE(t.value_ns(), 100000000000u);
  EXPECT_EQ(t.ticks(), 0u);
  ::close(fd);
}

// ---- signalfd ----

TEST(SignalfdInfoTest, Mask) {
  image::SignalfdState s;
  ASSERT_TRUE(ParseSignalfdInfo(Info("sigmask:\t0000000200000800\n"), &s).ok());
  EXPECT_EQ(s.mask(), (1ull << (SIGUSR2 - 1)) | (1ull << 33));
  EXPECT_FALSE(ParseSignalfdInfo(Info(""), &s).ok());
  EXPECT_FALSE(ParseSignalfdInfo(Info("sigmask:\txyz\n"), &s).ok());
}

TEST(SignalfdInfoTest, LiveSignalfd) {
  sigset_t m;
  sigemptyset(&m);
  sigaddset(&m, SIGUSR1);
  sigaddset(&m, SIGRTMIN + 3);
  int fd = ::signalfd(-1, &m, SFD_CLOEXEC);
  ASSERT_GE(fd, 0);
  image::SignalfdState s;
  ASSERT_TRUE(ParseSignalfdInfo(LiveInfo(fd), &s).ok());
  EXPECT_EQ(s.mask(), (1ull << (SIGUSR1 - 1)) | (1ull << (SIGRTMIN + 3 - 1)));
  ::close(fd);
}

// ---- epoll ----

TEST(EpollInfoTest, Entries) {
  auto r = ParseEpollInfo(Info("tfd:        4 events:       19 data:                7  pos:0 ino:40e sdev:10\n"
                               "tfd:        3 events: 80000019 data:     deadbeefcafe  pos:0 ino:40e sdev:fe00001\n"));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].fd, 4);
  EXPECT_EQ((*r)[0].events, 0x19u);
  EXPECT_EQ((*r)[0].data, 7u);
  EXPECT_EQ((*r)[0].ino, 0x40eu);
  EXPECT_EQ((*r)[0].dev, makedev(0, 16));
  EXPECT_EQ((*r)[1].fd, 3);
  EXPECT_EQ((*r)[1].events, 0x80000019u);
  EXPECT_EQ((*r)[1].data, 0xdeadbeefcafeull);
  EXPECT_EQ((*r)[1].dev, makedev(0xfe, 1));
}

TEST(EpollInfoTest, EmptyAndMalformed) {
  auto r = ParseEpollInfo(Info(""));
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->empty());
  EXPECT_FALSE(ParseEpollInfo(Info("tfd:        4 events:       19 data:\n")).ok());
  EXPECT_FALSE(ParseEpollInfo(Info("tfd:        x events: 19 data: 7 pos:0 ino:40e sdev:10\n")).ok());
  EXPECT_FALSE(ParseEpollInfo(Info("tfd:        4 events: 19 data: 7 pos:0 ino:40e\n")).ok());
}

TEST(EpollInfoTest, LiveEpoll) {
  int ep = ::epoll_create1(EPOLL_CLOEXEC);
  int ev = ::eventfd(0, EFD_CLOEXEC);
  ASSERT_GE(ep, 0);
  ASSERT_GE(ev, 0);
  struct epoll_event e{};
  e.events = EPOLLIN | EPOLLET;
  e.data.u64 = 0xfedcba9876543210ull;
  ASSERT_EQ(::epoll_ctl(ep, EPOLL_CTL_ADD, ev, &e), 0);
  auto r = ParseEpollInfo(LiveInfo(ep));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].fd, ev);
  EXPECT_EQ((*r)[0].events & (EPOLLIN | EPOLLET), static_cast<uint32_t>(EPOLLIN | EPOLLET));
  EXPECT_EQ((*r)[0].data, 0xfedcba9876543210ull);
  struct stat st;
  ASSERT_EQ(::fstat(ev, &st), 0);
  EXPECT_EQ((*r)[0].ino, st.st_ino);
  EXPECT_EQ((*r)[0].dev, st.st_dev);
  ::close(ev);
  ::close(ep);
}

// ---- inotify ----

TEST(InotifyInfoTest, WatchesSortedByWd) {
  auto r = ParseInotifyInfo(Info(
      "inotify wd:2 ino:35d sdev:fe00000 mask:2 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:5d03000000000000\n"
      "inotify wd:1 ino:a7431a sdev:fe00000 mask:102 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 "
      "f_handle:1a43a700bf7fa651\n"));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->size(), 2u);
  const InotifyMark& a = (*r)[0];
  EXPECT_EQ(a.wd, 1);
  EXPECT_EQ(a.ino, 0xa7431au);
  EXPECT_EQ(a.dev, makedev(254, 0));
  EXPECT_EQ(a.mask, static_cast<uint32_t>(IN_MODIFY | IN_CREATE));
  EXPECT_EQ(a.handle_type, 1);
  EXPECT_EQ(a.handle, std::string("\x1a\x43\xa7\x00\xbf\x7f\xa6\x51", 8));
  EXPECT_EQ((*r)[1].wd, 2);
  EXPECT_EQ((*r)[1].mask, static_cast<uint32_t>(IN_MODIFY));
}

TEST(InotifyInfoTest, WdIsHex) {
  auto r = ParseInotifyInfo(Info("inotify wd:1a ino:1 sdev:800001 mask:2 ignored_mask:0\n"));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].wd, 26);
  EXPECT_EQ((*r)[0].dev, makedev(8, 1));
  EXPECT_TRUE((*r)[0].handle.empty());  // no handle: the dump reports it
}

TEST(InotifyInfoTest, Malformed) {
  EXPECT_FALSE(ParseInotifyInfo(Info("inotify wd:1 ino:1 sdev:0 mask:2\n")).ok());
  EXPECT_FALSE(ParseInotifyInfo(Info("inotify wd:1 ino:1 sdev:0 mask:2 ignored_mask:0 fhandle-bytes:8 "
                                     "fhandle-type:1 f_handle:5d03\n"))
                   .ok());
  EXPECT_FALSE(ParseInotifyInfo(Info("inotify wd:1 ino:1 sdev:0 mask:2 ignored_mask:0 fhandle-bytes:2 "
                                     "fhandle-type:1 f_handle:5g03\n"))
                   .ok());
}

TEST(InotifyInfoTest, LiveInotify) {
  char dir[] = "/tmp/cryo-inotify-test-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  int in = ::inotify_init1(IN_CLOEXEC);
  ASSERT_GE(in, 0);
  int wd = ::inotify_add_watch(in, dir, IN_CREATE | IN_ONESHOT);
  ASSERT_GT(wd, 0);
  auto r = ParseInotifyInfo(LiveInfo(in));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->size(), 1u);
  struct stat st;
  ASSERT_EQ(::stat(dir, &st), 0);
  EXPECT_EQ((*r)[0].wd, wd);
  EXPECT_EQ((*r)[0].ino, st.st_ino);
  EXPECT_EQ((*r)[0].dev, st.st_dev);
  EXPECT_EQ((*r)[0].mask, static_cast<uint32_t>(IN_CREATE | IN_ONESHOT));
  ::close(in);
  ::rmdir(dir);
}

TEST(SplitFdinfoPairsTest, JoinedAndSeparateValues) {
  std::string first;
  std::vector<std::pair<std::string, std::string>> pairs;
  ASSERT_TRUE(SplitFdinfoPairs("5 events:   19 data: 7  pos:0", &first, &pairs));
  EXPECT_EQ(first, "5");
  ASSERT_EQ(pairs.size(), 3u);
  EXPECT_EQ(pairs[0], (std::pair<std::string, std::string>("events", "19")));
  EXPECT_EQ(pairs[2], (std::pair<std::string, std::string>("pos", "0")));
  pairs.clear();
  EXPECT_FALSE(SplitFdinfoPairs("5 events:", &first, &pairs));
  EXPECT_FALSE(SplitFdinfoPairs("5 junk", &first, &pairs));
  EXPECT_FALSE(SplitFdinfoPairs("", &first, &pairs));
}

// ---- refusals name the kind ----

TEST(DescribeFdTargetTest, NamesAnonInodeKinds) {
  EXPECT_EQ(DescribeFdTarget("anon_inode:[io_uring]"), "an io_uring instance (anon_inode:[io_uring])");
  EXPECT_EQ(DescribeFdTarget("anon_inode:[fanotify]"), "a fanotify group (anon_inode:[fanotify])");
  EXPECT_EQ(DescribeFdTarget("anon_inode:[userfaultfd]"), "a userfaultfd (anon_inode:[userfaultfd])");
  EXPECT_EQ(DescribeFdTarget("anon_inode:[perf_event]"), "a perf_event fd (anon_inode:[perf_event])");
  EXPECT_EQ(DescribeFdTarget("anon_inode:[pidfd]"), "a pidfd (anon_inode:[pidfd])");
  EXPECT_EQ(DescribeFdTarget("anon_inode:bpf-map"), "a BPF map (anon_inode:bpf-map)");
  EXPECT_EQ(DescribeFdTarget("anon_inode:bpf-prog"), "a BPF program (anon_inode:bpf-prog)");
  EXPECT_EQ(DescribeFdTarget("anon_inode:kvm-vcpu:0"), "a KVM vCPU (anon_inode:kvm-vcpu:0)");
  EXPECT_EQ(DescribeFdTarget("/dmabuf:"), "a DMA buffer (/dmabuf:)");
  EXPECT_EQ(DescribeFdTarget("anon_inode:[something]"),
            "an anonymous-inode file of kind \"something\" (anon_inode:[something])");
}

// ---- /proc/PID/timers ----

TEST(ProcTimersTest, Parse) {
  auto r = ParseProcTimers(
      "ID: 2\nsignal: 34/0000000012345678\nnotify: none/pid.7782\nClockID: 7\n"
      "ID: 1\nsignal: 35/ffff888012345678\nnotify: signal/tid.7783\nClockID: 0\n"
      "ID: 0\nsignal: 14/0000000000000000\nnotify: signal/pid.7782\nClockID: 1\n");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->size(), 3u);
  EXPECT_EQ((*r)[0].id, 0);
  EXPECT_EQ((*r)[0].signo, SIGALRM);
  EXPECT_EQ((*r)[0].sigev_notify, SIGEV_SIGNAL);
  EXPECT_EQ((*r)[0].notify_pid, 7782);
  EXPECT_EQ((*r)[0].clockid, CLOCK_MONOTONIC);
  EXPECT_EQ((*r)[1].id, 1);
  EXPECT_EQ((*r)[1].signo, 35);
  EXPECT_EQ((*r)[1].sigev_value, 0xffff888012345678ull);
  EXPECT_EQ((*r)[1].sigev_notify, SIGEV_SIGNAL | 4 /*SIGEV_THREAD_ID*/);
  EXPECT_EQ((*r)[1].notify_pid, 7783);
  EXPECT_EQ((*r)[2].id, 2);
  EXPECT_EQ((*r)[2].sigev_notify, SIGEV_NONE);
  EXPECT_EQ((*r)[2].sigev_value, 0x12345678u);
  EXPECT_EQ((*r)[2].clockid, CLOCK_BOOTTIME);
}

TEST(ProcTimersTest, EmptyAndMalformed) {
  auto r = ParseProcTimers("");
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->empty());
  EXPECT_FALSE(ParseProcTimers("ID: 0\nsignal: 34/0\nnotify: signal/pid.1\n").ok());  // no ClockID
  EXPECT_FALSE(ParseProcTimers("signal: 34/0\n").ok());
  EXPECT_FALSE(ParseProcTimers("ID: 0\nsignal: 34\nnotify: signal/pid.1\nClockID: 1\n").ok());
  EXPECT_FALSE(ParseProcTimers("ID: 0\nsignal: 34/0\nnotify: bogus/pid.1\nClockID: 1\n").ok());
  EXPECT_FALSE(ParseProcTimers("ID: 0\nsignal: 34/0\nnotify: signal/xid.1\nClockID: 1\n").ok());
}

TEST(ProcTimersTest, LiveTimer) {
  struct sigevent sev{};
  sev.sigev_notify = SIGEV_NONE;
  sev.sigev_signo = SIGRTMIN + 2;
  sev.sigev_value.sival_ptr = reinterpret_cast<void*>(0xabcdef);
  timer_t t;
  ASSERT_EQ(::timer_create(CLOCK_REALTIME, &sev, &t), 0);
  auto text = ReadFileToString("/proc/self/timers");
  ASSERT_TRUE(text.ok());
  auto r = ParseProcTimers(*text);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  bool found = false;
  for (const ProcTimer& p : *r)
    if (p.id == static_cast<int>(reinterpret_cast<intptr_t>(t))) {
      found = true;
      EXPECT_EQ(p.signo, SIGRTMIN + 2);
      EXPECT_EQ(p.sigev_value, 0xabcdefu);
      EXPECT_EQ(p.sigev_notify, SIGEV_NONE);
      EXPECT_EQ(p.notify_pid, ::getpid());
      EXPECT_EQ(p.clockid, CLOCK_REALTIME);
    }
  EXPECT_TRUE(found) << *text;
  ::timer_delete(t);
}

}  // namespace
}  // namespace cryo
