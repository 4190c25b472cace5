// Real pseudoterminals: settings and queued bytes survive a drain and refill,
// in the same pty (a dump that leaves the tree running) and in a new one (a
// restore). Needs CAP_SYS_ADMIN for TIOCSTI, like cryo.
#include "files/tty_device.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "base/unique_fd.h"

namespace cryo::tty {
namespace {

struct Pty {
  UniqueFd master, slave, peer;  // slave: the program's end; peer: cryo's O_NONBLOCK one
};

Pty OpenPty() {
  Pty p;
  p.master.reset(::open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC));
  EXPECT_TRUE(p.master.valid()) << strerror(errno);
  int unlock = 0;
  EXPECT_EQ(::ioctl(p.master.get(), TIOCSPTLCK, &unlock), 0);
  auto s = OpenPeer(p.master.get(), O_RDWR);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  p.slave.reset(*s);
  auto peer = OpenPeer(p.master.get(), O_RDWR | O_NONBLOCK);
  EXPECT_TRUE(peer.ok()) << peer.status().ToString();
  p.peer.reset(*peer);
  return p;
}

void Write(int fd, const std::string& s) { ASSERT_EQ(::write(fd, s.data(), s.size()), static_cast<ssize_t>(s.size())); }

// Reads from a blocking fd until `n` bytes came or 2 s passed.
std::string ReadN(int fd, size_t n) {
  std::string out;
  char buf[8192];
  while (out.size() < n) {
    struct pollfd p = {fd, POLLIN, 0};
    if (::poll(&p, 1, 2000) <= 0) break;
    const ssize_t r = ::read(fd, buf, std::min(sizeof(buf), n - out.size()));
    if (r <= 0) break;
    out.append(buf, static_cast<size_t>(r));
  }
  return out;
}

// Waits until the slave's line discipline saw `n` bytes typed on the master
// (the flip buffer is pushed asynchronously; poll(2) pushes it).
void Settle(const Pty& p) {
  struct pollfd f = {p.peer.get(), POLLIN, 0};
  ::poll(&f, 1, 50);
  ::usleep(20000);
}

image::TtyTermios Termios(int fd) {
  image::TtyTermios t;
  EXPECT_TRUE(GetTermios(fd, &t).ok());
  return t;
}

std::string Describe(const PtyQueues& q) {
  std::string s = "master_unread=" + testing::PrintToString(q.master_unread) + " slave_unread=[";
  for (const auto& in : q.slave_unread)
    s += testing::PrintToString(in.data()) + (in.eof() ? "(eof)" : "") + (in.partial() ? "(partial)" : "") + " ";
  return s + "]";
}

TEST(TtyDevice, TermiosAndWinsizeRoundTrip) {
  Pty p = OpenPty();
  struct termios t;
  ASSERT_EQ(tcgetattr(p.slave.get(), &t), 0);
  t.c_lflag &= ~ECHOCTL;
  t.c_cc[VINTR] = 0x18;
  cfsetispeed(&t, B9600);
  cfsetospeed(&t, B9600);  // a pty keeps one speed for both directions
  ASSERT_EQ(tcsetattr(p.slave.get(), TCSANOW, &t), 0);
  image::TtyTermios saved = Termios(p.master.get());  // termios ioctls on a master act on its slave
  EXPECT_EQ(saved.cc().size(), 19u);
  EXPECT_EQ(saved.ispeed(), 9600u);
  EXPECT_EQ(saved.ospeed(), 9600u);
  image::TtyWinsize w;
  w.set_rows(37);
  w.set_cols(123);
  w.set_xpixel(800);
  w.set_ypixel(600);
  ASSERT_TRUE(SetWinsize(p.master.get(), w).ok());

  Pty q = OpenPty();
  ASSERT_TRUE(SetTermios(q.master.get(), saved).ok());
  ASSERT_TRUE(SetWinsize(q.master.get(), w).ok());
  EXPECT_EQ(Termios(q.slave.get()).SerializeAsString(), saved.SerializeAsString());
  image::TtyWinsize got;
  ASSERT_TRUE(GetWinsize(q.slave.get(), &got).ok());
  EXPECT_EQ(got.SerializeAsString(), w.SerializeAsString());
  struct termios back;
  ASSERT_EQ(tcgetattr(q.slave.get(), &back), 0);
  EXPECT_EQ(cfgetispeed(&back), static_cast<speed_t>(B9600));
  EXPECT_EQ(back.c_cc[VINTR], 0x18);
}

TEST(TtyDevice, Indexes) {
  Pty p = OpenPty();
  auto idx = MasterIndex(p.master.get());
  ASSERT_TRUE(idx.ok());
  struct stat st;
  ASSERT_EQ(fstat(p.slave.get(), &st), 0);
  EXPECT_TRUE(IsPtySlave(st));
  EXPECT_EQ(SlaveIndex(st.st_rdev), *idx);
  ASSERT_EQ(fstat(p.master.get(), &st), 0);
  EXPECT_TRUE(IsPtyMaster(st));
}

// Canonical mode with echo: complete lines, a line ended by EOF, escaped
// special characters, an unfinished line; the echo waits on the master.
TEST(TtyDevice, CanonicalQueuesSurviveDrainAndRefill) {
  Pty p = OpenPty();
  Write(p.slave.get(), "out\n");  // ONLCR: the master gets "out\r\n"
  Write(p.master.get(), std::string("line1\nab\x04") + "l3\x16\x04x\n" + "zero\x16" + std::string(1, '\0') + "\n" + "parti");
  Settle(p);
  const image::TtyTermios t = Termios(p.peer.get());
  PtyQueues q;
  ASSERT_TRUE(q.Drain(p.master.get(), p.peer.get(), t).ok());
  ASSERT_EQ(q.slave_unread.size(), 5u) << Describe(q);
  EXPECT_EQ(q.slave_unread[0].data(), "line1\n");
  EXPECT_EQ(q.slave_unread[1].data(), "ab");
  EXPECT_TRUE(q.slave_unread[1].eof());
  EXPECT_EQ(q.slave_unread[2].data(), "l3\x04x\n");
  EXPECT_EQ(q.slave_unread[3].data(), std::string("zero") + '\0' + "\n");
  EXPECT_EQ(q.slave_unread[4].data(), "parti");
  EXPECT_TRUE(q.slave_unread[4].partial());
  // Echo: ^D and ^V are echoed as ^D... by ECHOCTL; whatever it is, it is kept.
  EXPECT_EQ(q.master_unread.substr(0, 5), "out\r\n") << Describe(q);
  const std::string echo = q.master_unread;

  ASSERT_TRUE(q.Refill(p.master.get(), p.peer.get(), t).ok());
  EXPECT_EQ(Termios(p.peer.get()).SerializeAsString(), t.SerializeAsString());
  PtyQueues again;
  ASSERT_TRUE(again.Drain(p.master.get(), p.peer.get(), t).ok());
  ASSERT_EQ(Describe(again), Describe(q));
  ASSERT_TRUE(again.Refill(p.master.get(), p.peer.get(), t).ok());

  // The program reads the same lines, and the unfinished one is still being
  // edited: two erases and "XY\n" finish it as "parXY\n". No second echo.
  char buf[256];
  EXPECT_EQ(std::string(buf, ::read(p.slave.get(), buf, sizeof(buf))), "line1\n");
  EXPECT_EQ(std::string(buf, ::read(p.slave.get(), buf, sizeof(buf))), "ab");
  EXPECT_EQ(std::string(buf, ::read(p.slave.get(), buf, sizeof(buf))), "l3\x04x\n");
  EXPECT_EQ(std::string(buf, ::read(p.slave.get(), buf, sizeof(buf))), std::string("zero") + '\0' + "\n");
  EXPECT_EQ(ReadN(p.master.get(), echo.size()), echo);
  struct termios tt;
  ASSERT_EQ(tcgetattr(p.slave.get(), &tt), 0);
  Write(p.master.get(), std::string(2, static_cast<char>(tt.c_cc[VERASE])) + "XY\n");
  EXPECT_EQ(std::string(buf, ::read(p.slave.get(), buf, sizeof(buf))), "parXY\n");
}

TEST(TtyDevice, QueuesMoveToANewPty) {
  Pty p = OpenPty();
  struct termios tt;
  ASSERT_EQ(tcgetattr(p.slave.get(), &tt), 0);
  tt.c_lflag &= ~ECHO;
  tt.c_cc[VEOL] = '@';
  ASSERT_EQ(tcsetattr(p.slave.get(), TCSANOW, &tt), 0);
  Write(p.master.get(), "one@two\nthr");
  Write(p.slave.get(), "reply\n");
  Settle(p);
  const image::TtyTermios t = Termios(p.peer.get());
  PtyQueues q;
  ASSERT_TRUE(q.Drain(p.master.get(), p.peer.get(), t).ok());
  ASSERT_EQ(q.slave_unread.size(), 3u) << Describe(q);

  Pty n = OpenPty();
  ASSERT_TRUE(SetTermios(n.peer.get(), t).ok());
  ASSERT_TRUE(q.Refill(n.master.get(), n.peer.get(), t).ok());
  char buf[64];
  EXPECT_EQ(std::string(buf, ::read(n.slave.get(), buf, sizeof(buf))), "one@");
  EXPECT_EQ(std::string(buf, ::read(n.slave.get(), buf, sizeof(buf))), "two\n");
  EXPECT_EQ(ReadN(n.master.get(), 7), "reply\r\n");
  Write(n.master.get(), "ee\n");
  EXPECT_EQ(std::string(buf, ::read(n.slave.get(), buf, sizeof(buf))), "three\n");
}

// Raw mode (as readline, editors): every byte, control characters included.
TEST(TtyDevice, RawQueuesSurviveDrainAndRefill) {
  Pty p = OpenPty();
  struct termios tt;
  ASSERT_EQ(tcgetattr(p.slave.get(), &tt), 0);
  cfmakeraw(&tt);
  tt.c_iflag |= IXON;  // flow control stays on, as readline leaves it
  ASSERT_EQ(tcsetattr(p.slave.get(), TCSANOW, &tt), 0);
  const std::string typed = std::string("a\x03\x04\x1a\r\x7f") + '\0' + "\xff\x1b[A";
  Write(p.master.get(), typed);
  Settle(p);
  const image::TtyTermios t = Termios(p.peer.get());
  PtyQueues q;
  ASSERT_TRUE(q.Drain(p.master.get(), p.peer.get(), t).ok());
  ASSERT_EQ(q.slave_unread.size(), 1u);
  EXPECT_EQ(q.slave_unread[0].data(), typed);
  Pty n = OpenPty();
  ASSERT_TRUE(SetTermios(n.peer.get(), t).ok());
  ASSERT_TRUE(q.Refill(n.master.get(), n.peer.get(), t).ok());
  EXPECT_EQ(ReadN(n.slave.get(), typed.size()), typed);
  EXPECT_EQ(Termios(n.peer.get()).SerializeAsString(), t.SerializeAsString());
}

// More output than the master's line discipline holds waits in the flip buffer.
TEST(TtyDevice, LargeMasterQueue) {
  Pty p = OpenPty();
  std::string big;
  for (int i = 0; i < 9000; ++i) big += static_cast<char>('a' + i % 26);
  Write(p.slave.get(), big);
  ::usleep(20000);
  const image::TtyTermios t = Termios(p.peer.get());
  PtyQueues q;
  ASSERT_TRUE(q.Drain(p.master.get(), p.peer.get(), t).ok());
  ASSERT_EQ(q.master_unread, big);
  Pty n = OpenPty();
  ASSERT_TRUE(SetTermios(n.peer.get(), t).ok());
  ASSERT_TRUE(q.Refill(n.master.get(), n.peer.get(), t).ok());
  EXPECT_EQ(ReadN(n.master.get(), big.size()), big);
}

}  // namespace
}  // namespace cryo::tty
