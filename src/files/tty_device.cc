#include "files/tty_device.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

namespace cryo::tty {

namespace {

// The kernel's struct termios2 (asm-generic/termbits.h); glibc's struct
// termios has another layout, and <asm/termbits.h> clashes with <termios.h>.
struct KTermios2 {
  uint32_t c_iflag, c_oflag, c_cflag, c_lflag;
  uint8_t c_line;
  uint8_t c_cc[19];
  uint32_t c_ispeed, c_ospeed;
};
static_assert(sizeof(KTermios2) == 44);
const unsigned long kTcgets2 = _IOR('T', 0x2A, KTermios2);
const unsigned long kTcsets2 = _IOW('T', 0x2B, KTermios2);

// N_TTY_BUF_SIZE is 4096; a read buffer bigger than a line.
constexpr size_t kReadChunk = 8192;
// Bytes TIOCSTI may put into an empty master queue (N_TTY_BUF_SIZE - 1,
// with margin); more goes through the slave's output and the flip buffer.
constexpr size_t kMasterStiRoom = 4000;
// Upper bounds on what a pty can hold: its line discipline (4 KiB) and its
// flip buffers (64 KiB), with margin.
constexpr size_t kMaxQueued = 1 << 20;
constexpr int kMaxRecords = 1 << 16;

KTermios2 ToKernel(const image::TtyTermios& t) {
  KTermios2 k{};
  k.c_iflag = t.iflag();
  k.c_oflag = t.oflag();
  k.c_cflag = t.cflag();
  k.c_lflag = t.lflag();
  k.c_line = static_cast<uint8_t>(t.line());
  std::memcpy(k.c_cc, t.cc().data(), std::min(t.cc().size(), sizeof(k.c_cc)));
  k.c_ispeed = t.ispeed();
  k.c_ospeed = t.ospeed();
  return k;
}

Status SetKernelTermios(int fd, const KTermios2& k) {
  if (::ioctl(fd, kTcsets2, &k) != 0) return Status::FromErrno("TCSETS2");
  return Status::Ok();
}

bool IsCanonical(const KTermios2& t) { return (t.c_lflag & ICANON) && !(t.c_lflag & EXTPROC); }

// Whether `c` ends a canonical line under `t` (n_tty: '\n', VEOL, VEOL2 with
// IEXTEN; VEOF ends one too but is not stored).
bool IsLineEnd(const KTermios2& t, uint8_t c) {
  if (c == '\n') return true;
  if (t.c_cc[VEOL] && c == t.c_cc[VEOL]) return true;
  return (t.c_lflag & IEXTEN) && t.c_cc[VEOL2] && c == t.c_cc[VEOL2];
}

// Settings under which TIOCSTI stores each byte as given: no echo, no
// signals, no input mapping, no erase/kill. Canonical mode stays canonical
// (switching ICANON resets the line discipline's line marks, n_tty_set_termios),
// with a VLNEXT character to escape the special ones; IXON stays as it is
// (clearing it restarts a stopped terminal), its START/STOP are escaped.
KTermios2 InjectionTermios(const KTermios2& t, bool clear_ixon) {
  KTermios2 k = t;
  k.c_iflag &= ~static_cast<uint32_t>(ISTRIP | IUCLC | IGNCR | ICRNL | INLCR | PARMRK | IXANY | IMAXBEL);
  if (clear_ixon) k.c_iflag &= ~static_cast<uint32_t>(IXON);
  if (t.c_lflag & EXTPROC) return k;  // n_tty stores input raw in EXTPROC mode
  k.c_lflag &= ~static_cast<uint32_t>(ECHO | ECHOE | ECHOK | ECHONL | ECHOCTL | ECHOPRT | ECHOKE | ISIG);
  if (!IsCanonical(t)) return k;
  k.c_lflag |= IEXTEN;
  k.c_cc[VERASE] = k.c_cc[VKILL] = k.c_cc[VWERASE] = k.c_cc[VREPRINT] = 0;
  if (!(t.c_lflag & IEXTEN)) k.c_cc[VEOL2] = 0;
  if (!k.c_cc[VEOF]) k.c_cc[VEOF] = 4;  // ^D
  uint8_t lnext = 0x16;                 // ^V
  while (lnext == k.c_cc[VEOF] || lnext == k.c_cc[VEOL] || lnext == k.c_cc[VEOL2] ||
         ((k.c_iflag & IXON) && (lnext == k.c_cc[VSTART] || lnext == k.c_cc[VSTOP])) || lnext == '\n')
    ++lnext;
  k.c_cc[VLNEXT] = lnext;
  return k;
}

// The bytes to feed through TIOCSTI under `k` (InjectionTermios) so that the
// slave reads `in` again.
std::string EncodeInput(const image::TtyInput& in, const KTermios2& k) {
  const std::string& d = in.data();
  if (!IsCanonical(k)) return d;
  size_t content = d.size();
  std::string end;
  if (in.eof()) {
    end = std::string(1, static_cast<char>(k.c_cc[VEOF]));
  } else if (!in.partial() && !d.empty()) {
    content = d.size() - 1;
    end = d.substr(content);
  }
  auto special = [&k](uint8_t c) {
    if (c == 0) return false;  // __DISABLED_CHAR is never special (n_tty char_map)
    return IsLineEnd(k, c) || c == k.c_cc[VEOF] || c == k.c_cc[VLNEXT] ||
           ((k.c_iflag & IXON) && (c == k.c_cc[VSTART] || c == k.c_cc[VSTOP]));
  };
  std::string out;
  for (size_t i = 0; i < content; ++i) {
    const auto c = static_cast<uint8_t>(d[i]);
    if (special(c)) out += static_cast<char>(k.c_cc[VLNEXT]);
    out += static_cast<char>(c);
  }
  return out + end;
}

Status Sti(int fd, const std::string& bytes, const char* what) {
  for (char c : bytes)
    if (::ioctl(fd, TIOCSTI, &c) != 0) return Status::FromErrno(std::string("TIOCSTI into the ") + what);
  return Status::Ok();
}

// Reads what `fd` has now, until read(2) says there is nothing (EAGAIN or 0).
Status ReadAvailable(int fd, std::string* out) {
  char buf[kReadChunk];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return Status::Ok();
    if (n < 0) return Status::FromErrno("reading the slave's input");
    if (n == 0) return Status::Ok();
    out->append(buf, static_cast<size_t>(n));
    if (out->size() > kMaxQueued) return Status::Error("more than 1 MiB of terminal input queued");
  }
}

// The master's input: poll(2) first (n_tty_poll pushes the flip buffer into
// the line discipline when it looks empty), then read what FIONREAD promises,
// so that a blocking description never blocks.
Status DrainMaster(int master, std::string* out) {
  char buf[kReadChunk];
  for (;;) {
    struct pollfd p = {master, POLLIN, 0};
    const int r = ::poll(&p, 1, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return Status::FromErrno("poll on the master");
    if (r == 0 || !(p.revents & POLLIN)) return Status::Ok();
    int avail = 0;
    if (::ioctl(master, FIONREAD, &avail) != 0) return Status::FromErrno("FIONREAD on the master");
    if (avail <= 0) return Status::Ok();
    const ssize_t n = ::read(master, buf, std::min(sizeof(buf), static_cast<size_t>(avail)));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EIO) return Status::Ok();  // the slave side is closed and drained
    if (n <= 0) return Status::FromErrno("reading the master's input");
    out->append(buf, static_cast<size_t>(n));
    if (out->size() > kMaxQueued) return Status::Error("more than 1 MiB of terminal output queued");
  }
}

Status DrainSlave(int slave, const KTermios2& t, std::vector<image::TtyInput>* out) {
  std::string rest;
  if (IsCanonical(t)) {
    // One read(2) returns one line (n_tty canon_copy_from_read_buf).
    char buf[kReadChunk];
    for (int i = 0;; ++i) {
      if (i == kMaxRecords) return Status::Error("too many lines of terminal input queued");
      const ssize_t n = ::read(slave, buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) break;
      if (n < 0) return Status::FromErrno("reading the slave's input");
      image::TtyInput in;
      in.set_data(buf, static_cast<size_t>(n));
      if (n == 0 || !IsLineEnd(t, static_cast<uint8_t>(buf[n - 1]))) in.set_eof(true);
      out->push_back(std::move(in));
    }
    // The unfinished line is only readable outside canonical mode.
    KTermios2 raw = t;
    raw.c_lflag &= ~static_cast<uint32_t>(ICANON);
    raw.c_cc[VMIN] = 0;
    raw.c_cc[VTIME] = 0;
    CRYO_RETURN_IF_ERROR(SetKernelTermios(slave, raw).Prefixed("switching the slave out of canonical mode"));
    Status st = ReadAvailable(slave, &rest);
    Status back = SetKernelTermios(slave, t);
    CRYO_RETURN_IF_ERROR(st);
    CRYO_RETURN_IF_ERROR(back.Prefixed("restoring the slave's termios"));
  } else {
    CRYO_RETURN_IF_ERROR(ReadAvailable(slave, &rest));
  }
  if (!rest.empty()) {
    image::TtyInput in;
    in.set_data(rest);
    in.set_partial(true);
    out->push_back(std::move(in));
  }
  return Status::Ok();
}

}  // namespace

