// Field rules of validate.h: each case edits one field of a valid image the
// way a buggy or hostile writer would (checksums right) and expects LoadImage
// to refuse it, naming the file and the field.
#include "image/validate.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <termios.h>

#include <cstddef>
#include <algorithm>
#include <cstring>
#include <functional>
#include <tuple>

#include "image/test_image.h"

namespace cryo::image {
namespace {

using testing::AddChild;
using testing::MakeTestImage;
using testing::TempDir;
using testing::TestImage;
using testing::WriteTestImage;

TaskCore& Leader(TestImage& t) { return *t.procs[42].core.mutable_threads(0); }
ProcessCore& Core(TestImage& t, int pid = 42) { return t.procs[pid].core; }
Vma& FirstVma(TestImage& t) { return *t.procs[42].mm.mutable_vmas(0); }

Fd* AddFd(TestImage& t, int fd, FdKind kind, uint32_t flags) {
  Fd* f = t.procs[42].fds.add_fds();
  f->set_fd(fd);
  f->set_kind(kind);
  f->set_flags(flags);
  return f;
}

// A pipe of the image held by fd 3 (read end) and fd 4 (write end).
void AddPipe(TestImage& t, const std::string& data, uint32_t capacity) {
  t.inv.add_features("pipes");
  Pipe* p = t.pipes.add_pipes();
  p->set_id(77);
  p->set_capacity(capacity);
  p->set_data(data);
  AddFd(t, 3, FD_PIPE, O_RDONLY)->mutable_pipe()->set_pipe_id(77);
  Fd* w = AddFd(t, 4, FD_PIPE, O_WRONLY);
  w->mutable_pipe()->set_pipe_id(77);
  w->mutable_pipe()->set_write_end(true);
}

// A pty of the image (/dev/pts/0, no session) whose master is fd 3.
Tty* AddPty(TestImage& t) {
  t.inv.add_features("tty");
  Tty* y = t.ttys.add_ttys();
  y->set_id(1);
  y->set_kind(TTY_PTY);
  y->set_rdev(makedev(136, 0));
  y->set_master_path("/dev/ptmx");
  y->mutable_termios()->set_cc(std::string(19, '\0'));
  Fd* f = AddFd(t, 3, FD_TTY, O_RDWR | 0x8000);
  f->mutable_tty()->set_tty_id(1);
  f->mutable_tty()->set_master(true);
  f->mutable_file()->set_path("/dev/ptmx");
  return y;
}

// Shared anonymous memory stored whole (feature anon-shmem): a second VMA
// 0x20000-0x22000 mapping SHM_ANON object 5 (inode 900) of two pages, none stored.
Vma* AddAnonShmem(TestImage& t) {
  t.inv.add_features("anon-shmem");
  ShmObject* o = t.shm.add_objects();
  o->set_id(5);
  o->set_kind(SHM_ANON);
  o->set_size(0x2000);
  o->set_mode(0600);
  Vma* v = t.procs[42].mm.add_vmas();
  v->set_start(0x20000);
  v->set_end(0x22000);
  v->set_prot(PROT_READ | PROT_WRITE);
  v->set_flags(MAP_SHARED | MAP_ANONYMOUS);
  v->set_kind(VMA_ANON_SHARED);
  v->set_name("/dev/zero");
  v->mutable_file()->set_path("/dev/zero");
  v->mutable_file()->set_ino(900);
  v->mutable_file()->set_mode(S_IFREG | 0600);
  v->set_shmem_id(900);
  v->set_shm_object(5);
  for (const char* f : {"rd", "wr", "sh", "mr", "mw", "me", "ms"}) v->add_vm_flags(f);
  v->set_file_writable(true);
  return v;
}

// A UNIX listener at /tmp/s on fd 3.
ListenSocket* AddUnixListener(TestImage& t) {
  t.inv.add_features("listen-sockets");
  ListenSocket* l = AddFd(t, 3, FD_LISTEN_SOCKET, O_RDWR)->mutable_listen_socket();
  l->set_family(AF_UNIX);
  l->set_type(SOCK_STREAM);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strcpy(a.sun_path, "/tmp/s");
  l->set_address(std::string(reinterpret_cast<const char*>(&a), offsetof(sockaddr_un, sun_path) + 7));
  return l;
}

// struct sockaddr_un of a path, or ("@name") of an abstract name.
std::string UnixName(const std::string& name) {
  std::string a(offsetof(sockaddr_un, sun_path), '\0');
  const sa_family_t fam = AF_UNIX;
  std::memcpy(a.data(), &fam, sizeof(fam));
  if (name[0] == '@') return a + '\0' + name.substr(1);
  return a + name + '\0';
}

// A UNIX socket of inode `ino` on fd `fd`, not connected, its queue stored there.
UnixSocket* AddUnixSocket(TestImage& t, int fd, uint64_t ino, int type) {
  auto& feats = *t.inv.mutable_features();
  if (std::find(feats.begin(), feats.end(), "unix-sockets") == feats.end()) t.inv.add_features("unix-sockets");
  UnixSocket* u = AddFd(t, fd, FD_UNIX_SOCKET, O_RDWR)->mutable_unix_socket();
  u->set_type(type);
  u->set_ino(ino);
  u->set_state(TCP_CLOSE);
  u->set_queue_stored(true);
  return u;
}

// A pair made by root (fds 3 and 4, inodes 100 and 101), "abc" queued on fd 3.
std::pair<UnixSocket*, UnixSocket*> AddUnixPair(TestImage& t, int type = SOCK_STREAM) {
  UnixSocket* a = AddUnixSocket(t, 3, 100, type);
  UnixSocket* b = AddUnixSocket(t, 4, 101, type);
  for (UnixSocket* u : {a, b}) {
    u->set_state(TCP_ESTABLISHED);
    u->set_peer_ino(u == a ? 101 : 100);
    u->set_peer_pid(42);
  }
  a->add_queue("abc");
  return {a, b};
}

// A datagram server at /tmp/d (fd 5, inode 200) with one message queued from
// the datagram socket @c (fd 6, inode 201), one from an unnamed one.
UnixSocket* AddDatagramServer(TestImage& t) {
  UnixSocket* d = AddUnixSocket(t, 5, 200, SOCK_DGRAM);
  d->set_address(UnixName("/tmp/d"));
  d->add_queue("from c");
  d->add_senders(UnixName("@c"));
  d->add_queue("");
  d->add_senders("");
  AddUnixSocket(t, 6, 201, SOCK_DGRAM)->set_address(UnixName("@c"));
  return d;
}

std::string LoadError(const TestImage& t) {
  TempDir d;
  Status s = WriteTestImage(d.path(), t);
  if (!s.ok()) return "write failed: " + s.ToString();
  auto img = LoadImage(d.path());
  return img.ok() ? "" : img.status().ToString();
}

// A listener with a connection waiting to be accepted from the client on fd 4.
TestImage MakePendingConnection() {
  TestImage t = MakeTestImage();
  AddUnixListener(t)->add_pending_clients(100);
  t.inv.add_features("unix-pending-connections");
  UnixSocket* c = AddUnixSocket(t, 4, 100, SOCK_STREAM);
  c->set_state(TCP_ESTABLISHED);
  c->set_accept_pending(true);
  c->set_peer_address(UnixName("/tmp/s"));
  return t;
}

TEST(ValidateTest, TheTestImagesAreValid) {
  EXPECT_EQ(LoadError(MakeTestImage()), "");
  TestImage tree = MakeTestImage();
  AddChild(&tree, 43, 42);
  AddChild(&tree, 44, 43);
  EXPECT_EQ(LoadError(tree), "");
  TestImage piped = MakeTestImage();
  AddPipe(piped, "abc", 65536);
  EXPECT_EQ(LoadError(piped), "");
  TestImage anon = MakeTestImage();
  AddAnonShmem(anon);
  EXPECT_EQ(LoadError(anon), "");
  TestImage listener = MakeTestImage();
  AddUnixListener(listener)->mutable_file()->set_mode(0600);
  EXPECT_EQ(LoadError(listener), "");
  TestImage unix_sockets = MakeTestImage();
  AddUnixPair(unix_sockets);
  unix_sockets.procs[42].fds.mutable_fds(1)->set_flags(O_RDWR | O_NONBLOCK | O_ASYNC);  // nginx's channels
  AddDatagramServer(unix_sockets);
  // A second fd on the server, without its queue.
  UnixSocket* again = AddUnixSocket(unix_sockets, 7, 200, SOCK_DGRAM);
  *again = unix_sockets.procs[42].fds.fds(2).unix_socket();
  again->clear_queue();
  again->clear_senders();
  again->set_queue_stored(false);
  EXPECT_EQ(LoadError(unix_sockets), "");
  // An accepted connection: it has its listener's name, borrowed.
  TestImage accepted = MakeTestImage();
  AddUnixListener(accepted);
  UnixSocket* c = AddUnixSocket(accepted, 4, 100, SOCK_STREAM);
  c->set_address(UnixName("/tmp/s"));
  c->set_name_borrowed(true);
  EXPECT_EQ(LoadError(accepted), "");
  EXPECT_EQ(LoadError(MakePendingConnection()), "");
  // A process whose session and group are led from an ancestor PID
  // namespace: /proc/PID/stat shows 0 for both.
  TestImage outside = MakeTestImage();
  outside.procs[42].core.set_sid(0);
  outside.procs[42].core.set_pgid(0);
  EXPECT_EQ(LoadError(outside), "");
}


struct Case {
  const char* what;
  std::function<void(TestImage&)> edit;
  const char* says;  // expected in the message
};

void ExpectRefused(const std::vector<Case>& cases) {
  for (const Case& c : cases) {
    TestImage t = MakeTestImage();
    c.edit(t);
    const std::string err = LoadError(t);
    EXPECT_NE(err.find(c.says), std::string::npos) << c.what << ": got \"" << err << "\"";
  }
}

TEST(ValidateTest, Pidfds) {
  TestImage ok = MakeTestImage();
  AddChild(&ok, 43, 42);
  ok.inv.add_features("pidfds");
  AddFd(ok, 3, FD_PIDFD, O_RDWR | O_NONBLOCK)->mutable_pidfd()->set_pid(43);
  AddFd(ok, 4, FD_PIDFD, O_RDWR | O_EXCL)->mutable_pidfd()->set_pid(42);  // PIDFD_THREAD
  PidfdState* reaped = AddFd(ok, 5, FD_PIDFD, O_RDWR)->mutable_pidfd();
  reaped->set_has_exit_status(true);
  reaped->set_exit_status(7 << 8);
  EXPECT_EQ(LoadError(ok), "");
  ExpectRefused({
      {"pidfd of a pid outside the image",
       [](TestImage& t) {
         AddFd(t, 3, FD_PIDFD, O_RDWR)->mutable_pidfd()->set_pid(4242);
         t.inv.add_features("pidfds");
       },
       "not a process of the image"},
      {"pidfd without the feature", [](TestImage& t) { AddFd(t, 3, FD_PIDFD, O_RDWR)->mutable_pidfd()->set_pid(42); },
       "pidfds"},
      {"pidfd with O_APPEND",
       [](TestImage& t) {
         AddFd(t, 3, FD_PIDFD, O_RDWR | O_APPEND)->mutable_pidfd()->set_pid(42);
         t.inv.add_features("pidfds");
       },
       "cannot have"},
      {"exit status of a live process",
       [](TestImage& t) {
         PidfdState* p = AddFd(t, 3, FD_PIDFD, O_RDWR)->mutable_pidfd();
         p->set_pid(42);
         p->set_has_exit_status(true);
         t.inv.add_features("pidfds");
       },
       "live process"},
      {"eventfd state on a pidfd",
       [](TestImage& t) {
         Fd* f = AddFd(t, 3, FD_PIDFD, O_RDWR);
         f->mutable_pidfd();
         f->mutable_eventfd();
         t.inv.add_features("pidfds");
       },
       "state of another kind"},
  });
}

// The tree's time namespace (ns/time_ns.h): made by cryo (entry 0) or by a
// live process of the image.
TEST(ValidateTest, TimeNamespace) {
  TestImage ok = MakeTestImage();
  AddChild(&ok, 43, 42);
  ok.inv.add_features("time-ns");
  ok.ns.mutable_time()->set_monotonic_ns(-5);
  ok.ns.mutable_time()->set_entry_pid(42);
  EXPECT_EQ(LoadError(ok), "");
  ExpectRefused({
      {"made by a pid outside the image",
       [](TestImage& t) {
         t.inv.add_features("time-ns");
         t.ns.mutable_time()->set_entry_pid(4242);
       },
       "the time namespace is made by pid 4242, which is no live process of the image"},
      {"the feature without the record", [](TestImage& t) { t.inv.add_features("time-ns"); },
       "feature 'time-ns' without the time namespace's record"},
  });
}

// The tree's user namespace (ns/user_ns.h): maps a fresh one can be given.
TEST(ValidateTest, UserNamespace) {
  TestImage ok = MakeTestImage();
  ok.inv.add_features("user-ns");
  auto* u = ok.ns.mutable_user();
  for (auto* map : {u->add_uid_map(), u->add_gid_map()}) {
    map->set_inside(0);
    map->set_outside(100000);
    map->set_count(65536);
  }
  EXPECT_EQ(LoadError(ok), "");
  auto with_map = [](uint32_t inside, uint32_t outside, uint32_t count) {
    return [=](TestImage& t) {
      t.inv.add_features("user-ns");
      auto* m = t.ns.mutable_user()->add_uid_map();
      m->set_inside(inside);
      m->set_outside(outside);
      m->set_count(count);
      t.ns.mutable_user()->add_gid_map()->set_count(1);
    };
  };
  ExpectRefused({
      {"the feature without the record", [](TestImage& t) { t.inv.add_features("user-ns"); },
       "feature 'user-ns' without the user namespace's record"},
      {"an empty map",
       [](TestImage& t) {
         t.inv.add_features("user-ns");
         t.ns.mutable_user()->add_uid_map()->set_count(1);
       },
       "a user namespace map of 0 lines"},
      {"a zero count", with_map(0, 0, 0), "a user namespace map range 0 0 0 the kernel would refuse"},
      {"past 2^32", with_map(0, 4294967295u, 2), "a user namespace map range 0 4294967295 2"},
      {"the record without the feature",
       [](TestImage& t) {
         t.inv.add_features("time-ns");
         t.ns.mutable_time()->set_monotonic_ns(1);
         t.ns.mutable_user()->add_uid_map()->set_count(1);
         t.ns.mutable_user()->add_gid_map()->set_count(1);
       },
       "need feature 'user-ns'"},
  });
}

// cgroup controller settings (cgroup/cgroup_settings.h): file names the
// restore joins to a cgroup directory.
TEST(ValidateTest, CgroupSettings) {
  auto with = [](const std::string& path, const std::string& name, const std::string& value) {
    return [=](TestImage& t) {
      t.inv.add_features("cgroup-settings");
      CgroupSettings* s = t.ns.add_cgroup_settings();
      s->mutable_cgroup()->set_hierarchy("memory");
      s->mutable_cgroup()->set_path(path);
      CgroupSetting* f = s->add_files();
      f->set_name(name);
      f->set_value(value);
    };
  };
  TestImage ok = MakeTestImage();
  with("a/b", "memory.limit_in_bytes", "1048576")(ok);
  with("../x", "hugetlb.2MB.limit_in_bytes", "0")(ok);
  ok.inv.mutable_features()->RemoveLast();
  EXPECT_EQ(LoadError(ok), "");
  ExpectRefused({
      {"the feature without the record", [](TestImage& t) { t.inv.add_features("cgroup-settings"); },
       "feature 'cgroup-settings' without the cgroup settings"},
      {"a file outside the cgroup", with("a", "../release_agent", "x"), "cgroup setting \"../release_agent\" invalid"},
      {"a hidden file", with("a", ".x", "1"), "cgroup setting \".x\" invalid"},
      {"a value with NUL", with("a", "pids.max", std::string("1\0", 2)), "cgroup setting \"pids.max\" invalid"},
      {"cryo's own cgroup", with("", "pids.max", "1"), "cryo's own cgroup"},
      {"an absolute path", with("/etc", "pids.max", "1"), "cgroup path"},
      {"one cgroup twice",
       [&](TestImage& t) {
         with("a", "pids.max", "1")(t);
         t.inv.mutable_features()->RemoveLast();
         with("a", "pids.max", "2")(t);
       },
       "listed twice"},
  });
}

TEST(ValidateTest, InventoryFields) {
  ExpectRefused({
      {"feature twice", [](TestImage& t) { t.inv.add_features("xsave"); }, "listed twice"},
      {"no x86_64", [](TestImage& t) { t.inv.mutable_features()->DeleteSubrange(0, 1); }, "'x86_64' is missing"},
      {"tiny xsave", [](TestImage& t) { t.inv.set_xsave_size(16); }, "xsave area size 16"},
      {"pid 0", [](TestImage& t) { t.inv.add_pids(0); }, "pid 0 (invalid)"},
      {"root not listed", [](TestImage& t) { t.inv.set_root_pid(7); }, "root pid 7"},
      {"dump mode", [](TestImage& t) { t.inv.set_dump_mode("teleport"); }, "dump mode"},
      {"tree without the feature",
       [](TestImage& t) {
         AddChild(&t, 43, 42);
         t.inv.mutable_features()->RemoveLast();
       },
       "feature 'tree'"},
  });
}

TEST(ValidateTest, ProcessAndTreeFields) {
  ExpectRefused({
      {"parent cycle",
       [](TestImage& t) {
         AddChild(&t, 43, 42);
         AddChild(&t, 44, 43);
         Core(t, 43).set_ppid(44);
       },
       "cycle"},
      {"parent missing",
       [](TestImage& t) {
         AddChild(&t, 43, 42);
         Core(t, 43).set_ppid(99);
       },
       "parent 99"},
      {"group spans sessions",
       [](TestImage& t) {
         AddChild(&t, 43, 42);
         Core(t, 43).set_sid(43);
         Core(t, 43).set_pgid(43);
         AddChild(&t, 44, 43);
         Core(t, 44).set_pgid(42);
       },
       "spans sessions"},
      {"session leader elsewhere", [](TestImage& t) { Core(t).set_pgid(5); }, "session leader in another"},
      {"group led from an ancestor namespace in a session of this one",
       [](TestImage& t) { Core(t).set_pgid(0); },
       "out of range"},
      {"session -1", [](TestImage& t) { Core(t).set_sid(-1); }, "out of range"},
      {"ghost on a thread",
       [](TestImage& t) {
         AddChild(&t, 43, 42);
         TaskCore* th = Core(t).add_threads();
         *th = Core(t).threads(0);
         th->set_tid(50);
         t.inv.add_features("threads");
         Core(t, 43).set_sid(50);
         Core(t, 43).set_pgid(50);
       },
       "is a thread of pid 42"},
      {"tid twice",
       [](TestImage& t) {
         *Core(t).add_threads() = Core(t).threads(0);
         t.inv.add_features("threads");
       },
       "also a thread"},
      {"umask", [](TestImage& t) { Core(t).set_umask(01777); }, "umask"},
      {"cwd with a NUL", [](TestImage& t) { Core(t).set_cwd(std::string("/tmp\0/x", 7)); }, "contains a NUL"},
      {"relative cwd", [](TestImage& t) { Core(t).set_cwd("tmp"); }, "not absolute"},
      {"empty creds", [](TestImage& t) { Core(t).clear_creds(); }, "exactly 4 uids"},
      {"uid -1", [](TestImage& t) { Core(t).mutable_creds()->set_uid(3, UINT32_MAX); }, "uid or gid -1"},
      {"65 groups",
       [](TestImage& t) {
         for (int i = 0; i < 65; ++i) Core(t).mutable_creds()->add_groups(i);
       },
       "65 supplementary"},
      {"ambient outside", [](TestImage& t) { Core(t).mutable_creds()->set_cap_amb(1); }, "ambient"},
      {"action for SIGKILL",
       [](TestImage& t) { Core(t).add_actions()->set_sig(9); }, "SIGKILL/SIGSTOP"},
      {"action flags", [](TestImage& t) {
         SigAction* a = Core(t).add_actions();
         a->set_sig(10);
         a->set_flags(0x100000);
       }, "unknown to the kernel"},
      {"two pending SIGUSR1",
       [](TestImage& t) {
         std::string raw(128, '\0');
         raw[0] = 10;
         Core(t).add_shared_pending()->set_raw(raw);
         Core(t).add_shared_pending()->set_raw(raw);
       },
       "pending twice"},
      {"short siginfo", [](TestImage& t) { Leader(t).add_pending()->set_raw("x"); }, "not 128"},
      {"itimer 3", [](TestImage& t) { Core(t).add_itimers()->set_which(3); }, "interval timer 3"},
      {"rlimit soft above hard",
       [](TestImage& t) {
         Rlimit* r = Core(t).mutable_rlimits(7);
         r->set_soft(10);
         r->set_hard(5);
       },
       "soft above hard"},
      {"rlimit left out", [](TestImage& t) { Core(t).mutable_rlimits()->RemoveLast(); }, "15 resource limits"},
      {"actions out of order",
       [](TestImage& t) {
         Core(t).add_actions()->set_sig(12);
         Core(t).add_actions()->set_sig(10);
       },
       "ascending"},
      {"process CPU clock", [](TestImage& t) {
         PosixTimer* p = Core(t).add_posix_timers();
         p->set_clockid(2);
         p->set_sigev_notify(1);
         t.inv.add_features("posix-timers");
       }, "not one a timer keeps"},
      {"pdeath 65", [](TestImage& t) { Core(t).set_pdeath_sig(65); }, "parent-death signal"},
      {"personality query", [](TestImage& t) { Core(t).set_personality(UINT32_MAX); }, "personality"},
      {"brk below start", [](TestImage& t) { Core(t).mutable_mm()->set_start_brk(10); }, "end before they start"},
      {"auxv odd", [](TestImage& t) { Core(t).mutable_mm()->add_auxv(6); }, "auxv"},
      {"exe relative", [](TestImage& t) { Core(t).mutable_mm()->set_exe_path("true"); }, "executable path"},
      {"timer thread",
       [](TestImage& t) {
         PosixTimer* p = Core(t).add_posix_timers();
         p->set_sigev_notify(4);
         p->set_sigev_signo(10);
         p->set_notify_tid(43);
         t.inv.add_features("posix-timers");
       },
       "thread group leader"},
      {"zombie with creds",
       [](TestImage& t) {
         AddChild(&t, 43, 42);
         Core(t, 43).set_zombie(true);
         t.inv.add_features("zombies");
       },
       "a zombie with more"},
      {"zombie stopped",
       [](TestImage& t) {
         AddChild(&t, 43, 42);
         ProcessCore z;
         z.set_pid(43);
         z.set_ppid(42);
         z.set_pgid(42);
         z.set_sid(42);
         z.set_zombie(true);
         z.set_exit_status(17);  // killed by SIGCHLD: impossible
         Core(t, 43) = z;
         t.inv.add_features("zombies");
       },
       "no way a process dies"},
  });
}

TEST(ValidateTest, ThreadFields) {
  ExpectRefused({
      {"26 registers", [](TestImage& t) { Leader(t).mutable_regs()->mutable_gpr()->RemoveLast(); }, "26 words"},
      {"eflags IOPL", [](TestImage& t) { Leader(t).mutable_regs()->set_gpr(18, 0x3246); }, "eflags"},
      {"32-bit cs", [](TestImage& t) { Leader(t).mutable_regs()->set_gpr(17, 0x23); }, "segments"},
      {"fs base", [](TestImage& t) { Leader(t).mutable_regs()->set_gpr(21, 1ull << 60); }, "fs/gs base"},
      {"xsave size",
       [](TestImage& t) { Leader(t).mutable_regs()->mutable_xsave()->append(64, '\0'); }, "xsave area of 640"},
      {"xstate_bv", [](TestImage& t) { (*Leader(t).mutable_regs()->mutable_xsave())[512] = 4; }, "beyond the CPU"},
      {"blocked SIGKILL", [](TestImage& t) { Leader(t).set_blocked(1ull << 8); }, "SIGKILL or SIGSTOP blocked"},
      {"nice 25", [](TestImage& t) { Leader(t).set_nice(25); }, "nice value 25"},
      {"timer slack 0", [](TestImage& t) { Leader(t).set_timer_slack_ns(0); }, "timer slack 0"},
      {"RLIMIT_CPU 0", [](TestImage& t) { Core(t).mutable_rlimits(0)->set_soft(0); }, "RLIMIT_CPU"},
      {"FIFO priority 0", [](TestImage& t) { Leader(t).set_sched_policy(1); }, "scheduling priority"},
      {"comm with NUL", [](TestImage& t) { Leader(t).set_comm(std::string("a\0b", 3)); }, "thread name"},
      {"altstack too small",
       [](TestImage& t) {
         Leader(t).set_altstack_flags(0);
         Leader(t).set_altstack_sp(0x10000);
         Leader(t).set_altstack_size(100);
       },
       "sigaltstack"},
      {"rseq unaligned",
       [](TestImage& t) {
         Leader(t).set_rseq_addr(0x10004);
         Leader(t).set_rseq_len(32);
       },
       "rseq area"},
      {"robust list length", [](TestImage& t) { Leader(t).set_robust_list_len(8); }, "robust list"},
  });
}

TEST(ValidateTest, SeccompFields) {
  auto filter = [](TestImage& t, size_t insns) {
    Core(t).add_seccomp_filters()->set_program(std::string(insns * 8, '\0'));
  };
  TestImage ok = MakeTestImage();
  filter(ok, 1);
  Leader(ok).set_seccomp_mode(2);
  Leader(ok).add_seccomp_chain(0);
  EXPECT_EQ(LoadError(ok), "");
  ExpectRefused({
      {"mode 3", [](TestImage& t) { Leader(t).set_seccomp_mode(3); }, "seccomp mode 3"},
      {"filter mode without a chain", [](TestImage& t) { Leader(t).set_seccomp_mode(2); }, "seccomp filter chain"},
      {"strict mode with a chain",
       [&](TestImage& t) {
         filter(t, 1);
         Leader(t).set_seccomp_mode(1);
         Leader(t).add_seccomp_chain(0);
       },
       "seccomp filter chain"},
      {"chain names no filter",
       [](TestImage& t) {
         Leader(t).set_seccomp_mode(2);
         Leader(t).add_seccomp_chain(0);
       },
       "is not recorded"},
      {"half an instruction", [](TestImage& t) { Core(t).add_seccomp_filters()->set_program("abcd"); },
       "classic BPF program"},
      {"longer than the kernel runs",
       [&](TestImage& t) {
         filter(t, 4096);
         Leader(t).set_seccomp_mode(2);
         for (int i = 0; i < 9; ++i) Leader(t).add_seccomp_chain(0);
       },
       "32768 instructions"},
  });
}

TEST(ValidateTest, MemoryFields) {
  ExpectRefused({
      {"unknown kind", [](TestImage& t) { FirstVma(t).set_kind(static_cast<VmaKind>(42)); }, "kind 42 unknown"},
      {"shared flags on private", [](TestImage& t) { FirstVma(t).set_flags(MAP_SHARED | MAP_ANONYMOUS); }, "mmap flags"},
      {"prot vs VmFlags", [](TestImage& t) { FirstVma(t).set_prot(PROT_READ); }, "rd/wr/ex"},
      {"beyond user space",
       [](TestImage& t) {
         FirstVma(t).set_start(1ull << 60);
         FirstVma(t).set_end((1ull << 60) + 0x4000);
       },
       "beyond user space"},
      {"anon name", [](TestImage& t) { FirstVma(t).set_name("[anon:a$b]"); }, "cannot be given again"},
      {"stored pages", [](TestImage& t) { FirstVma(t).set_stored_pages(3); }, "page counts disagree"},
      {"own run with a depth", [](TestImage& t) { t.procs[42].mm.mutable_runs(0)->set_depth(1); }, "names an ancestor"},
      {"run outside VMAs", [](TestImage& t) { t.procs[42].mm.mutable_runs(0)->set_vaddr(0x20000); }, "outside every VMA"},
      {"pages of a shared file",
       [](TestImage& t) {
         Vma& v = FirstVma(t);
         v.set_kind(VMA_FILE_SHARED);
         v.set_flags(MAP_SHARED);
         v.add_vm_flags("sh");
         v.add_vm_flags("ms");
         v.set_name("/etc/hostname");
         v.mutable_file()->set_path("/etc/hostname");
         v.mutable_file()->set_mode(S_IFREG | 0644);
       },
       "content is not in the page file"},
      {"huge range not 2 MiB-aligned",
       [](TestImage& t) {
         PageRange* r = t.procs[42].mm.add_huge_ranges();
         r->set_vaddr(0x10000);
         r->set_npages(512);
       },
       "huge pages at 0x10000: malformed range"},
      {"huge range outside every VMA",
       [](TestImage& t) {
         PageRange* r = t.procs[42].mm.add_huge_ranges();
         r->set_vaddr(0x40000000);
         r->set_npages(512);
       },
       "not inside one private anonymous VMA"},
      {"inherited in the root",
       [](TestImage& t) {
         PageRange* r = t.procs[42].mm.add_inherited();
         r->set_vaddr(0x10000);
         r->set_npages(1);
       },
       "the root has no parent"},
      {"inherited from nowhere",
       [](TestImage& t) {
         AddChild(&t, 43, 42);
         t.inv.add_features("cow-shared");
         t.procs[42].mm.mutable_vmas(0)->set_kind(VMA_ANON_SHARED);
         t.procs[42].mm.mutable_vmas(0)->set_flags(MAP_SHARED | MAP_ANONYMOUS);
         t.procs[42].mm.mutable_vmas(0)->add_vm_flags("sh");
         t.procs[42].mm.mutable_vmas(0)->add_vm_flags("ms");
         PageRange* r = t.procs[43].mm.add_inherited();
         r->set_vaddr(0x10000);
         r->set_npages(1);
         t.procs[43].mm.mutable_vmas(0)->set_inherited_pages(1);
       },
       "has no private anonymous VMA"},
      {"offset of the vDSO",
       [](TestImage& t) {
         Vma* v = t.procs[42].mm.add_vmas();
         v->set_start(0x20000);
         v->set_end(0x22000);
         v->set_kind(VMA_VDSO);
         v->set_flags(MAP_PRIVATE);
         v->set_name("[vdso]");
         v->set_pgoff(4096);
       },
       "a file offset on a kernel mapping"},
      {"two vdsos",
       [](TestImage& t) {
         for (uint64_t at : {0x20000, 0x30000}) {
           Vma* v = t.procs[42].mm.add_vmas();
           v->set_start(at);
           v->set_end(at + 0x2000);
           v->set_kind(VMA_VDSO);
           v->set_flags(MAP_PRIVATE);
           v->set_name("[vdso]");
         }
       },
       "a second [vdso]"},
  });
}

TEST(ValidateTest, FdFields) {
  ExpectRefused({
      {"fds out of order",
       [](TestImage& t) {
         AddFd(t, 5, FD_EVENTFD, O_RDWR)->mutable_eventfd();
         AddFd(t, 4, FD_EVENTFD, O_RDWR)->mutable_eventfd();
         t.inv.add_features("eventfd");
       },
       "not ascending"},
      {"access mode 3", [](TestImage& t) { AddFd(t, 3, FD_EVENTFD, 3)->mutable_eventfd(); }, "open flags"},
      {"chardev path",
       [](TestImage& t) {
         Fd* f = AddFd(t, 3, FD_CHARDEV, O_RDWR | 0x8000);
         f->mutable_file()->set_path("/etc/shadow");
         f->mutable_file()->set_mode(S_IFCHR);
       },
       "not one cryo reopens"},
      {"eventfd state on a pipe", [](TestImage& t) {
         AddPipe(t, "", 0);
         t.procs[42].fds.mutable_fds(0)->mutable_eventfd();
       }, "state of another kind"},
      {"eventfd append",
       [](TestImage& t) {
         AddFd(t, 3, FD_EVENTFD, O_RDWR | O_APPEND)->mutable_eventfd();
         t.inv.add_features("eventfd");
       },
       "cannot have"},
      {"a regular file without O_LARGEFILE",
       [](TestImage& t) {
         Fd* f = AddFd(t, 3, FD_REGULAR, O_RDONLY);
         f->mutable_file()->set_path("/etc/hostname");
         f->mutable_file()->set_mode(S_IFREG | 0644);
       },
       "without O_LARGEFILE"},
      {"pos on a pipe", [](TestImage& t) {
         AddPipe(t, "", 0);
         t.procs[42].fds.mutable_fds(0)->set_pos(5);
       }, "offset 5"},
      {"epoll target missing",
       [](TestImage& t) {
         Fd* f = AddFd(t, 3, FD_EPOLL, O_RDWR);
         f->mutable_epoll()->add_targets()->set_fd(9);
         t.inv.add_features("epoll");
       },
       "epoll target fd 9"},
      {"signalfd SIGKILL",
       [](TestImage& t) {
         AddFd(t, 3, FD_SIGNALFD, O_RDWR)->mutable_signalfd()->set_mask(1ull << 8);
         t.inv.add_features("signalfd");
       },
       "signalfd mask"},
      {"timerfd cancel-on-set relative",
       [](TestImage& t) {
         AddFd(t, 3, FD_TIMERFD, O_RDWR)->mutable_timerfd()->set_settime_flags(2);
         t.inv.add_features("timerfd");
       },
       "CANCEL_ON_SET"},
      {"inotify empty mask",
       [](TestImage& t) {
         InotifyWatch* w = AddFd(t, 3, FD_INOTIFY, O_RDONLY)->mutable_inotify()->add_watches();
         w->set_wd(1);
         w->set_path("/tmp");
         t.inv.add_features("inotify");
       },
       "mask 0 invalid"},
      {"pipe missing", [](TestImage& t) {
         AddPipe(t, "", 0);
         t.procs[42].fds.mutable_fds(0)->mutable_pipe()->set_pipe_id(78);
       }, "pipe 78 is not in pipes.img"},
      {"write end that reads", [](TestImage& t) {
         AddPipe(t, "", 0);
         t.procs[42].fds.mutable_fds(0)->mutable_pipe()->set_write_end(true);
       }, "write_end"},
      {"socket address of another family",
       [](TestImage& t) {
         ListenSocket* l = AddFd(t, 3, FD_LISTEN_SOCKET, O_RDWR)->mutable_listen_socket();
         l->set_family(AF_INET);
         l->set_type(SOCK_STREAM);
         l->set_address(std::string(16, '\0'));
         t.inv.add_features("listen-sockets");
       },
       "another family"},
      {"shared description, different flags",
       [](TestImage& t) {
         Fd* a = AddFd(t, 3, FD_CHARDEV, O_RDWR | 0x8000);
         a->mutable_file()->set_path("/dev/null");
         a->mutable_file()->set_mode(S_IFCHR | 0666);
         a->set_rdev(makedev(1, 3));
         a->set_file_id(5);
         Fd* b = t.procs[42].fds.add_fds();
         *b = *a;
         b->set_fd(4);
         b->set_flags(O_RDONLY | 0x8000);
         t.inv.add_features("shared-files");
       },
       "but not its state (modified: flags: 32770 -> 32768)"},
  });
}

TEST(ValidateTest, SharedObjectFields) {
  ExpectRefused({
      {"data beyond capacity", [](TestImage& t) { AddPipe(t, std::string(5000, 'x'), 4096); }, "more than its capacity"},
      {"capacity not a power of two", [](TestImage& t) { AddPipe(t, "", 5000); }, "capacity 5000"},
      {"data without a reader",
       [](TestImage& t) {
         AddPipe(t, "abc", 0);
         t.procs[42].fds.mutable_fds()->DeleteSubrange(0, 1);
       },
       "no read end"},
      {"unreferenced pipe",
       [](TestImage& t) {
         AddPipe(t, "", 0);
         t.pipes.add_pipes()->set_id(99);
       },
       "held by no fd"},
      {"pty winsize", [](TestImage& t) { AddPty(t)->mutable_winsize()->set_rows(70000); }, "window size"},
      {"pty speed not its code's",
       [](TestImage& t) {
         TtyTermios* tio = AddPty(t)->mutable_termios();
         tio->set_cflag(015);  // B9600
         tio->set_ispeed(9600);
         tio->set_ospeed(9601);
       },
       "disagree with c_cflag"},
      {"too much terminal input",
       [](TestImage& t) {
         TtyInput* in = AddPty(t)->add_slave_unread();
         in->set_data(std::string(5000, 'x'));
         in->set_partial(true);
       },
       "line discipline"},
      {"pty line discipline not N_TTY", [](TestImage& t) { AddPty(t)->mutable_termios()->set_line(2); }, "not N_TTY"},
  });
}

// A terminal outside the tree (dump --ext-tty, /dev/pts/5) whose slave is fd 3.
Tty* AddOutsideTty(TestImage& t) {
  t.inv.add_features("tty");
  t.inv.add_features("outside-tty");
  Tty* y = t.ttys.add_ttys();
  y->set_id(1);
  y->set_kind(TTY_OUTSIDE);
  y->set_index(5);
  y->set_rdev(makedev(136, 5));
  y->set_outside_ctime_ns(1234567890123);
  y->mutable_termios()->set_cc(std::string(19, '\0'));
  Fd* f = AddFd(t, 3, FD_TTY, O_RDWR | O_NONBLOCK);
  f->mutable_tty()->set_tty_id(1);
  f->mutable_tty()->set_index(5);
  f->mutable_file()->set_path("/dev/pts/5");
  return y;
}

TEST(ValidateTest, OutsideTty) {
  TestImage ok = MakeTestImage();
  AddOutsideTty(ok);
  EXPECT_EQ(LoadError(ok), "");
  ExpectRefused({
      {"without its feature",
       [](TestImage& t) {
         AddOutsideTty(t);
         t.inv.mutable_features()->RemoveLast();
       },
       "outside-tty"},
      {"its master held", [](TestImage& t) {
         AddOutsideTty(t);
         Fd* f = t.procs[42].fds.mutable_fds(0);
         f->mutable_tty()->set_master(true);
         f->set_flags(O_RDWR | 0x8000);  // O_LARGEFILE, as /dev/ptmx gets it
       }, "terminal outside the tree"},
      {"opened as /dev/tty", [](TestImage& t) {
         AddOutsideTty(t);
         Fd* f = t.procs[42].fds.mutable_fds(0);
         f->mutable_tty()->set_via_dev_tty(true);
         f->mutable_file()->set_path("/dev/tty");
       }, "terminal outside the tree"},
      {"with a session", [](TestImage& t) { AddOutsideTty(t)->set_session(42); }, "with pty state"},
      {"with queued bytes", [](TestImage& t) { AddOutsideTty(t)->set_master_unread("x"); }, "with pty state"},
      {"another device", [](TestImage& t) { AddOutsideTty(t)->set_rdev(makedev(136, 6)); }, "device number"},
      {"a tree's pty with an outside creation time", [](TestImage& t) { AddPty(t)->set_outside_ctime_ns(1); },
       "creation time of one outside"},
      {"a controlling terminal", [](TestImage& t) {
         AddOutsideTty(t);
         Core(t).mutable_ctty()->set_rdev(makedev(136, 5));
         Core(t).mutable_ctty()->set_tty_id(1);
       }, "outside the tree"},
  });
}

// Shared hugetlb memory (feature hugetlb-shared): AddAnonShmem's object made
// one huge page of 2 MiB, mapped at 0x200000 as /anon_hugepage.
Vma* AddHugetlbShared(TestImage& t) {
  Vma* v = AddAnonShmem(t);
  t.inv.add_features("hugetlb");
  t.inv.add_features("hugetlb-shared");
  ShmObject* o = t.shm.mutable_objects(0);
  o->set_size(2u << 20);
  o->set_huge_page_size(2u << 20);
  v->set_start(0x200000);
  v->set_end(0x400000);
  v->set_name("/anon_hugepage");
  v->mutable_file()->set_path("/anon_hugepage");
  v->set_huge_page_size(2u << 20);
  v->add_vm_flags("ht");
  return v;
}

TEST(ValidateTest, SharedHugetlb) {
  TestImage ok = MakeTestImage();
  AddHugetlbShared(ok);
  EXPECT_EQ(LoadError(ok), "");
  ExpectRefused({
      {"hugetlb object without its feature", [](TestImage& t) {
         AddHugetlbShared(t);
         t.inv.mutable_features()->RemoveLast();
       }, "hugetlb-shared"},
      {"object size not whole huge pages", [](TestImage& t) {
         AddHugetlbShared(t);
         t.shm.mutable_objects(0)->set_size((2u << 20) + 4096);
       }, "invalid for its kind or size"},
      {"unknown huge page size", [](TestImage& t) {
         AddHugetlbShared(t);
         t.shm.mutable_objects(0)->set_huge_page_size(4u << 20);
       }, "invalid for its kind or size"},
      {"VMA page size not its object's", [](TestImage& t) {
         AddHugetlbShared(t);
         t.shm.mutable_objects(0)->set_huge_page_size(0);
       }, "does not fit it"},
      {"hugetlb VMA not aligned", [](TestImage& t) { AddHugetlbShared(t)->set_start(0x201000); }, "aligned"},
      {"hugetlb anon VMA named /dev/zero", [](TestImage& t) { AddHugetlbShared(t)->set_name("/dev/zero"); },
       "not /dev/zero (/anon_hugepage if hugetlb)"},
  });
}

// A file of a hugetlbfs mount (feature hugetlbfs-file): SHM_POSIX object 6
// /mnt/huge/data of one huge page of 2 MiB, mapped shared at 0x200000 and
// private at 0x600000 (feature hugetlb-private-file), one page copied on
// write there being a page run of the private VMA in real images.
void AddHugetlbfsFile(TestImage& t) {
  for (const char* f : {"posix-shm", "hugetlb", "hugetlb-shared", "hugetlbfs-file", "hugetlb-private-file"})
    t.inv.add_features(f);
  ShmObject* o = t.shm.add_objects();
  o->set_id(6);
  o->set_kind(SHM_POSIX);
  o->set_name("/mnt/huge/data");
  o->set_size(2u << 20);
  o->set_mode(0600);
  o->set_huge_page_size(2u << 20);
  for (bool shared : {true, false}) {
    Vma* v = t.procs[42].mm.add_vmas();
    v->set_start(shared ? 0x200000 : 0x600000);
    v->set_end(shared ? 0x400000 : 0x800000);
    v->set_prot(PROT_READ | PROT_WRITE);
    v->set_flags(shared ? MAP_SHARED : MAP_PRIVATE);
    v->set_kind(shared ? VMA_FILE_SHARED : VMA_FILE_PRIVATE);
    v->set_name("/mnt/huge/data");
    v->mutable_file()->set_path("/mnt/huge/data");
    v->mutable_file()->set_ino(901);
    v->mutable_file()->set_mode(S_IFREG | 0600);
    v->set_shm_object(6);
    v->set_huge_page_size(2u << 20);
    for (const char* f : {"rd", "wr", "mr", "mw", "me", "ht"}) v->add_vm_flags(f);
    if (shared) {
      v->add_vm_flags("sh");
      v->add_vm_flags("ms");
    }
    v->set_file_writable(true);
  }
}

TEST(ValidateTest, HugetlbfsFile) {
  TestImage ok = MakeTestImage();
  AddHugetlbfsFile(ok);
  EXPECT_EQ(LoadError(ok), "");
  auto drop = [](TestImage& t, const std::string& f) {
    auto* fs = t.inv.mutable_features();
    for (int i = 0; i < fs->size(); ++i)
      if (fs->Get(i) == f) {
        fs->DeleteSubrange(i, 1);
        return;
      }
  };
  ExpectRefused({
      {"hugetlbfs file without its feature", [&](TestImage& t) {
         AddHugetlbfsFile(t);
         drop(t, "hugetlbfs-file");
       }, "hugetlbfs-file"},
      {"private hugetlb mapping without its feature", [&](TestImage& t) {
         AddHugetlbfsFile(t);
         drop(t, "hugetlb-private-file");
       }, "hugetlb-private-file"},
      {"hugetlbfs file path with ..", [](TestImage& t) {
         AddHugetlbfsFile(t);
         t.shm.mutable_objects(0)->set_name("/mnt/../etc/x");
       }, "is not a file under /"},
      {"POSIX shared memory of small pages outside /dev/shm", [](TestImage& t) {
         AddHugetlbfsFile(t);
         t.shm.mutable_objects(0)->set_huge_page_size(0);
       }, "is not a file under /dev/shm/"},
      {"private VMA page size not its object's", [](TestImage& t) {
         AddHugetlbfsFile(t);
         t.procs[42].mm.mutable_vmas(t.procs[42].mm.vmas_size() - 1)->set_huge_page_size(1u << 30);
       }, "aligned"},
  });
}

// Fields of the merged branches: shared anonymous objects and memory
// attributes (shmem), per-process attributes and job control (taskstate),
// socket files, options and pty owners (paths).
TEST(ValidateTest, MergedBranchFields) {
  ExpectRefused({
      {"anon object from a file mapping",
       [](TestImage& t) { AddAnonShmem(t)->set_kind(VMA_FILE_SHARED); }, "fit its kind"},
      {"anon object with a name", [](TestImage& t) {
         AddAnonShmem(t);
         t.shm.mutable_objects(0)->set_name("x");
       }, "invalid shared anonymous memory"},
      {"anon object without its feature", [](TestImage& t) {
         AddAnonShmem(t);
         t.inv.mutable_features()->RemoveLast();
       }, "does not fit it"},  // without the feature shm.img is not read: the VMA names no object
      {"anon shmem VMA named otherwise", [](TestImage& t) { AddAnonShmem(t)->set_name("/x"); }, "not /dev/zero"},
      {"droppable shared memory", [](TestImage& t) { AddAnonShmem(t)->add_vm_flags("dp"); }, "MAP_DROPPABLE"},
      {"lock on fault without lock", [](TestImage& t) {
         FirstVma(t).add_vm_flags("lf");
         t.inv.add_features("vma-attributes");
       }, "without lo"},
      {"mlock without its feature", [](TestImage& t) { FirstVma(t).add_vm_flags("lo"); }, "vma-attributes"},
      {"writers_uncounted on SysV", [](TestImage& t) {
         AddAnonShmem(t);
         t.shm.mutable_objects(0)->set_writers_uncounted(true);
       }, "writers_uncounted"},
      {"THP disable 2", [](TestImage& t) {
         Core(t).mutable_mm()->mutable_attrs()->set_thp_disable(2);
         t.inv.add_features("mm-attributes");
       }, "THP disable"},
      {"membarrier bits", [](TestImage& t) {
         Core(t).mutable_mm()->mutable_attrs()->set_membarrier(1);
         t.inv.add_features("mm-attributes");
       }, "membarrier"},
      {"mm attributes without their feature", [](TestImage& t) { Core(t).mutable_mm()->mutable_attrs()->set_mlock_future(2); },
       "mm-attributes"},
      {"stop signal SIGKILL", [](TestImage& t) {
         Core(t).set_stop_signal(9);
         t.inv.add_features("stopped");
       }, "no stop signal"},
      {"oom_score_adj", [](TestImage& t) { Core(t).set_oom_score_adj(1001); }, "oom_score_adj"},
      {"loginuid alone", [](TestImage& t) { Core(t).set_loginuid(1000); }, "session id"},
      {"absolute cgroup", [](TestImage& t) {
         CgroupPath* c = Core(t).add_cgroups();
         c->set_path("/etc");
       }, "cgroup path"},
      {"cgroup hierarchy twice", [](TestImage& t) {
         Core(t).add_cgroups()->set_path("a");
         Core(t).add_cgroups()->set_path("b");
       }, "listed twice"},
      {"empty CPU affinity", [](TestImage& t) { Leader(t).set_cpu_affinity(std::string(8, '\0')); }, "CPU affinity"},
      {"I/O priority class 5", [](TestImage& t) { Leader(t).set_ioprio(5u << 13); }, "I/O priority"},
      {"deadline runtime beyond its deadline", [](TestImage& t) {
         SchedAttr* a = Leader(t).mutable_sched_attr();
         a->set_policy(6);
         a->set_runtime(2000000);
         a->set_deadline(1000000);
       }, "SCHED_DEADLINE"},
      {"utilization clamps reversed", [](TestImage& t) {
         SchedAttr* a = Leader(t).mutable_sched_attr();
         a->set_util_min(800);
         a->set_util_max(100);
       }, "utilization clamps"},
      {"socket file mode", [](TestImage& t) { AddUnixListener(t)->mutable_file()->set_mode(0170777); }, "socket file: mode"},
      {"socket file both kept and removed", [](TestImage& t) {
         ListenSocket* l = AddUnixListener(t);
         l->mutable_file();
         l->set_file_unlinked(true);
       }, "was removed"},
      {"socket option of another level", [](TestImage& t) {
         SocketOption* o = AddUnixListener(t)->add_options();
         o->set_level(6);
         o->set_name(1);
         o->set_value("abcd");
       }, "socket option"},
      {"pty slave owner -1", [](TestImage& t) { AddPty(t)->mutable_slave_attrs()->set_uid(UINT32_MAX); }, "slave owner"},
  });
}

// A regular file open at fd `fd` (valid as it is), for locks and owners.
Fd* AddFile(TestImage& t, int fd, uint32_t flags) {
  Fd* f = AddFd(t, fd, FD_REGULAR, flags | 0x8000);
  f->mutable_file()->set_path("/etc/hostname");
  f->mutable_file()->set_mode(S_IFREG | 0644);
  return f;
}

void AddFeature(TestImage& t, const char* feature) {
  if (std::find(t.inv.features().begin(), t.inv.features().end(), feature) == t.inv.features().end())
    t.inv.add_features(feature);
}

FileLock* AddLock(TestImage& t, Fd* f, LockKind kind, bool write) {
  AddFeature(t, "file-locks");
  FileLock* l = f->add_locks();
  l->set_kind(kind);
  l->set_write(write);
  if (kind == LOCK_POSIX || kind == LOCK_OFD) l->set_to_eof(true);
  return l;
}

void SetOwner(TestImage& t, Fd* f, int type, int pid) {
  AddFeature(t, "fd-owner");
  f->mutable_owner()->set_type(type);
  f->mutable_owner()->set_pid(pid);
}

// F_SETOWN_EX owners, F_SETSIG signals and file locks (fds-PID.img), and the
// scheduling attributes against the thread's policy, priority and nice.
TEST(ValidateTest, OwnerLockAndSchedFields) {
  TestImage valid = MakeTestImage();
  AddChild(&valid, 43, 42);
  SetOwner(valid, AddFile(valid, 3, O_RDWR), F_OWNER_PID, 43);
  valid.procs[42].fds.mutable_fds(0)->set_signal(SIGRTMIN);
  SetOwner(valid, AddFile(valid, 4, O_RDONLY), F_OWNER_PGRP, Core(valid).pgid());
  Fd* locked = AddFile(valid, 5, O_RDWR);
  AddLock(valid, locked, LOCK_POSIX, true)->set_to_eof(false);
  locked->mutable_locks(0)->set_end(9);
  AddLock(valid, locked, LOCK_POSIX, false)->set_start(10);
  AddLock(valid, locked, LOCK_FLOCK, true);
  AddLock(valid, AddFile(valid, 6, O_RDONLY), LOCK_LEASE, false);
  EXPECT_EQ(LoadError(valid), "");
  ExpectRefused({
      {"owner type 7", [](TestImage& t) { SetOwner(t, AddFile(t, 3, O_RDWR), 7, 42); }, "unknown owner type"},
      {"owner pid outside the image", [](TestImage& t) { SetOwner(t, AddFile(t, 3, O_RDWR), F_OWNER_PID, 1); },
       "not a live process of the image"},
      {"owner thread outside the image", [](TestImage& t) { SetOwner(t, AddFile(t, 3, O_RDWR), F_OWNER_TID, 99); },
       "not a thread"},
      {"owner group 1", [](TestImage& t) { SetOwner(t, AddFile(t, 3, O_RDWR), F_OWNER_PGRP, 1); },
       "not a process group of the image"},
      {"owner without its feature", [](TestImage& t) {
         SetOwner(t, AddFile(t, 3, O_RDWR), F_OWNER_PID, 42);
         t.inv.mutable_features()->RemoveLast();
       }, "feature 'fd-owner'"},
      {"signal 65", [](TestImage& t) {
         AddFile(t, 3, O_RDWR)->set_signal(65);
         t.inv.add_features("fd-owner");
       }, "F_SETSIG signal 65"},
      {"lock kind 0", [](TestImage& t) { AddLock(t, AddFile(t, 3, O_RDWR), LOCK_UNKNOWN, false); }, "unknown kind"},
      {"lock kind 9", [](TestImage& t) { AddLock(t, AddFile(t, 3, O_RDWR), static_cast<LockKind>(9), false); },
       "unknown kind"},
      {"lock on a pipe", [](TestImage& t) {
         AddPipe(t, "", 0);
         AddLock(t, t.procs[42].fds.mutable_fds(0), LOCK_FLOCK, false);
       }, "not a file or directory"},
      {"lock range reversed", [](TestImage& t) {
         FileLock* l = AddLock(t, AddFile(t, 3, O_RDWR), LOCK_POSIX, false);
         l->set_to_eof(false);
         l->set_start(10);
         l->set_end(5);
       }, "range 10..5"},
      {"lock beyond off_t", [](TestImage& t) { AddLock(t, AddFile(t, 3, O_RDWR), LOCK_OFD, false)->set_start(1ull << 63); },
       "invalid"},
      {"write lock on a read-only fd", [](TestImage& t) { AddLock(t, AddFile(t, 3, O_RDONLY), LOCK_POSIX, true); },
       "access mode does not allow"},
      {"read lock on a write-only fd", [](TestImage& t) { AddLock(t, AddFile(t, 3, O_WRONLY), LOCK_OFD, false); },
       "access mode does not allow"},
      {"flock with a range", [](TestImage& t) { AddLock(t, AddFile(t, 3, O_RDWR), LOCK_FLOCK, false)->set_start(4); },
       "a range on a lock of the whole file"},
      {"read lease on an fd open for writing", [](TestImage& t) { AddLock(t, AddFile(t, 3, O_RDWR), LOCK_LEASE, false); },
       "read lease"},
      {"two flocks", [](TestImage& t) {
         Fd* f = AddFile(t, 3, O_RDWR);
         AddLock(t, f, LOCK_FLOCK, false);
         AddLock(t, f, LOCK_FLOCK, true);
       }, "more than one flock"},
      {"overlapping POSIX ranges", [](TestImage& t) {
         Fd* f = AddFile(t, 3, O_RDWR);
         AddLock(t, f, LOCK_POSIX, false);
         AddLock(t, f, LOCK_POSIX, true)->set_start(100);
       }, "overlapping"},
      {"locks without their feature", [](TestImage& t) {
         AddLock(t, AddFile(t, 3, O_RDWR), LOCK_FLOCK, false);
         t.inv.mutable_features()->RemoveLast();
       }, "feature 'file-locks'"},
      {"sched_attr nice disagrees", [](TestImage& t) {
         Leader(t).mutable_sched_attr()->set_nice(5);
       }, "disagrees"},
      {"sched_attr policy disagrees", [](TestImage& t) { Leader(t).mutable_sched_attr()->set_policy(3); }, "disagrees"},
      {"fair time slice below 0.1 ms", [](TestImage& t) { Leader(t).mutable_sched_attr()->set_runtime(99999); },
       "time slice"},
      {"fair time slice above 100 ms", [](TestImage& t) { Leader(t).mutable_sched_attr()->set_runtime(100000001); },
       "time slice"},
  });
  TestImage slice = MakeTestImage();
  Leader(slice).mutable_sched_attr()->set_runtime(2800000);
  EXPECT_EQ(LoadError(slice), "");
}

// UNIX sockets (unixsk): each record, then the sockets together (peers,
// pairs, queues, names).
TEST(ValidateTest, UnixPendingConnections) {
  ExpectRefused({
      {"without its feature", [](TestImage& t) {
         t = MakePendingConnection();
         auto& f = *t.inv.mutable_features();
         f.erase(std::find(f.begin(), f.end(), "unix-pending-connections"));
       }, "unix-pending-connections"},
      {"a client in no queue", [](TestImage& t) {
         t = MakePendingConnection();
         t.procs[42].fds.mutable_fds(0)->mutable_listen_socket()->clear_pending_clients();
       }, "in no listener's queue"},
      {"a queue naming no pending client", [](TestImage& t) {
         t = MakePendingConnection();
         t.procs[42].fds.mutable_fds(0)->mutable_listen_socket()->add_pending_clients(555);
       }, "is no pending UNIX socket"},
      {"a client twice in the queue", [](TestImage& t) {
         t = MakePendingConnection();
         t.procs[42].fds.mutable_fds(0)->mutable_listen_socket()->add_pending_clients(100);
       }, "two accept queues"},
      {"a pending client with a queue", [](TestImage& t) {
         t = MakePendingConnection();
         t.procs[42].fds.mutable_fds(1)->mutable_unix_socket()->add_queue("x");
       }, "waiting to be accepted"},
      {"a pending datagram socket", [](TestImage& t) {
         t = MakePendingConnection();
         t.procs[42].fds.mutable_fds(1)->mutable_unix_socket()->set_type(SOCK_DGRAM);
       }, "waiting to be accepted"},
      {"a peer outside on a pending client", [](TestImage& t) {
         t = MakePendingConnection();
         t.inv.add_features("unix-external-peers");
         t.procs[42].fds.mutable_fds(1)->mutable_unix_socket()->set_peer_outside(true);
       }, "peer outside the tree"},
      {"a peer outside without its feature", [](TestImage& t) {
         UnixSocket* d = AddUnixSocket(t, 5, 300, SOCK_DGRAM);
         d->set_peer_outside(true);
         d->set_peer_address(UnixName("/dev/log"));
       }, "unix-external-peers"},
      {"a datagram peer outside without a name", [](TestImage& t) {
         t.inv.add_features("unix-external-peers");
         AddUnixSocket(t, 5, 300, SOCK_DGRAM)->set_peer_outside(true);
       }, "peer outside the tree"},
      {"fds in flight without their feature", [](TestImage& t) {
         AddUnixPair(t).first->add_in_flight()->add_fds()->set_kind(FD_EVENTFD);
       }, "unix-scm-rights"},
      {"fds in flight with a message the queue lacks", [](TestImage& t) {
         t.inv.add_features("unix-scm-rights");
         UnixInFlight* m = AddUnixPair(t).first->add_in_flight();
         m->set_message(1);
         m->add_fds()->set_kind(FD_EVENTFD);
       }, "not a message of the queue"},
      {"an epoll instance in flight", [](TestImage& t) {
         t.inv.add_features("unix-scm-rights");
         AddUnixPair(t).first->add_in_flight()->add_fds()->set_kind(FD_EPOLL);
       }, "cannot send"},
      {"the listener's file removed", [](TestImage& t) {
         t = MakePendingConnection();
         t.procs[42].fds.mutable_fds(0)->mutable_listen_socket()->set_file_unlinked(true);
       }, "connect to"},
  });
}

TEST(ValidateTest, UnixSocketFields) {
  ExpectRefused({
      {"without its feature", [](TestImage& t) {
         AddUnixPair(t);
         t.inv.mutable_features()->RemoveLast();
       }, "feature 'unix-sockets'"},
      {"state message missing", [](TestImage& t) {
         AddUnixPair(t);
         t.procs[42].fds.mutable_fds(0)->clear_unix_socket();
       }, "state of another kind"},
      {"UNIX state on an eventfd", [](TestImage& t) {
         Fd* f = AddFd(t, 3, FD_EVENTFD, O_RDWR);
         f->mutable_eventfd();
         f->mutable_unix_socket();
         t.inv.add_features("eventfd");
       }, "state of another kind"},
      {"write-only socket", [](TestImage& t) {
         AddUnixPair(t);
         t.procs[42].fds.mutable_fds(0)->set_flags(O_WRONLY);
       }, "flags 0x1 a socket"},
      {"O_DIRECT socket", [](TestImage& t) {
         AddUnixPair(t);
         t.procs[42].fds.mutable_fds(0)->set_flags(O_RDWR | O_DIRECT);
       }, "a socket cannot have"},
      {"raw type", [](TestImage& t) { AddUnixPair(t).first->set_type(SOCK_RAW); }, "type 3 unknown"},
      {"no inode", [](TestImage& t) { AddUnixSocket(t, 3, 0, SOCK_DGRAM); }, "without an inode"},
      {"its own peer", [](TestImage& t) { AddUnixSocket(t, 3, 7, SOCK_DGRAM)->set_peer_ino(7); }, "its own peer"},
      {"relative path", [](TestImage& t) { AddUnixSocket(t, 3, 7, SOCK_DGRAM)->set_address(UnixName("x")); },
       "relative UNIX path"},
      {"peer address of another family", [](TestImage& t) {
         AddUnixPair(t).first->set_peer_address(std::string(16, '\0'));
       }, "peer address of another family"},
      {"connecting", [](TestImage& t) { AddUnixPair(t).first->set_state(TCP_SYN_SENT); }, "state 2"},
      {"shutdown bit 4", [](TestImage& t) { AddUnixPair(t).first->set_shutdown(4); }, "shutdown bits"},
      {"closed peer and a peer", [](TestImage& t) { AddUnixPair(t).first->set_peer_closed(true); }, "peer_closed"},
      {"closed peer, not shut down", [](TestImage& t) {
         UnixSocket* u = AddUnixSocket(t, 3, 7, SOCK_STREAM);
         u->set_peer_closed(true);
         u->set_shutdown(1);
       }, "peer_closed"},
      {"peer not in the image", [](TestImage& t) {
         AddUnixPair(t);
         t.procs[42].fds.mutable_fds()->RemoveLast();
       }, "its peer 101 is not a socket of the image"},
      {"stream peer not connected back", [](TestImage& t) {
         AddUnixPair(t);
         UnixSocket* u = AddUnixSocket(t, 5, 102, SOCK_STREAM);
         u->set_state(TCP_ESTABLISHED);
         u->set_peer_ino(100);
       }, "not connected back"},
      {"datagram default peer without a name", [](TestImage& t) {
         AddUnixSocket(t, 3, 7, SOCK_DGRAM);
         AddUnixSocket(t, 4, 8, SOCK_DGRAM)->set_peer_ino(7);
       }, "not connected back"},
      {"peer of another type", [](TestImage& t) { AddUnixPair(t).second->set_type(SOCK_SEQPACKET); }, "another type"},
      {"pair ends of two users", [](TestImage& t) { AddUnixPair(t).second->set_peer_uid(1000); },
       "different peer credentials"},
      {"connection credentials -1", [](TestImage& t) {
         auto [a, b] = AddUnixPair(t);
         a->set_peer_uid(UINT32_MAX);
         b->set_peer_uid(UINT32_MAX);
       }, "peer credentials -1"},
      {"peer pid", [](TestImage& t) { AddUnixPair(t).first->set_peer_pid(-5); }, "peer pid -5"},
      {"queue where it is not stored", [](TestImage& t) { AddUnixPair(t).first->set_queue_stored(false); },
       "does not store it"},
      {"queue stored twice", [](TestImage& t) {
         AddUnixPair(t);
         *AddUnixSocket(t, 5, 100, SOCK_STREAM) = t.procs[42].fds.fds(0).unix_socket();
       }, "stores its queue twice"},
      {"queue stored nowhere", [](TestImage& t) {
         AddUnixPair(t);
         t.procs[42].fds.mutable_fds(1)->mutable_unix_socket()->set_queue_stored(false);
       }, "stores its queue in no record"},
      {"two fds, two records", [](TestImage& t) {
         AddUnixPair(t);
         UnixSocket* u = AddUnixSocket(t, 5, 101, SOCK_STREAM);
         *u = t.procs[42].fds.fds(1).unix_socket();
         u->set_queue_stored(false);
         u->set_shutdown(1);
       }, "recorded otherwise"},
      {"empty stream chunk", [](TestImage& t) { AddUnixPair(t).first->add_queue(""); }, "empty chunk"},
      {"a million messages and one", [](TestImage& t) {
         UnixSocket* u = AddUnixPair(t, SOCK_SEQPACKET).first;
         for (int i = 0; i < 1000000; ++i) u->add_queue();
       }, "at most a million"},
      {"queue the refill cannot send", [](TestImage& t) {
         UnixSocket* u = AddUnixPair(t).first;
         for (int i = 0; i < 530000; ++i) u->add_queue()->push_back('x');  // not add_queue("x"): GCC 12 -O3 false -Wrestrict (bug 105329)
       }, "more than the refill can send"},
      {"senders on a pair", [](TestImage& t) { AddUnixPair(t).first->add_senders(""); }, "1 senders for 1"},
      {"a sender missing", [](TestImage& t) { AddDatagramServer(t)->mutable_senders()->RemoveLast(); },
       "1 senders for 2"},
      {"a sender outside the image", [](TestImage& t) {
         AddDatagramServer(t)->set_senders(0, UnixName("@elsewhere"));
       }, "not a datagram socket of the image"},
      {"sender's address", [](TestImage& t) { AddDatagramServer(t)->set_senders(0, UnixName("rel")); },
       "sender's address: relative"},
      {"queue of an unconnected stream socket", [](TestImage& t) {
         UnixSocket* u = AddUnixSocket(t, 3, 7, SOCK_STREAM);
         u->add_queue("x");
         u->add_senders("");
       }, "connection without a peer"},
      {"queue and SO_PASSCRED", [](TestImage& t) {
         SocketOption* o = AddUnixPair(t).first->add_options();
         o->set_level(SOL_SOCKET);
         o->set_name(SO_PASSCRED);
         o->set_value(std::string("\1\0\0\0", 4));
       }, "receives credentials"},
      {"queue of a datagram server without a name", [](TestImage& t) { AddDatagramServer(t)->clear_address(); },
       "no name to send them to"},
      {"queue of a datagram server whose file was removed", [](TestImage& t) {
         AddDatagramServer(t)->set_file_unlinked(true);
       }, "no name to send them to"},
      {"IPv6 option", [](TestImage& t) {
         SocketOption* o = AddUnixPair(t).first->add_options();
         o->set_level(IPPROTO_IPV6);
         o->set_name(26);
         o->set_value("abcd");
       }, "socket option 41/26"},
      {"owner -1", [](TestImage& t) { AddUnixPair(t).first->set_owner_gid(UINT32_MAX); }, "socket owner -1"},
      {"socket file of an abstract name", [](TestImage& t) {
         UnixSocket* u = AddUnixSocket(t, 3, 7, SOCK_DGRAM);
         u->set_address(UnixName("@a"));
         u->mutable_file();
       }, "without a path"},
      {"socket file mode", [](TestImage& t) {
         UnixSocket* u = AddUnixSocket(t, 3, 7, SOCK_DGRAM);
         u->set_address(UnixName("/tmp/a"));
         u->mutable_file()->set_mode(S_IFSOCK | 0777);
       }, "socket file: mode"},
      {"borrowed name and removed file", [](TestImage& t) {
         UnixSocket* u = AddUnixSocket(t, 3, 7, SOCK_DGRAM);
         u->set_address(UnixName("/tmp/a"));
         u->set_name_borrowed(true);
         u->set_file_unlinked(true);
       }, "together"},
      {"borrowed name of no listener", [](TestImage& t) {
         UnixSocket* u = AddUnixSocket(t, 3, 7, SOCK_STREAM);
         u->set_address(UnixName("/tmp/a"));
         u->set_name_borrowed(true);
       }, "no UNIX listener's"},
      {"a listener's name not borrowed", [](TestImage& t) {
         AddUnixListener(t);
         AddUnixSocket(t, 4, 7, SOCK_STREAM)->set_address(UnixName("/tmp/s"));
       }, "not recorded as borrowed"},
      {"one name, two sockets", [](TestImage& t) {
         AddUnixSocket(t, 3, 7, SOCK_DGRAM)->set_address(UnixName("@n"));
         AddUnixSocket(t, 4, 8, SOCK_DGRAM)->set_address(UnixName("@n"));
       }, "its name is also socket 7's"},
  });
}

// An established IPv4 connection 127.0.0.1:1000 <-> 127.0.0.1:2000 on fd 3.
TcpSocket* AddTcp(TestImage& t) {
  t.inv.add_features("tcp-established");
  TcpSocket* s = AddFd(t, 3, FD_TCP_SOCKET, O_RDWR)->mutable_tcp_socket();
  s->set_family(AF_INET);
  for (uint16_t port : {1000, 2000}) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    (port == 1000 ? s->mutable_local() : s->mutable_peer())->assign(reinterpret_cast<const char*>(&a), sizeof(a));
  }
  s->set_state(TCP_ESTABLISHED);
  s->set_mss(65483);
  s->set_send_queue("abcdef");
  s->set_unsent(2);
  s->set_recv_queue("xyz");
  s->set_window_scaling(true);
  s->set_send_wscale(7);
  s->set_recv_wscale(7);
  return s;
}

// TCP connections (validate_tcp.cc) and the inventory's network lock.
TEST(ValidateTest, TcpSocketFields) {
  {
    TestImage t = MakeTestImage();
    AddTcp(t);
    t.inv.set_net_lock("cryo-lock-12-345-0");
    EXPECT_EQ(LoadError(t), "");
  }
  {
    // LAST_ACK: the peer's FIN came, ours not sent yet (behind 2 bytes).
    TestImage t = MakeTestImage();
    TcpSocket* s = AddTcp(t);
    t.inv.add_features("tcp-half-closed");
    s->set_state(TCP_LAST_ACK);
    s->set_our_fin(1);
    s->set_peer_fin(true);
    EXPECT_EQ(LoadError(t), "");
  }
  ExpectRefused({
      {"without its feature", [](TestImage& t) {
         AddTcp(t);
         t.inv.mutable_features()->RemoveLast();
       }, "feature 'tcp-established'"},
      {"a lock without the feature", [](TestImage& t) { t.inv.set_net_lock("cryo-lock-1-2-0"); }, "feature 'tcp-established'"},
      {"a lock name nft would read otherwise", [](TestImage& t) {
         AddTcp(t);
         t.inv.set_net_lock("cryo-lock-1; flush ruleset");
       }, "network lock name"},
      {"a lock of another's name", [](TestImage& t) {
         AddTcp(t);
         t.inv.set_net_lock("filter");
       }, "network lock name"},
      {"state message missing", [](TestImage& t) {
         AddTcp(t);
         t.procs[42].fds.mutable_fds(0)->clear_tcp_socket();
       }, "state of another kind"},
      {"a state not restored", [](TestImage& t) { AddTcp(t)->set_state(TCP_SYN_SENT); }, "TCP state 2 is none"},
      {"half-closed without its feature", [](TestImage& t) {
         TcpSocket* s = AddTcp(t);
         s->set_state(TCP_CLOSE_WAIT);
         s->set_peer_fin(true);
       }, "feature 'tcp-half-closed'"},
      {"a state and FINs that disagree", [](TestImage& t) {
         t.inv.add_features("tcp-half-closed");
         AddTcp(t)->set_state(TCP_CLOSE_WAIT);  // no peer_fin
       }, "its FINs disagree"},
      {"FIN_WAIT2 with bytes unacknowledged", [](TestImage& t) {
         t.inv.add_features("tcp-half-closed");
         TcpSocket* s = AddTcp(t);
         s->set_state(TCP_FIN_WAIT2);
         s->set_our_fin(3);
       }, "its FINs disagree"},
      {"a FIN sent before unsent bytes", [](TestImage& t) {
         t.inv.add_features("tcp-half-closed");
         TcpSocket* s = AddTcp(t);
         s->set_state(TCP_FIN_WAIT1);
         s->set_our_fin(2);
       }, "FIN sent before"},
      {"unknown family", [](TestImage& t) { AddTcp(t)->set_family(AF_UNIX); }, "family unknown"},
      {"IPv6 family, IPv4 addresses", [](TestImage& t) { AddTcp(t)->set_family(AF_INET6); }, "another family"},
      {"short peer", [](TestImage& t) { AddTcp(t)->mutable_peer()->resize(8); }, "peer"},
      {"more unsent than queued", [](TestImage& t) { AddTcp(t)->set_unsent(7); }, "unsent"},
      {"mss 0", [](TestImage& t) { AddTcp(t)->set_mss(0); }, "MSS 0"},
      {"window scale 15", [](TestImage& t) { AddTcp(t)->set_send_wscale(15); }, "window scale"},
      {"scale without scaling", [](TestImage& t) { AddTcp(t)->set_window_scaling(false); }, "window scale"},
      {"v6only on IPv4", [](TestImage& t) { AddTcp(t)->set_v6only(true); }, "IPV6_V6ONLY"},
      {"option twice", [](TestImage& t) {
         TcpSocket* s = AddTcp(t);
         for (int i = 0; i < 2; ++i) {
           SocketOption* o = s->add_options();
           o->set_level(IPPROTO_TCP);
           o->set_name(TCP_NODELAY);
           o->set_value("abcd");
         }
       }, "socket option"},
      {"write-only", [](TestImage& t) {
         AddTcp(t);
         t.procs[42].fds.mutable_fds(0)->set_flags(O_WRONLY);
       }, "flags"},
  });
}

// A UDP socket 127.0.0.1:1000 on fd 3 with a datagram from 127.0.0.1:2000 queued.
UdpSocket* AddUdp(TestImage& t) {
  t.inv.add_features("udp-sockets");
  UdpSocket* s = AddFd(t, 3, FD_UDP_SOCKET, O_RDWR)->mutable_udp_socket();
  s->set_family(AF_INET);
  for (uint16_t port : {1000, 2000}) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    std::string* to = port == 1000 ? s->mutable_local() : s->add_queue()->mutable_source();
    to->assign(reinterpret_cast<const char*>(&a), sizeof(a));
  }
  s->mutable_queue(0)->set_data("datagram");
  return s;
}

