#include "bpf/btf_cache.h"

#include <gtest/gtest.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include "base/file_util.h"
#include "base/unique_fd.h"
#include "bpf/tcp_options.h"

namespace cryo::bpf {
namespace {

class TempDir {
 public:
  TempDir() {
    char t[] = "/tmp/btf_cache_test.XXXXXX";
    path_ = ::mkdtemp(t) ? t : "";
  }
  ~TempDir() {
    if (path_.empty()) return;
    (void)::unlink(file().c_str());
    (void)::rmdir(path_.c_str());
  }
  std::string file() const { return path_ + "/btf.cache"; }

 private:
  std::string path_;
};

const BtfValues kValues = {{"func:bpf_iter_tcp", 1234}, {"offset:bpf_iter__tcp.meta:8", 0}, {"offset:bpf_iter__tcp.sk_common:8", 8}};

TEST(BtfCacheFile, RoundTrips) {
  const std::string text = SerializeBtfCache("boot kernel 1", kValues);
  Result<BtfValues> v = ParseBtfCache(text, "boot kernel 1");
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(*v, kValues);
}

TEST(BtfCacheFile, RefusesAnotherKeyOrAnyDamage) {
  const std::string text = SerializeBtfCache("boot kernel 1", kValues);
  EXPECT_FALSE(ParseBtfCache(text, "boot kernel 2").ok());  // another boot or kernel
  EXPECT_FALSE(ParseBtfCache(text.substr(0, text.size() - 1), "boot kernel 1").ok());
  EXPECT_FALSE(ParseBtfCache(text.substr(0, text.size() / 2), "boot kernel 1").ok());
  EXPECT_FALSE(ParseBtfCache("", "boot kernel 1").ok());
  // One value changed, the checksum left: refused.
  std::string changed = text;
  const size_t at = changed.find("1234");
  ASSERT_NE(at, std::string::npos);
  changed[at] = '5';
  Result<BtfValues> v = ParseBtfCache(changed, "boot kernel 1");
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.status().ToString().find("checksum"), std::string::npos) << v.status().ToString();
  // A malformed line with a checksum that matches it: still refused.
  const std::string good = SerializeBtfCache("boot kernel 1", {{"name", 1}});
  EXPECT_TRUE(ParseBtfCache(good, "boot kernel 1").ok());
  std::string bad = good;
  bad.replace(bad.find("v name 1"), 8, "v name x");
  EXPECT_FALSE(ParseBtfCache(bad, "boot kernel 1").ok());
}

TEST(BtfCacheFile, ReadsOnlyAFileOfOursWritableByUsAlone) {
  TempDir d;
  ASSERT_TRUE(WriteBtfCache(d.file(), "k", kValues).ok());
  struct stat st;
  ASSERT_EQ(::stat(d.file().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  Result<BtfValues> v = ReadBtfCache(d.file(), "k");
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(*v, kValues);
  ASSERT_EQ(::chmod(d.file().c_str(), 0666), 0);
  EXPECT_FALSE(ReadBtfCache(d.file(), "k").ok());
  ASSERT_EQ(::unlink(d.file().c_str()), 0);
  ASSERT_EQ(::symlink("/proc/self/status", d.file().c_str()), 0);
  EXPECT_FALSE(ReadBtfCache(d.file(), "k").ok());
}

// What the TCP iterator looks up, the second time from the cache alone.
TEST(BtfLookups, SecondLookupNeedsNoBtfParse) {
  TempDir d;
  Result<std::string> key = KernelCacheKey();
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  int16_t meta_seq = 0;
  {
    BtfLookups lk(d.file(), *key);
    Result<int16_t> o = lk.Offset("bpf_iter_meta", {"seq"}, 8);
    ASSERT_TRUE(o.ok()) << o.status().ToString();
    meta_seq = *o;
    EXPECT_TRUE(lk.parsed());
    EXPECT_FALSE(lk.used_cache());
    ASSERT_TRUE(lk.Save().ok());
  }
  const uint64_t parses = KernelBtfParses();
  BtfLookups lk(d.file(), *key);
  Result<int16_t> o = lk.Offset("bpf_iter_meta", {"seq"}, 8);
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_EQ(*o, meta_seq);
  EXPECT_TRUE(lk.used_cache());
  EXPECT_FALSE(lk.parsed());
  EXPECT_EQ(KernelBtfParses(), parses);
  // Another kernel's cache is not read.
  BtfLookups other(d.file(), *key + " other");
  ASSERT_TRUE(other.Offset("bpf_iter_meta", {"seq"}, 8).ok());
  EXPECT_FALSE(other.used_cache());
  EXPECT_TRUE(other.parsed());
}

// A loopback connection whose client end has TCP_NODELAY set.
struct Connection {
  UniqueFd client, server;
};
Connection Connect() {
  Connection c;
  UniqueFd l(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  if (!l.valid() || ::bind(l.get(), reinterpret_cast<sockaddr*>(&a), len) != 0 || ::listen(l.get(), 1) != 0 ||
      ::getsockname(l.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0)
    return c;
  c.client.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const int one = 1;
  if (!c.client.valid() || ::setsockopt(c.client.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0 ||
      ::connect(c.client.get(), reinterpret_cast<sockaddr*>(&a), len) != 0)
    return c;
  c.server.reset(::accept4(l.get(), nullptr, nullptr, SOCK_CLOEXEC));
  return c;
}

// TCP_NODELAY of `fd` as the iterator `link` reads it; -1 if not found.
int NodelayThroughIterator(int link, int fd) {
  UniqueFd netns(::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC));
  auto all = ReadTcpOptionsWith(link, netns.get());
  if (!all.ok()) return -1;
  uint64_t cookie = 0;
  socklen_t len = sizeof(cookie);
  if (::getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &len) != 0) return -1;
  auto it = all->find(cookie);
  if (it == all->end()) return -1;
  const std::vector<BulkOption>& opts = TcpBulkOptions();
  for (size_t k = 0; k < opts.size(); ++k) {
    if (opts[k].level != IPPROTO_TCP || opts[k].name != TCP_NODELAY || !it->second.values[k]) continue;
    int v;
    std::memcpy(&v, it->second.values[k]->data(), sizeof(v));
    return v;
  }
  return -1;
}

TEST(TcpIteratorBtfCache, LoadsFromTheCacheTheSecondTime) {
  TempDir d;
  TcpIterLoad first = LoadTcpOptionsIterator(d.file());
  ASSERT_TRUE(first.iterator.status.ok()) << first.iterator.status.ToString();
  EXPECT_FALSE(first.from_cache);
  const uint64_t parses = KernelBtfParses();
  TcpIterLoad second = LoadTcpOptionsIterator(d.file());
  ASSERT_TRUE(second.iterator.status.ok()) << second.iterator.status.ToString();
  EXPECT_TRUE(second.from_cache);
  EXPECT_TRUE(second.cache_refused.empty()) << second.cache_refused;
  EXPECT_EQ(KernelBtfParses(), parses);
  Connection c = Connect();
  ASSERT_TRUE(c.server.valid());
  EXPECT_EQ(NodelayThroughIterator(second.iterator.link.get(), c.client.get()), 1);
  EXPECT_EQ(NodelayThroughIterator(second.iterator.link.get(), c.server.get()), 0);
}

// A cache of this boot whose checksum holds but whose values are wrong (a
// bug of an earlier cryo, a hand edit): the kernel refuses them, the
// iterator is loaded with values from the BTF and reads right, and the cache
// is rewritten with those.
TEST(TcpIteratorBtfCache, WrongCachedValuesAreRefusedAndReplaced) {
  TempDir d;
  TcpIterLoad right = LoadTcpOptionsIterator(d.file());
  ASSERT_TRUE(right.iterator.status.ok()) << right.iterator.status.ToString();
  Result<std::string> key = KernelCacheKey();
  ASSERT_TRUE(key.ok());
  Result<BtfValues> good = ReadBtfCache(d.file(), *key);
  ASSERT_TRUE(good.ok()) << good.status().ToString();
  ASSERT_EQ(good->size(), 4u);
  // Each value wrong in turn: the context's members swapped, meta->seq
  // elsewhere, the UNIX iterator's function instead of the TCP one.
  // The UNIX socket iterator's function: its context has the same layout
  // and it serves bpf_getsockopt too (Linux 5.19), so the verifier takes the
  // program; only the link's target tells.
  const int64_t unix_iter = [&] {
    BtfLookups lk("", "");
    Result<uint32_t> id = lk.Function("bpf_iter_unix", "no bpf_iter_unix");
    return id.ok() ? static_cast<int64_t>(*id) : int64_t{1};
  }();
  const std::vector<std::pair<std::string, int64_t>> wrongs = {
      {"offset:bpf_iter__tcp.sk_common:8", good->at("offset:bpf_iter__tcp.meta:8")},
      {"offset:bpf_iter__tcp.meta:8", good->at("offset:bpf_iter__tcp.sk_common:8")},
      {"offset:bpf_iter_meta.seq:8", good->at("offset:bpf_iter_meta.seq:8") + 8},
      {"func:bpf_iter_tcp", unix_iter},
  };
  Connection c = Connect();
  ASSERT_TRUE(c.server.valid());
  for (const auto& [name, value] : wrongs) {
    SCOPED_TRACE(name + " = " + std::to_string(value));
    BtfValues bad = *good;
    bad[name] = value;
    ASSERT_TRUE(WriteBtfCache(d.file(), *key, bad).ok());
    TcpIterLoad l = LoadTcpOptionsIterator(d.file());
    ASSERT_TRUE(l.iterator.status.ok()) << l.iterator.status.ToString();
    EXPECT_FALSE(l.cache_refused.empty());
    EXPECT_FALSE(l.from_cache);
    EXPECT_EQ(NodelayThroughIterator(l.iterator.link.get(), c.client.get()), 1);
    Result<BtfValues> now = ReadBtfCache(d.file(), *key);
    ASSERT_TRUE(now.ok()) << now.status().ToString();
    EXPECT_EQ(*now, *good);
  }
}

// A damaged cache (a byte changed): ignored before any value reaches the
// kernel, and rewritten.
TEST(TcpIteratorBtfCache, DamagedCacheIsIgnoredAndRewritten) {
  TempDir d;
  ASSERT_TRUE(LoadTcpOptionsIterator(d.file()).iterator.status.ok());
  Result<std::string> text = ReadFileToString(d.file());
  ASSERT_TRUE(text.ok());
  // A digit of the iterator's function id changed (to another digit).
  std::string damaged = *text;
  const size_t at = damaged.find("v func:bpf_iter_tcp ");
  ASSERT_NE(at, std::string::npos);
  damaged[at + std::strlen("v func:bpf_iter_tcp ")] ^= 1;
  ASSERT_TRUE(WriteToFile(d.file(), damaged).ok());
  ASSERT_EQ(::chmod(d.file().c_str(), 0600), 0);
  const uint64_t parses = KernelBtfParses();
  TcpIterLoad l = LoadTcpOptionsIterator(d.file());
  ASSERT_TRUE(l.iterator.status.ok()) << l.iterator.status.ToString();
  EXPECT_FALSE(l.from_cache);
  EXPECT_TRUE(l.cache_refused.empty()) << "the damage reached the kernel: " << l.cache_refused;
  EXPECT_EQ(KernelBtfParses(), parses + 1);
  Result<std::string> after = ReadFileToString(d.file());
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(*after, *text);
}

// The iterator writes records only for full TCP sockets: in a network
// namespace of the test's own holding a listener, one connection and one
// connection closed into TIME_WAIT, it reads exactly the listener and the
// connection's two ends.
TEST(TcpIterator, SkipsTimeWaitSockets) {
  TcpIterLoad l = LoadTcpOptionsIterator("");
  ASSERT_TRUE(l.iterator.status.ok()) << l.iterator.status.ToString();
  UniqueFd netns, listener;
  Connection open, closed;
  std::string why;
  std::thread t([&] {
    if (::unshare(CLONE_NEWNET) != 0) {
      why = std::string("unshare(CLONE_NEWNET): ") + std::strerror(errno);
      return;
    }
    netns.reset(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
    UniqueFd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
    ifr.ifr_flags = IFF_UP;
    if (!s.valid() || ::ioctl(s.get(), SIOCSIFFLAGS, &ifr) != 0) {
      why = std::string("bringing lo up: ") + std::strerror(errno);
      return;
    }
    open = Connect();
    closed = Connect();
    // The client closes first: its end goes to TIME_WAIT once the server's
    // FIN is acknowledged.
    closed.client.reset();
    closed.server.reset();
  });
  t.join();
  ASSERT_TRUE(why.empty()) << why;
  ASSERT_TRUE(netns.valid() && open.server.valid());
  Result<std::unordered_map<uint64_t, TcpOptionValues>> all = Status::Error("not read");
  for (int i = 0; i < 100; ++i) {  // loopback: at once; bounded all the same
    all = ReadTcpOptionsWith(l.iterator.link.get(), netns.get());
    ASSERT_TRUE(all.ok()) << all.status().ToString();
    if (all->size() <= 2) break;  // the server's end of `closed` may linger in LAST_ACK a moment
    ::usleep(10000);
  }
  EXPECT_EQ(all->size(), 2u) << "a record for a socket in TIME_WAIT";
}

}  // namespace
}  // namespace cryo::bpf
