// Terminal fds. Two kinds:
//  - FD_TTY: an end of a pseudoterminal (the /dev/ptmx master, a /dev/pts/N
//    slave, or /dev/tty naming a pts). Each fd records its pty by index; the
//    pty itself (settings, queued bytes, session) is a shared object of the
//    image, dumped once by DumpTtys (tty_table.h), which also decides that a
//    pty whose master is outside the tree is the calling shell's terminal.
//  - FD_EXTERNAL_TTY (--shell-job): a terminal that belongs to the shell the
//    tree was started from. It is not part of the image: at restore every such
//    fd becomes a new description of the terminal `cryo restore` runs on, and
//    the tree joins cryo's session, whose controlling terminal that is.
// Both are opened at restore by the fd pool (TtySet, tty_restore.h).
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "base/file_util.h"
#include "base/unique_fd.h"
#include "files/fd_kind.h"
#include "files/tty_device.h"

namespace cryo {

namespace {

// The pty a /dev/tty fd stands for (TIOCGDEV gives the real device).
Result<dev_t> RealDevice(const FdSource& s) {
  UniqueFd fd(s.Grab());
  if (!fd.valid()) return Status::FromErrno("pidfd_getfd of " + s.what());
  unsigned int dev = 0;
  if (::ioctl(fd.get(), TIOCGDEV, &dev) != 0) return Status::FromErrno("TIOCGDEV on " + s.what());
  // new_encode_dev(): for 32-bit values the same encoding as glibc's dev_t.
  return static_cast<dev_t>(dev);
}

bool DevTtyIsPty(const FdSource& s) {
  if (!tty::IsDevTty(s.st)) return false;
  auto dev = RealDevice(s);
  return dev.ok() && major(*dev) == 136;
}

// cryo rebuilds ptys on the /dev/pts it sees: a pty of another mount
// namespace's devpts would come back on the wrong instance.
Status CheckMountNamespace(const FdSource& s) {
  auto theirs = ReadLink("/proc/" + std::to_string(s.pid) + "/ns/mnt");
  auto ours = ReadLink("/proc/self/ns/mnt");
  if (!theirs.ok() || !ours.ok()) return Status::FromErrno("reading the mount namespace of pid " + std::to_string(s.pid));
  if (*theirs != *ours)
    return Status::Error(s.what() + " is a pseudoterminal in another mount namespace, which is not supported yet");
  return Status::Ok();
}

class PtyEnd final : public FdKindHandler {
 public:
  image::FdKind kind() const override { return image::FD_TTY; }
  const char* name() const override { return "pseudoterminal"; }
  const char* feature() const override { return "tty"; }
  bool Handles(const FdSource& s) const override {
    return tty::IsPtyMaster(s.st) || tty::IsPtySlave(s.st) || DevTtyIsPty(s);
  }
  Status Dump(const FdSource& s, image::Fd* out) const override {
    CRYO_RETURN_IF_ERROR(CheckMountNamespace(s));
    out->mutable_file()->set_path(s.link);
    out->set_rdev(static_cast<uint32_t>(s.st.st_rdev));
    image::TtyEnd* end = out->mutable_tty();
    UniqueFd fd(s.Grab());
    if (!fd.valid()) return Status::FromErrno("pidfd_getfd");
    if (tty::IsPtyMaster(s.st)) {
      CRYO_ASSIGN_OR_RETURN(dev_t instance, tty::MasterInstance(fd.get()));
      CRYO_RETURN_IF_ERROR(tty::CheckOnCryoDevpts(instance, s.what() + " (" + s.link + ")"));
      CRYO_ASSIGN_OR_RETURN(uint32_t index, tty::MasterIndex(fd.get()));
      end->set_master(true);
      end->set_index(index);
      return Status::Ok();
    }
    // A slave whose master was closed is hung up: every ioctl fails with EIO.
    image::TtyTermios t;
    Status st = tty::GetTermios(fd.get(), &t);
    if (!st.ok() && st.err() == EIO)
      return Status::Error("the terminal " + s.link + " was hung up (its master is closed), which is not supported");
    CRYO_RETURN_IF_ERROR(st);
    if (tty::IsDevTty(s.st)) {
      CRYO_ASSIGN_OR_RETURN(dev_t dev, RealDevice(s));
      end->set_index(tty::SlaveIndex(dev));
      end->set_via_dev_tty(true);
    } else {
      end->set_index(tty::SlaveIndex(s.st.st_rdev));
    }
    return Status::Ok();
  }
  Result<int> Open(const image::Fd& fd) const override {
    return Status::Error("terminal fd " + std::to_string(fd.fd()) + " must come from the fd pool");
  }
};

class ExternalTty final : public FdKindHandler {
 public:
  image::FdKind kind() const override { return image::FD_EXTERNAL_TTY; }
  const char* name() const override { return "terminal of the calling shell"; }
  const char* feature() const override { return "shell-job"; }
  // Pseudoterminals are PtyEnd's (DumpTtys turns those whose master is
  // outside into this kind); here: consoles, serial lines, /dev/tty on them.
  bool Handles(const FdSource& s) const override {
    return s.shell_job && (tty::IsOtherTerminal(s.st) || tty::IsDevTty(s.st));
  }
  Status Dump(const FdSource& s, image::Fd* out) const override {
    out->mutable_file()->set_path(s.link);
    out->set_rdev(static_cast<uint32_t>(s.st.st_rdev));
    if (tty::IsDevTty(s.st)) {
      CRYO_ASSIGN_OR_RETURN(dev_t dev, RealDevice(s));
      out->set_rdev(static_cast<uint32_t>(dev));
      out->mutable_tty()->set_via_dev_tty(true);
    }
    return Status::Ok();
  }
  Result<int> Open(const image::Fd& fd) const override {
    return Status::Error("terminal fd " + std::to_string(fd.fd()) + " must come from the fd pool");
  }
};

}  // namespace

const FdKindHandler* PtyHandler() {
  static const PtyEnd h;
  return &h;
}

const FdKindHandler* ExternalTtyHandler() {
  static const ExternalTty h;
  return &h;
}

}  // namespace cryo