NetlinkSocket* AddNetlink(TestImage& t) {
  t.inv.add_features("netlink-sockets");
  NetlinkSocket* n = AddFd(t, 3, FD_NETLINK_SOCKET, O_RDWR)->mutable_netlink_socket();
  n->set_type(SOCK_RAW);
  n->set_protocol(0);
  n->set_portid(42);
  n->add_groups(5);
  return n;
}

// UDP and netlink sockets (validate_udp.cc).
TEST(ValidateTest, UdpAndNetlinkSocketFields) {
  {
    TestImage t = MakeTestImage();
    AddUdp(t);
    EXPECT_EQ(LoadError(t), "");
  }
  {
    TestImage t = MakeTestImage();
    AddNetlink(t);
    EXPECT_EQ(LoadError(t), "");
  }
  ExpectRefused({
      {"UDP without its feature", [](TestImage& t) {
         AddUdp(t);
         t.inv.mutable_features()->RemoveLast();
       }, "feature 'udp-sockets'"},
      {"UDP state missing", [](TestImage& t) {
         AddUdp(t);
         t.procs[42].fds.mutable_fds(0)->clear_udp_socket();
       }, "state of another kind"},
      {"UDP family unknown", [](TestImage& t) { AddUdp(t)->set_family(AF_UNIX); }, "family unknown"},
      {"UDP IPv6 family, IPv4 addresses", [](TestImage& t) { AddUdp(t)->set_family(AF_INET6); }, "another family"},
      {"UDP shutdown bits", [](TestImage& t) { AddUdp(t)->set_shutdown(4); }, "shutdown 4"},
      {"UDP source cut short", [](TestImage& t) { AddUdp(t)->mutable_queue(0)->mutable_source()->resize(8); }, "source"},
      {"UDP datagram too large", [](TestImage& t) { AddUdp(t)->mutable_queue(0)->mutable_data()->resize(70000); },
       "larger than 64 KiB"},
      {"UDP queue without a port", [](TestImage& t) {
         std::string* local = AddUdp(t)->mutable_local();
         (*local)[2] = (*local)[3] = 0;
       }, "datagrams queued on a socket without a port"},
      {"UDP option of TCP", [](TestImage& t) {
         SocketOption* o = AddUdp(t)->add_options();
         o->set_level(IPPROTO_TCP);
         o->set_name(1);
         o->set_value("1234");
       }, "socket option 6/1"},
      {"netlink without its feature", [](TestImage& t) {
         AddNetlink(t);
         t.inv.mutable_features()->RemoveLast();
       }, "feature 'netlink-sockets'"},
      {"netlink protocol", [](TestImage& t) { AddNetlink(t)->set_protocol(12); }, "netlink protocol 12"},
      {"netlink group 0", [](TestImage& t) { AddNetlink(t)->add_groups(0); }, "netlink group 0"},
      {"netlink group twice", [](TestImage& t) { AddNetlink(t)->add_groups(5); }, "netlink group 5"},
      {"netlink peer unconnected", [](TestImage& t) { AddNetlink(t)->set_dst_portid(7); }, "a peer without a connection"},
  });
}

}  // namespace
}  // namespace cryo::image

