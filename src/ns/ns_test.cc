// Reading another UTS/IPC namespace from a thread of this process (ns_thread.h)
// and the objects of a fresh IPC namespace round-tripped (ipc_objects.h): a
// child unshares and fills a namespace; the test dumps it, then restores it
// into a fresh namespace of a second child and compares.
#include <sched.h>
#include <signal.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include <gtest/gtest.h>

#include "ns/ipc_objects.h"
#include "ns/ns_thread.h"

namespace cryo::ns {
namespace {

// A child in fresh UTS and IPC namespaces with a host name, a semaphore set
// and a message queue; it waits until killed.
pid_t StartNamespaceChild(int sync_fd) {
  const pid_t pid = ::fork();
  if (pid != 0) return pid;
  if (::unshare(CLONE_NEWUTS | CLONE_NEWIPC) != 0 || ::sethostname("ns-test", 7) != 0) ::_exit(2);
  const int sem = ::semget(0x77, 2, IPC_CREAT | 0640);
  unsigned short v[2] = {3, 9};
  if (sem < 0 || ::semctl(sem, 0, SETALL, v) != 0) ::_exit(3);
  const int q = ::msgget(IPC_PRIVATE, 0600);
  struct {
    long type;
    char text[8];
  } m = {5, "hello"};
  if (q < 0 || ::msgsnd(q, &m, 5, 0) != 0) ::_exit(4);
  if (::write(sync_fd, "r", 1) != 1) ::_exit(5);
  for (;;) ::pause();
}

TEST(NsThread, ReadsAnotherNamespaceAndRestoresItsObjects) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (unshare)";
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  const pid_t child = StartNamespaceChild(p[1]);
  char c;
  ASSERT_EQ(::read(p[0], &c, 1), 1);
  auto theirs = NsInode(child, "ipc"), mine = NsInode(0, "ipc");
  ASSERT_TRUE(theirs.ok() && mine.ok());
  EXPECT_NE(*theirs, *mine);
  std::string host;
  image::IpcNamespace dumped;
  Status st = RunInNamespacesOf(child, CLONE_NEWUTS | CLONE_NEWIPC, [&]() -> Status {
    struct utsname u;
    ::uname(&u);
    host = u.nodename;
    CRYO_RETURN_IF_ERROR(DumpIpcSysctls(&dumped));
    CRYO_RETURN_IF_ERROR(DumpSemaphores(&dumped));
    return DumpMsgQueues(&dumped);
  });
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(host, "ns-test");
  ASSERT_EQ(dumped.semaphores_size(), 1);
  EXPECT_EQ(dumped.semaphores(0).perm().key(), 0x77);
  EXPECT_EQ(dumped.semaphores(0).perm().mode(), 0640u);
  ASSERT_EQ(dumped.semaphores(0).values_size(), 2);
  EXPECT_EQ(dumped.semaphores(0).values(1), 9u);
  ASSERT_EQ(dumped.msg_queues_size(), 1);
  ASSERT_EQ(dumped.msg_queues(0).messages_size(), 1);
  EXPECT_EQ(dumped.msg_queues(0).messages(0).type(), 5);
  EXPECT_EQ(dumped.msg_queues(0).messages(0).text(), "hello");

  // Restored in a fresh namespace of a child: the same ids, values, message.
  const pid_t restorer = ::fork();
  if (restorer == 0) {
    if (::unshare(CLONE_NEWIPC) != 0) ::_exit(2);
    if (!RestoreIpcSysctls(dumped, false).ok() || !RestoreSemaphores(dumped).ok() || !RestoreMsgQueues(dumped).ok())
      ::_exit(3);
    unsigned short v[2] = {};
    if (::semget(0x77, 0, 0) != dumped.semaphores(0).perm().id() ||
        ::semctl(dumped.semaphores(0).perm().id(), 0, GETALL, v) != 0 || v[0] != 3 || v[1] != 9)
      ::_exit(4);
    struct {
      long type;
      char text[8];
    } m = {};
    if (::msgrcv(dumped.msg_queues(0).perm().id(), &m, sizeof(m.text), 0, IPC_NOWAIT) != 5 || m.type != 5 ||
        std::memcmp(m.text, "hello", 5) != 0)
      ::_exit(5);
    ::_exit(0);
  }
  int status = -1;
  ASSERT_EQ(::waitpid(restorer, &status, 0), restorer);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "restorer child status " << status;
}

}  // namespace
}  // namespace cryo::ns
