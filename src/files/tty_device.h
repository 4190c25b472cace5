// Terminal devices as the kernel shows them: which device an fd is, the
// settings (termios2, window size) and the bytes waiting in a pseudoterminal.
//
// A tty has no way to read its queues without consuming them (there is no
// tee(2) for ttys). PtyQueues therefore drains both directions of a pty and
// can put the same bytes back exactly: into the master's input with TIOCSTI
// (the master's line discipline is always raw), into the slave's input with
// TIOCSTI under a temporary termios that stores every byte as it is (echo,
// signals, flow control and input mapping off; in canonical mode the special
// characters of a line are escaped with VLNEXT so that line boundaries and
// unfinished lines come back as they were). TIOCSTI needs CAP_SYS_ADMIN for a
// terminal that is not the caller's controlling terminal (tty_ioctl(4)).
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <string>
#include <vector>

#include "base/status.h"
#include "cryo/image.pb.h"

namespace cryo::tty {

// Character devices (devices.txt): 5:2 /dev/ptmx, 5:0 /dev/tty, 136:N /dev/pts/N.
bool IsPtyMaster(const struct stat& st);
bool IsPtySlave(const struct stat& st);
bool IsDevTty(const struct stat& st);
// Any other terminal: virtual consoles, serial lines, /dev/console.
bool IsOtherTerminal(const struct stat& st);
// The pts number of a slave device number.
uint32_t SlaveIndex(dev_t rdev);
// The pts number of a master (TIOCGPTN).
Result<uint32_t> MasterIndex(int master_fd);
// A new description of the slave of `master_fd` (TIOCGPTPEER), O_NOCTTY.
Result<int> OpenPeer(int master_fd, int flags);
// The device of the devpts instance (st_dev) a master's slave lives on: its
// slave opened O_PATH through TIOCGPTPEER, which opens no tty (so works on a
// locked pty and changes nothing) and fstat'ed.
Result<dev_t> MasterInstance(int master_fd);
// A restore makes ptys through /dev/ptmx, on the devpts instance mounted at
// /dev/pts where cryo runs (ptmx_open looks up the "pts" beside /dev/ptmx,
// devpts(5)). A pty of another instance (`mount -t devpts -o newinstance`
// elsewhere, a container's) would come back on that one under its number,
// silently another terminal: refused, naming `what` and the instance.
Status CheckOnCryoDevpts(dev_t instance, const std::string& what);

Status GetTermios(int fd, image::TtyTermios* out);
Status SetTermios(int fd, const image::TtyTermios& t);
Status GetWinsize(int fd, image::TtyWinsize* out);
Status SetWinsize(int fd, const image::TtyWinsize& w);
// An int-valued ioctl (TIOCGPTLCK, TIOCGPKT, TIOCGEXCL, TIOCGETD, ...).
Result<int> GetInt(int fd, unsigned long request, const char* what);
Status SetInt(int fd, unsigned long request, int value, const char* what);

// The bytes in flight in one pty.
struct PtyQueues {
  std::string master_unread;                // written on the slave side
  std::vector<image::TtyInput> slave_unread;  // written on the master side

  // Drains both queues. `master` is the master (may be the target's own
  // description: it is never made non-blocking), `slave` a description of the
  // slave opened by cryo with O_NONBLOCK, `t` the slave's termios. Packet mode
  // must be off. On failure whatever was drained is put back.
  Status Drain(int master, int slave, const image::TtyTermios& t);
  // Puts the queues into a pty whose slave has termios `t` (set again at the
  // end). Packet mode must be off.
  Status Refill(int master, int slave, const image::TtyTermios& t) const;
  bool empty() const { return master_unread.empty() && slave_unread.empty(); }
};

}  // namespace cryo::tty
