// SysV semaphore sets and message queues of the tree's IPC namespace.
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <functional>

#include "ns/ipc_objects.h"
#include "ns/ns_thread.h"

namespace cryo::ns {

namespace {

// Columns of /proc/sysvipc/sem and /proc/sysvipc/msg (ipc/sem.c sysvipc_sem_proc_show,
// ipc/msg.c sysvipc_msg_proc_show).
enum SemColumn { kSemKey, kSemId, kSemPerms, kSemNsems, kSemUid, kSemGid, kSemCuid, kSemCgid, kSemColumns = 10 };
enum MsgColumn { kMsgKey, kMsgId, kMsgPerms, kMsgCbytes, kMsgQnum, kMsgLspid, kMsgLrpid, kMsgUid, kMsgGid, kMsgCuid,
                 kMsgCgid, kMsgColumns = 14 };

void FillPerm(const std::vector<long long>& row, int key, int id, int perms, int uid, int gid, int cuid, int cgid,
              image::IpcPerm* p) {
  p->set_key(static_cast<int32_t>(row[key]));
  p->set_id(static_cast<int32_t>(row[id]));
  p->set_mode(static_cast<uint32_t>(row[perms]) & 0777);
  p->set_uid(static_cast<uint32_t>(row[uid]));
  p->set_gid(static_cast<uint32_t>(row[gid]));
  p->set_cuid(static_cast<uint32_t>(row[cuid]));
  p->set_cgid(static_cast<uint32_t>(row[cgid]));
}

// The calling thread's effective ids for one call (raw system calls: glibc's
// setresuid(3) would change every thread of cryo). Capabilities leave the
// effective set while the euid is not 0 and come back with it (capabilities(7)).
class CreatorIds {
 public:
  Status Become(uint32_t uid, uint32_t gid) {
    if (gid != 0) {
      if (::syscall(SYS_setresgid, -1, gid, -1) != 0) return Status::FromErrno("setresgid " + std::to_string(gid));
      gid_changed_ = true;
    }
    if (uid != 0) {
      if (::syscall(SYS_setresuid, -1, uid, -1) != 0) return Status::FromErrno("setresuid " + std::to_string(uid));
      uid_changed_ = true;
    }
    return Status::Ok();
  }
  ~CreatorIds() {
    if (uid_changed_) ::syscall(SYS_setresuid, -1, 0, -1);
    if (gid_changed_) ::syscall(SYS_setresgid, -1, 0, -1);
  }

