// File locks (lock_lines, file_locks), fd owners and shared fd tables: the
// text of /proc/locks as Linux 6.x prints it, locks taken on live fds, which
// fd keeps each lock in an image, and the roles of processes sharing an fd
// table or fs_struct at restore.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <string>
#include <thread>

#include "files/fd_kind.h"
#include "files/fd_owner.h"
#include "files/file_locks.h"
#include "files/lock_lines.h"
#include "files/shared_tables.h"

namespace cryo {
namespace {

TEST(LockLineTest, PosixOfdFlockLease) {
  auto l = ParseLockLine("lock:\t1: POSIX  ADVISORY  WRITE 20962 fe:00:10961650 10 14");
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  EXPECT_EQ(l->id, 1);
  EXPECT_FALSE(l->waiter);
  EXPECT_EQ(l->kind, "POSIX");
  EXPECT_EQ(l->type, "WRITE");
  EXPECT_EQ(l->pid, 20962);
  EXPECT_EQ(l->dev(), makedev(0xfe, 0));
  EXPECT_EQ(l->ino, 10961650u);
  EXPECT_EQ(l->start, 10u);
  EXPECT_EQ(l->end, 14u);
  EXPECT_FALSE(l->to_eof);
  EXPECT_EQ(l->Describe(), "a POSIX write lock on bytes 10-14");

  l = ParseLockLine("3: OFDLCK ADVISORY  READ -1 103:02:77 50 EOF");
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->kind, "OFDLCK");
  EXPECT_EQ(l->pid, -1);
  EXPECT_EQ(l->dev(), makedev(0x103, 2));
  EXPECT_TRUE(l->to_eof);
  EXPECT_EQ(l->Describe(), "an OFD read lock on bytes 50 to the end of the file");

  l = ParseLockLine("2: FLOCK  ADVISORY  WRITE 5 08:01:99 0 EOF");
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->Describe(), "a flock exclusive lock");

  l = ParseLockLine("4: LEASE  BREAKING  UNLCK 7 08:01:12 0 EOF");
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->kind, "LEASE");
  EXPECT_EQ(l->state, "BREAKING");
  EXPECT_EQ(l->type, "UNLCK");
}

TEST(LockLineTest, WaitersAndMalformed) {
  auto locks = ParseProcLocks(
      "1: POSIX  ADVISORY  WRITE 10 fe:00:5 0 9\n"
      "1: -> POSIX  ADVISORY  WRITE 11 fe:00:5 2 2\n"
      "1:  -> POSIX  ADVISORY  WRITE 12 fe:00:5 3 3\n"
      "2: POSIX  *NOINODE*  READ 13 <none>:0 0 EOF\n");
  ASSERT_TRUE(locks.ok()) << locks.status().ToString();
  ASSERT_EQ(locks->size(), 4u);
  EXPECT_FALSE((*locks)[0].waiter);
  EXPECT_TRUE((*locks)[1].waiter);
  EXPECT_TRUE((*locks)[2].waiter);
  EXPECT_EQ((*locks)[2].pid, 12);
  EXPECT_FALSE((*locks)[3].has_inode);
  for (const char* bad : {"", "1: POSIX ADVISORY WRITE", "x: POSIX  ADVISORY  WRITE 1 fe:00:5 0 9",
                          "1: POSIX  ADVISORY  WRITE 1 fe:00:5 9 0", "1: POSIX  ADVISORY  WRITE 1 fe00:5 0 9",
                          "1: POSIX  ADVISORY  WRITE one fe:00:5 0 9"})
    EXPECT_FALSE(ParseLockLine(bad).ok()) << bad;
}

// A file of our own, removed at the end.
class TempFile {
 public:
  TempFile() {
    char tmpl[] = "/tmp/cryo-locks-test-XXXXXX";
    fd_ = ::mkstemp(tmpl);
    path_ = tmpl;
  }
  ~TempFile() {
    ::close(fd_);
    ::unlink(path_.c_str());
  }
  const std::string& path() const { return path_; }
  int fd() const { return fd_; }

 private:
  int fd_;
  std::string path_;
};

// The fd of this process as DumpFdTable sees it.
FdSource Source(int fd, int pidfd) {
  FdSource s;
  s.pid = ::getpid();
  s.fd = fd;
  s.pidfd = pidfd;
  s.link = "/proc/self/fd/" + std::to_string(fd);
  auto info = proc::ReadFdInfo(::getpid(), fd);
  EXPECT_TRUE(info.ok());
  if (info.ok()) s.info = *info;
  ::fstat(fd, &s.st);
  return s;
}

