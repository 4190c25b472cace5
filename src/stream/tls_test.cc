#include "stream/tls.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <thread>

#include "stream/connection.h"

namespace cryo::stream {
namespace {

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/cryo-tls-test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { (void)system(("rm -rf " + dir_).c_str()); }
  std::string Write(const std::string& name, const std::string& text, mode_t mode = 0600) {
    const std::string p = dir_ + "/" + name;
    std::ofstream(p) << text;
    chmod(p.c_str(), mode);
    return p;
  }
  std::string dir_;
};

const char kKey1[] = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n";
const char kKey2[] = "ff112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n";

TEST_F(TlsTest, PskFileChecked) {
  auto ok = ReadPskFile(Write("k", kKey1));
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->size(), 32u);
  EXPECT_EQ(static_cast<unsigned char>((*ok)[1]), 0x11);
  auto loose = ReadPskFile(Write("loose", kKey1, 0644));
  ASSERT_FALSE(loose.ok());
  EXPECT_NE(loose.status().ToString().find("read by others"), std::string::npos);
  auto shortk = ReadPskFile(Write("short", "abcd"));
  ASSERT_FALSE(shortk.ok());
  EXPECT_NE(shortk.status().ToString().find("32 to 64 bytes"), std::string::npos);
  EXPECT_FALSE(ReadPskFile(Write("odd", std::string(65, 'a'))).ok());
  EXPECT_FALSE(ReadPskFile(Write("nothex", std::string(64, 'g'))).ok());
  EXPECT_FALSE(ReadPskFile(dir_ + "/missing").ok());
}

TEST(TlsOptionsTest, Combinations) {
  EXPECT_EQ(TlsOptions{}.UsageProblem(), "");
  EXPECT_FALSE(TlsOptions{}.enabled());
  EXPECT_NE(TlsOptions({"c", "", "", ""}).UsageProblem(), "");
  EXPECT_EQ(TlsOptions({"c", "k", "a", ""}).UsageProblem(), "");
  EXPECT_NE(TlsOptions({"c", "k", "a", "p"}).UsageProblem().find("not both"), std::string::npos);
  EXPECT_EQ(TlsOptions({"", "", "", "p"}).UsageProblem(), "");
}

// Two Connections over a socketpair, the server's handshake on a thread; a
// frame from the client to the server once both handshakes succeed.
struct Pair {
  Status client, server;
  std::string got;
};

Pair Handshake(const std::string& client_psk, const std::string& server_psk) {
  int sv[2];
  EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
  Pair out;
  auto cctx = TlsContext::Create({"", "", "", client_psk}, false);
  auto sctx = TlsContext::Create({"", "", "", server_psk}, true);
  EXPECT_TRUE(cctx.ok() && sctx.ok());
  Connection client(UniqueFd(sv[0]), "server", 5, true);
  Connection server(UniqueFd(sv[1]), "client", 5, false);
  std::thread t([&] {
    out.server = server.StartTls(*sctx);
    if (!out.server.ok()) {
      server.CloseGracefully(1);
      return;
    }
    Result<Frame> f = server.Receive(5);
    if (f.ok()) out.got = f->payload;
    else out.server = f.status();
    server.CloseGracefully(1);
  });
  out.client = client.StartTls(*cctx);
  if (out.client.ok()) out.client = client.Send(FrameType::kEnd, 0, "hi");
  if (out.client.ok()) {
    // In TLS 1.3 the client finishes first: the server's refusal comes after.
    Result<Frame> f = client.Receive(5);
    if (!f.ok() && f.status().ToString().find("closed by") == std::string::npos) out.client = f.status();
  }
  client.CloseGracefully(1);
  t.join();
  return out;
}

TEST_F(TlsTest, PskHandshakeAndFrame) {
  const std::string k = Write("k", kKey1);
  Pair p = Handshake(k, k);
  EXPECT_TRUE(p.client.ok()) << p.client.ToString();
  EXPECT_TRUE(p.server.ok()) << p.server.ToString();
  EXPECT_EQ(p.got, "hi");
}

TEST_F(TlsTest, WrongPskRefusedOnBothSides) {
  Pair p = Handshake(Write("k1", kKey1), Write("k2", kKey2));
  ASSERT_FALSE(p.server.ok());
  EXPECT_NE(p.server.ToString().find("wrong pre-shared key"), std::string::npos) << p.server.ToString();
  ASSERT_FALSE(p.client.ok());
  EXPECT_NE(p.client.ToString().find("wrong pre-shared key"), std::string::npos) << p.client.ToString();
  EXPECT_EQ(p.got, "");
}

}  // namespace
}  // namespace cryo::stream