 private:
  bool uid_changed_ = false, gid_changed_ = false;
};

}  // namespace

std::string DescribeIpc(const char* what, const image::IpcPerm& p) {
  char key[16];
  snprintf(key, sizeof(key), "%#x", static_cast<uint32_t>(p.key()));
  return std::string(what) + " id " + std::to_string(p.id()) + " (key " + key + ")";
}

Status CreateSysvObject(const image::IpcPerm& p, const char* what, const char* next_id_sysctl,
                        const std::function<int(key_t, int)>& get, const std::function<int(int)>& set_owner) {
  const std::string name = DescribeIpc(what, p);
  // The next object of this kind gets this id (sysctl kernel(5), *_next_id:
  // CONFIG_CHECKPOINT_RESTORE); the kernel puts it back to -1 once used.
  CRYO_RETURN_IF_ERROR(WriteSysctl(next_id_sysctl, std::to_string(p.id())).Prefixed(name));
  int got;
  {
    CreatorIds creator;
    CRYO_RETURN_IF_ERROR(creator.Become(p.cuid(), p.cgid()).Prefixed("taking the creator ids of " + name));
    got = get(static_cast<key_t>(p.key()), IPC_CREAT | IPC_EXCL | static_cast<int>(p.mode() & 0777));
  }
  if (got < 0) return Status::FromErrno("creating " + name);
  if (got != p.id()) return Status::Error("creating " + name + ": the kernel gave id " + std::to_string(got));
  if (set_owner(got) != 0) return Status::FromErrno("IPC_SET (owner, mode) of " + name);
  return Status::Ok();
}

Status DumpSemaphores(image::IpcNamespace* out) {
  CRYO_ASSIGN_OR_RETURN(auto rows, ReadSysvipcTable("sem", kSemColumns));
  for (const auto& row : rows) {
    image::SysvSemSet* s = out->add_semaphores();
    FillPerm(row, kSemKey, kSemId, kSemPerms, kSemUid, kSemGid, kSemCuid, kSemCgid, s->mutable_perm());
    const std::string name = DescribeIpc("SysV semaphore set", s->perm());
    // SEM_UNDO adjustments, which the kernel shows nowhere, are refused by
    // the audit for every process that has an undo list (audit/sharing.cc).
    std::vector<unsigned short> values(static_cast<size_t>(row[kSemNsems]));
    if (::semctl(s->perm().id(), 0, GETALL, values.data()) != 0) return Status::FromErrno("semctl GETALL of " + name);
    for (unsigned short v : values) s->add_values(v);
  }
  return Status::Ok();
}

Status RestoreSemaphores(const image::IpcNamespace& ns) {
  for (const image::SysvSemSet& s : ns.semaphores()) {
    const int nsems = s.values_size();
    CRYO_RETURN_IF_ERROR(CreateSysvObject(
        s.perm(), "SysV semaphore set", "kernel/sem_next_id", [nsems](key_t k, int f) { return ::semget(k, nsems, f); },
        [&s](int id) {
          struct semid_ds ds{};
          ds.sem_perm.uid = s.perm().uid();
          ds.sem_perm.gid = s.perm().gid();
          ds.sem_perm.mode = static_cast<unsigned short>(s.perm().mode());
          return ::semctl(id, 0, IPC_SET, &ds);
        }));
    std::vector<unsigned short> values(s.values().begin(), s.values().end());
    if (nsems && ::semctl(s.perm().id(), 0, SETALL, values.data()) != 0)
      return Status::FromErrno("semctl SETALL of " + DescribeIpc("SysV semaphore set", s.perm()));
  }
  return Status::Ok();
}

Status DumpMsgQueues(image::IpcNamespace* out) {
  CRYO_ASSIGN_OR_RETURN(auto rows, ReadSysvipcTable("msg", kMsgColumns));
  if (rows.empty()) return Status::Ok();
  // MSG_COPY copies at most msgmax bytes (ipc/msg.c do_msgrcv).
  CRYO_ASSIGN_OR_RETURN(std::string msgmax_text, ReadSysctl("kernel/msgmax"));
  const size_t msgmax = std::stoul(msgmax_text);
  std::vector<char> buf(sizeof(long) + msgmax);
  for (const auto& row : rows) {
    image::SysvMsgQueue* q = out->add_msg_queues();
    FillPerm(row, kMsgKey, kMsgId, kMsgPerms, kMsgUid, kMsgGid, kMsgCuid, kMsgCgid, q->mutable_perm());
    const std::string name = DescribeIpc("SysV message queue", q->perm());
    struct msqid_ds ds;
    if (::msgctl(q->perm().id(), IPC_STAT, &ds) != 0) return Status::FromErrno("IPC_STAT of " + name);
    q->set_qbytes(ds.msg_qbytes);
    for (long i = 0; i < static_cast<long>(row[kMsgQnum]); ++i) {
      const ssize_t n = ::msgrcv(q->perm().id(), buf.data(), msgmax, i, IPC_NOWAIT | MSG_COPY);
      if (n < 0 && errno == ENOSYS)
        return Status::Error(name + " holds messages, which this kernel cannot copy without taking them (msgrcv "
                                    "MSG_COPY needs CONFIG_CHECKPOINT_RESTORE)");
      if (n < 0) return Status::FromErrno("copying message " + std::to_string(i) + " of " + name + " (msgrcv MSG_COPY)");
      image::SysvMessage* m = q->add_messages();
      long type;
      std::memcpy(&type, buf.data(), sizeof(type));
      m->set_type(type);
      m->set_text(buf.data() + sizeof(long), static_cast<size_t>(n));
    }
  }
  return Status::Ok();
}

Status RestoreMsgQueues(const image::IpcNamespace& ns) {
  std::vector<char> buf;
  for (const image::SysvMsgQueue& q : ns.msg_queues()) {
    const std::string name = DescribeIpc("SysV message queue", q.perm());
    CRYO_RETURN_IF_ERROR(CreateSysvObject(
        q.perm(), "SysV message queue", "kernel/msg_next_id", [](key_t k, int f) { return ::msgget(k, f); },
        [&q](int id) {
          struct msqid_ds ds{};
          ds.msg_perm.uid = q.perm().uid();
          ds.msg_perm.gid = q.perm().gid();
          ds.msg_perm.mode = static_cast<unsigned short>(q.perm().mode());
          ds.msg_qbytes = q.qbytes();  // above msgmnb: CAP_SYS_RESOURCE, which cryo has
          return ::msgctl(id, IPC_SET, &ds);
        }));
    for (int i = 0; i < q.messages_size(); ++i) {
      const image::SysvMessage& m = q.messages(i);
      buf.resize(sizeof(long) + m.text().size());
      const long type = static_cast<long>(m.type());
      std::memcpy(buf.data(), &type, sizeof(type));
      std::memcpy(buf.data() + sizeof(long), m.text().data(), m.text().size());
      if (::msgsnd(q.perm().id(), buf.data(), m.text().size(), IPC_NOWAIT) != 0)
        return Status::FromErrno("sending message " + std::to_string(i) + " back into " + name);
    }
  }
  return Status::Ok();
}

}  // namespace cryo::ns