TEST(FileLocksTest, DumpsEveryKindAndTakesThemBack) {
  TempFile f;
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, ::getpid(), 0));
  ASSERT_GE(pidfd, 0);
  struct flock w = {};
  w.l_type = F_WRLCK;
  w.l_start = 10;
  w.l_len = 5;
  ASSERT_EQ(::fcntl(f.fd(), F_SETLK, &w), 0);
  w.l_start = 100;
  w.l_len = 0;
  w.l_type = F_RDLCK;
  ASSERT_EQ(::fcntl(f.fd(), F_SETLK, &w), 0);
  image::Fd out;
  out.set_kind(image::FD_REGULAR);
  ASSERT_TRUE(DumpFdLocks(Source(f.fd(), pidfd), &out).ok());
  ASSERT_EQ(out.locks_size(), 2);
  EXPECT_EQ(out.locks(0).kind(), image::LOCK_POSIX);
  EXPECT_TRUE(out.locks(0).write());
  EXPECT_EQ(out.locks(0).start(), 10u);
  EXPECT_EQ(out.locks(0).end(), 14u);
  EXPECT_FALSE(out.locks(1).write());
  EXPECT_TRUE(out.locks(1).to_eof());
  EXPECT_EQ(out.locks(1).pid(), ::getpid());

  // Not on other fd kinds.
  image::Fd pipe_fd;
  pipe_fd.set_kind(image::FD_PIPE);
  EXPECT_FALSE(DumpFdLocks(Source(f.fd(), pidfd), &pipe_fd).ok());

  // Taken back in a fresh process on a new description: a child of ours
  // (another owner) sees them, and a lock that conflicts is refused.
  const int other = ::open(f.path().c_str(), O_RDWR);
  ASSERT_GE(other, 0);
  w.l_type = F_UNLCK;
  w.l_start = 0;
  w.l_len = 0;
  ASSERT_EQ(::fcntl(f.fd(), F_SETLK, &w), 0);
  image::FdTable table;
  image::Fd* rec = table.add_fds();
  *rec = out;
  rec->set_fd(other);
  image::FileLock* fl = rec->add_locks();
  fl->set_kind(image::LOCK_FLOCK);
  fl->set_write(true);
  ASSERT_TRUE(TakeFileLocks(table).ok());
  pid_t child = ::fork();
  if (child == 0) {
    const int fd = ::open(f.path().c_str(), O_RDWR);
    struct flock probe = {};
    probe.l_type = F_WRLCK;
    probe.l_start = 12;
    probe.l_len = 1;
    bool ok = ::fcntl(fd, F_GETLK, &probe) == 0 && probe.l_type == F_WRLCK && probe.l_pid == ::getppid();
    probe.l_type = F_WRLCK;
    probe.l_start = 20;
    probe.l_len = 50;
    ok = ok && ::fcntl(fd, F_GETLK, &probe) == 0 && probe.l_type == F_UNLCK;
    ok = ok && ::flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    ::_exit(ok ? 0 : 1);
  }
  int st;
  ASSERT_EQ(::waitpid(child, &st, 0), child);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  // A second taker on another description conflicts: refused with errno.
  const int third = ::open(f.path().c_str(), O_RDWR);
  rec->set_fd(third);
  rec->mutable_locks()->DeleteSubrange(0, 2);
  Status s = TakeFileLocks(table);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.err(), EWOULDBLOCK);
  EXPECT_NE(s.message().find("flock exclusive"), std::string::npos) << s.message();
  ::close(third);
  ::close(other);
  ::close(pidfd);
}

image::FileLock Lock(image::LockKind kind, pid_t pid) {
  image::FileLock l;
  l.set_kind(kind);
  l.set_write(true);
  l.set_pid(pid);
  return l;
}