bool IsPtyMaster(const struct stat& st) { return S_ISCHR(st.st_mode) && st.st_rdev == makedev(5, 2); }
// Every pts is on UNIX98_PTY_SLAVE_MAJOR, minor = index (20-bit minors).
bool IsPtySlave(const struct stat& st) { return S_ISCHR(st.st_mode) && major(st.st_rdev) == 136; }
bool IsDevTty(const struct stat& st) { return S_ISCHR(st.st_mode) && st.st_rdev == makedev(5, 0); }
bool IsOtherTerminal(const struct stat& st) {
  if (!S_ISCHR(st.st_mode)) return false;
  const unsigned maj = major(st.st_rdev);
  // 4: virtual consoles and ttyS, 5:1 /dev/console, 188 USB serial, 204 and 229 other serial lines.
  return maj == 4 || st.st_rdev == makedev(5, 1) || maj == 188 || maj == 204 || maj == 229;
}

uint32_t SlaveIndex(dev_t rdev) { return minor(rdev); }

Result<uint32_t> MasterIndex(int master_fd) {
  unsigned int n = 0;
  if (::ioctl(master_fd, TIOCGPTN, &n) != 0) return Status::FromErrno("TIOCGPTN");
  return static_cast<uint32_t>(n);
}

Result<int> OpenPeer(int master_fd, int flags) {
  const int fd = ::ioctl(master_fd, TIOCGPTPEER, flags | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno("TIOCGPTPEER (opening the slave)");
  return fd;
}

Result<dev_t> MasterInstance(int master_fd) {
  const int fd = ::ioctl(master_fd, TIOCGPTPEER, O_PATH | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno("TIOCGPTPEER O_PATH (finding the slave's devpts)");
  struct stat st;
  const int rc = ::fstat(fd, &st);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return Status::Errno(err, "fstat of the slave (O_PATH)");
  return st.st_dev;
}

Status CheckOnCryoDevpts(dev_t instance, const std::string& what) {
  struct stat pts;
  if (::stat("/dev/pts", &pts) != 0) return Status::FromErrno("stat /dev/pts");
  if (pts.st_dev == instance) return Status::Ok();
  auto dev = [](dev_t d) { return std::to_string(major(d)) + ":" + std::to_string(minor(d)); };
  return Status::Error(what + " is a pseudoterminal of the devpts instance " + dev(instance) +
                       ", not of the one at /dev/pts where cryo runs (" + dev(pts.st_dev) +
                       "): ptys of other devpts instances (mount -t devpts -o newinstance, a container's /dev/pts) "
                       "are not restored");
}

Status GetTermios(int fd, image::TtyTermios* out) {
  KTermios2 k;
  if (::ioctl(fd, kTcgets2, &k) != 0) return Status::FromErrno("TCGETS2");
  out->set_iflag(k.c_iflag);
  out->set_oflag(k.c_oflag);
  out->set_cflag(k.c_cflag);
  out->set_lflag(k.c_lflag);
  out->set_line(k.c_line);
  out->set_cc(reinterpret_cast<const char*>(k.c_cc), sizeof(k.c_cc));
  out->set_ispeed(k.c_ispeed);
  out->set_ospeed(k.c_ospeed);
  return Status::Ok();
}

Status SetTermios(int fd, const image::TtyTermios& t) { return SetKernelTermios(fd, ToKernel(t)); }

Status GetWinsize(int fd, image::TtyWinsize* out) {
  struct winsize w;
  if (::ioctl(fd, TIOCGWINSZ, &w) != 0) return Status::FromErrno("TIOCGWINSZ");
  out->set_rows(w.ws_row);
  out->set_cols(w.ws_col);
  out->set_xpixel(w.ws_xpixel);
  out->set_ypixel(w.ws_ypixel);
  return Status::Ok();
}

Status SetWinsize(int fd, const image::TtyWinsize& w) {
  struct winsize k = {static_cast<unsigned short>(w.rows()), static_cast<unsigned short>(w.cols()),
                      static_cast<unsigned short>(w.xpixel()), static_cast<unsigned short>(w.ypixel())};
  if (::ioctl(fd, TIOCSWINSZ, &k) != 0) return Status::FromErrno("TIOCSWINSZ");
  return Status::Ok();
}

Result<int> GetInt(int fd, unsigned long request, const char* what) {
  int v = 0;
  if (::ioctl(fd, request, &v) != 0) return Status::FromErrno(what);
  return v;
}

Status SetInt(int fd, unsigned long request, int value, const char* what) {
  if (::ioctl(fd, request, &value) != 0) return Status::FromErrno(what);
  return Status::Ok();
}

Status PtyQueues::Drain(int master, int slave, const image::TtyTermios& t) {
  master_unread.clear();
  slave_unread.clear();
  Status st = DrainMaster(master, &master_unread).Prefixed("draining the master");
  if (st.ok()) st = DrainSlave(slave, ToKernel(t), &slave_unread).Prefixed("draining the slave");
  if (!st.ok() && !empty()) {
    Status back = Refill(master, slave, t);
    if (!back.ok()) st.Prefix("(and putting the drained bytes back failed: " + back.ToString() + ") ");
  }
  return st;
}

Status PtyQueues::Refill(int master, int slave, const image::TtyTermios& termios) const {
  const KTermios2 t = ToKernel(termios);
  if (!master_unread.empty()) {
    // The master's line discipline is raw (pty master init_termios): bytes
    // given to TIOCSTI are stored as they are.
    const size_t direct = std::min(master_unread.size(), kMasterStiRoom);
    CRYO_RETURN_IF_ERROR(Sti(master, master_unread.substr(0, direct), "master"));
    if (direct < master_unread.size()) {
      // The rest waits in the master's flip buffer, as it did: written on the
      // slave side without output processing.
      KTermios2 out = t;
      out.c_oflag &= ~static_cast<uint32_t>(OPOST);
      CRYO_RETURN_IF_ERROR(SetKernelTermios(slave, out).Prefixed("turning OPOST off"));
      Status st;
      const char* p = master_unread.data() + direct;
      size_t left = master_unread.size() - direct;
      for (int waits = 0; left && st.ok();) {
        const ssize_t n = ::write(slave, p, left);
        if (n > 0) {
          p += n;
          left -= static_cast<size_t>(n);
          continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if ((n == 0 || errno == EAGAIN) && waits++ < 100) {
          struct pollfd pf = {slave, POLLOUT, 0};
          ::poll(&pf, 1, 10);
          continue;
        }
        st = n < 0 ? Status::FromErrno("writing the master's input through the slave")
                   : Status::Error("the slave does not take output (stopped?)");
      }
      Status back = SetKernelTermios(slave, t);
      CRYO_RETURN_IF_ERROR(st);
      CRYO_RETURN_IF_ERROR(back.Prefixed("restoring the slave's termios"));
    }
  }
  if (slave_unread.empty()) return Status::Ok();
  bool start_stop = false;
  if (!IsCanonical(t) && (t.c_iflag & IXON))
    for (const image::TtyInput& in : slave_unread)
      for (char c : in.data())
        if (static_cast<uint8_t>(c) == t.c_cc[VSTART] || static_cast<uint8_t>(c) == t.c_cc[VSTOP]) start_stop = true;
  const KTermios2 inj = InjectionTermios(t, start_stop);
  CRYO_RETURN_IF_ERROR(SetKernelTermios(slave, inj).Prefixed("setting the slave up for TIOCSTI"));
  Status st;
  for (const image::TtyInput& in : slave_unread) {
    st = Sti(slave, EncodeInput(in, inj), "slave");
    if (!st.ok()) break;
  }
  Status back = SetKernelTermios(slave, t);
  CRYO_RETURN_IF_ERROR(st);
  return back.Prefixed("restoring the slave's termios");
}

}  // namespace cryo::tty