namespace cryo::image {
namespace {

// The files a restore checks have not changed (ProcessCore 380-382,
// FileId.content_xxh3).
void RecordFiles(TestImage& t) {
  ProcessCore& c = Core(t);
  for (auto [id, path, mode] : {std::tuple{c.mutable_cwd_file(), "/", S_IFDIR | 0755},
                                std::tuple{c.mutable_root_file(), "/", S_IFDIR | 0755},
                                std::tuple{c.mutable_exe_file(), "/bin/true", S_IFREG | 0755}}) {
    id->set_path(path);
    id->set_ino(2);
    id->set_mode(static_cast<uint32_t>(mode));
  }
  c.mutable_exe_file()->set_content_xxh3(0x1234);
}

TEST(ValidateTest, RecordedFileFields) {
  TestImage ok = MakeTestImage();
  RecordFiles(ok);
  EXPECT_EQ(LoadError(ok), "");
  ExpectRefused({
      {"cwd elsewhere",
       [](TestImage& t) {
         RecordFiles(t);
         Core(t).mutable_cwd_file()->set_path("/tmp");
       },
       "recorded working directory is not its cwd"},
      {"root not a directory",
       [](TestImage& t) {
         RecordFiles(t);
         Core(t).mutable_root_file()->set_mode(S_IFREG | 0644);
       },
       "recorded root directory"},
      {"hash of a directory",
       [](TestImage& t) {
         RecordFiles(t);
         Core(t).mutable_cwd_file()->set_content_xxh3(1);
       },
       "has a content hash"},
      {"exe elsewhere",
       [](TestImage& t) {
         RecordFiles(t);
         Core(t).mutable_exe_file()->set_path("/bin/false");
       },
       "recorded executable is not its exe_path"},
      {"hash of an fd",
       [](TestImage& t) {
         Fd* f = AddFd(t, 3, FD_REGULAR, O_RDONLY | 0x8000);
         f->mutable_file()->set_path("/etc/hostname");
         f->mutable_file()->set_mode(S_IFREG | 0644);
         f->mutable_file()->set_content_xxh3(1);
       },
       "a content hash on an fd"},
      {"hash of a mapping that does not execute",
       [](TestImage& t) {
         Vma& v = FirstVma(t);
         v.set_kind(VMA_FILE_PRIVATE);
         v.set_flags(MAP_PRIVATE);
         v.set_name("/etc/hostname");
         v.mutable_file()->set_path("/etc/hostname");
         v.mutable_file()->set_mode(S_IFREG | 0644);
         v.mutable_file()->set_content_xxh3(1);
       },
       "a content hash on a mapping"},
  });
}

}  // namespace
}  // namespace cryo::image