TEST(FileLocksTest, EachLockIsKeptOnceByItsTaker) {
  // pids 10 and 11 share a description holding a flock taken by 11, and the
  // fd table of 10 (11 uses it too) holds a POSIX lock taken by 11; pid 12
  // has its own table and its own POSIX lock on the same description.
  image::FdTable t10, t11, t12;
  for (image::FdTable* t : {&t10, &t11, &t12}) {
    image::Fd* f = t->add_fds();
    f->set_fd(3);
    f->set_file_id(7);
    *f->add_locks() = Lock(image::LOCK_FLOCK, 11);
    if (t != &t12) *f->add_locks() = Lock(image::LOCK_POSIX, 11);
    image::Fd* dup = t->add_fds();
    *dup = *f;
    dup->set_fd(4);
  }
  *t12.mutable_fds(0)->add_locks() = Lock(image::LOCK_POSIX, 12);
  *t12.mutable_fds(1)->add_locks() = Lock(image::LOCK_POSIX, 12);
  std::vector<ProcessFds> tables = {{10, &t10}, {11, &t11}, {12, &t12}};
  EXPECT_TRUE(AssignFileLocks(tables, {{10, 10}, {11, 10}, {12, 12}}));
  EXPECT_EQ(t10.fds(0).locks_size() + t10.fds(1).locks_size(), 0);
  ASSERT_EQ(t11.fds(0).locks_size(), 2);
  EXPECT_EQ(t11.fds(1).locks_size(), 0);
  ASSERT_EQ(t12.fds(0).locks_size(), 1);
  EXPECT_EQ(t12.fds(0).locks(0).pid(), 12);
  EXPECT_EQ(t12.fds(1).locks_size(), 0);
}

TEST(FdOwnerTest, DumpsOwnerAndSignalRefusesOutside) {
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  const int pidfd = static_cast<int>(syscall(SYS_pidfd_open, ::getpid(), 0));
  struct f_owner_ex o = {F_OWNER_PID, ::getpid()};
  ASSERT_EQ(::fcntl(p[0], F_SETOWN_EX, &o), 0);
  ASSERT_EQ(::fcntl(p[0], F_SETSIG, SIGRTMIN + 1), 0);
  DumpScope scope;
  scope.pids = {::getpid()};
  scope.tids = {::getpid()};
  FdSource src = Source(p[0], pidfd);
  src.scope = &scope;
  image::Fd out;
  ASSERT_TRUE(DumpFdOwner(src, &out).ok());
  EXPECT_EQ(out.owner().type(), F_OWNER_PID);
  EXPECT_EQ(out.owner().pid(), ::getpid());
  EXPECT_EQ(out.signal(), SIGRTMIN + 1);
  o = {F_OWNER_PID, ::getppid()};
  ASSERT_EQ(::fcntl(p[0], F_SETOWN_EX, &o), 0);
  Status s = DumpFdOwner(src, &out);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("outside the tree"), std::string::npos) << s.message();
  image::Fd none;
  ASSERT_TRUE(DumpFdOwner(Source(p[1], pidfd), &none).ok());
  EXPECT_FALSE(none.has_owner());
  EXPECT_EQ(none.signal(), 0);
  ::close(p[0]);
  ::close(p[1]);
  ::close(pidfd);
}

TEST(SharedTablesTest, RolesFollowTheParents) {
  // 1 -> 2 (shares files) -> 3 (shares fs only), 1 -> 4 (shares nothing),
  // 4 -> 5 (shares files and fs).
  std::map<pid_t, image::ProcessCore> c;
  auto add = [&](pid_t pid, pid_t ppid, bool files, bool fs) {
    c[pid].set_pid(pid);
    c[pid].set_ppid(ppid);
    c[pid].set_shares_files_with_parent(files);
    c[pid].set_shares_fs_with_parent(fs);
  };
  add(1, 0, false, false);
  add(2, 1, true, false);
  add(3, 2, false, true);
  add(4, 1, false, false);
  add(5, 4, true, true);
  std::map<pid_t, const image::ProcessCore*> cores;
  for (auto& [pid, core] : c) cores[pid] = &core;
  const auto roles = SharingRoles(cores);
  const SharingRole &r2 = roles.at(2), &r3 = roles.at(3), &r4 = roles.at(4), &r5 = roles.at(5);
  EXPECT_EQ(r2.group, (std::vector<pid_t>{1, 2, 3}));
  EXPECT_EQ(r2.top, 1);
  EXPECT_EQ(r2.index, 1);
  EXPECT_EQ(r2.files_leader, 1);
  EXPECT_EQ(r2.files_users, (std::vector<pid_t>{1, 2}));
  EXPECT_TRUE(r2.shares_fs());  // with 3
  EXPECT_EQ(r2.fs_leader, 2);
  EXPECT_EQ(r3.fs_leader, 2);
  EXPECT_EQ(r3.fs_users, (std::vector<pid_t>{2, 3}));
  EXPECT_FALSE(r3.shares_files());
  EXPECT_EQ(r4.group, (std::vector<pid_t>{4, 5}));
  EXPECT_EQ(r4.top, 4);
  EXPECT_EQ(r5.files_leader, 4);
  EXPECT_EQ(r5.fs_leader, 4);
  EXPECT_EQ(SharingCloneFlags(c[5]), static_cast<uint64_t>(CLONE_FILES | CLONE_FS));
  c[6].set_pid(6);
  c[6].set_ppid(1);
  cores[6] = &c[6];
  EXPECT_FALSE(SharingRoles(cores).at(6).in_group());
}

TEST(SharedTablesTest, FindsCloneFilesChildren) {
  // A child P of ours clones C with CLONE_FILES | CLONE_FS and tells us C.
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  const pid_t parent = ::fork();
  if (parent == 0) {
    static char stack[64 * 1024];
    pid_t c = ::clone([](void*) -> int { for (;;) ::pause(); }, stack + sizeof stack, CLONE_FILES | CLONE_FS | SIGCHLD,
                      nullptr);
    if (::write(p[1], &c, sizeof c) != sizeof c) ::_exit(1);
    for (;;) ::pause();
  }
  pid_t child = 0;
  ASSERT_EQ(::read(p[0], &child, sizeof child), static_cast<ssize_t>(sizeof child));
  ASSERT_GT(child, 0);
  auto sharing = FindSharedTables({{parent, 0, {parent}}, {child, parent, {child}}});
  ASSERT_TRUE(sharing.ok()) << sharing.status().ToString();
  EXPECT_EQ(sharing->files_with_parent, std::set<pid_t>{child});
  EXPECT_EQ(sharing->fs_with_parent, std::set<pid_t>{child});
  // The child alone shares with a process outside: refused, naming it.
  auto alone = FindSharedTables({{child, 0, {child}}});
  EXPECT_FALSE(alone.ok());
  EXPECT_NE(alone.status().message().find("pid " + std::to_string(parent)), std::string::npos)
      << alone.status().message();
  ::kill(child, SIGKILL);
  ::kill(parent, SIGKILL);
  ::waitpid(parent, nullptr, 0);
  ::close(p[0]);
  ::close(p[1]);
}

TEST(SharedTablesTest, RefusesAThreadWithATableOfItsOwn) {
  static std::atomic<pid_t> tid{0};
  static std::atomic<bool> done{false};
  std::thread t([] {
    if (::unshare(CLONE_FILES) != 0) return;
    tid = static_cast<pid_t>(syscall(SYS_gettid));
    while (!done) ::usleep(1000);
  });
  while (!tid) ::usleep(1000);
  auto r = FindSharedTables({{::getpid(), 0, {::getpid(), tid.load()}}});
  done = true;
  t.join();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("thread " + std::to_string(tid.load())), std::string::npos)
      << r.status().message();
  EXPECT_NE(r.status().message().find("unshare(2) CLONE_FILES"), std::string::npos) << r.status().message();
}

TEST(SharedTablesTest, PlanMustCloneFromTheParent) {
  // 2's session 9 has no leader in the image: a temporary leader clones it,
  // so it cannot share its parent's fd table.
  std::map<pid_t, image::ProcessCore> c;
  auto add = [&](pid_t pid, pid_t ppid, pid_t sid) {
    c[pid].set_pid(pid);
    c[pid].set_ppid(ppid);
    c[pid].set_sid(sid);
    c[pid].set_pgid(pid);
  };
  add(1, 0, 1);
  add(2, 1, 9);
  add(3, 1, 1);
  c[3].set_shares_files_with_parent(true);
  std::map<pid_t, const image::ProcessCore*> cores;
  for (auto& [pid, core] : c) cores[pid] = &core;
  EXPECT_TRUE(CheckSharingPlan(PlanRestore(1, cores), cores).ok());
  c[2].set_shares_files_with_parent(true);
  Status s = CheckSharingPlan(PlanRestore(1, cores), cores);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("temporary leader 9"), std::string::npos) << s.message();
}

TEST(GroupBoardTest, PostAndWaitAcrossProcesses) {
  auto b = GroupBoard::Create(2);
  ASSERT_TRUE(b.ok());
  pid_t child = ::fork();
  if (child == 0) {
    b->SetFds(1, 40, 41);
    b->Post(1, GroupBoard::kReady);
    ::_exit(b->Wait(0, GroupBoard::kInstalled).ok() ? 0 : 1);
  }
  ASSERT_TRUE(b->Wait(1, GroupBoard::kReady).ok());
  int s, e;
  b->Fds(1, &s, &e);
  EXPECT_EQ(s, 40);
  EXPECT_EQ(e, 41);
  b->Post(0, GroupBoard::kInstalled);
  int st;
  ASSERT_EQ(::waitpid(child, &st, 0), child);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

}  // namespace
}  // namespace cryo
