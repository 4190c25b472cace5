#include "mem/aio_context.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/mman.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

namespace cryo {
namespace {

long Sys(long nr, uint64_t a1 = 0, uint64_t a2 = 0, uint64_t a3 = 0, uint64_t a4 = 0, uint64_t a5 = 0) {
  return ::syscall(nr, a1, a2, a3, a4, a5);
}

// A context, a file of known bytes and reads of one byte each.
class AioContextTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(target_.ok());
    file_ = ::memfd_create("aio_context_test", MFD_CLOEXEC);
    ASSERT_GE(file_, 0);
    char bytes[256];
    for (int i = 0; i < 256; ++i) bytes[i] = static_cast<char>(i);
    ASSERT_EQ(::write(file_, bytes, sizeof(bytes)), 256);
  }
  void TearDown() override {
    for (aio_context_t c : ctxs_) Sys(SYS_io_destroy, c);
    if (file_ >= 0) ::close(file_);
  }
  aio_context_t MakeContext(unsigned n) {
    aio_context_t c = 0;
    EXPECT_EQ(Sys(SYS_io_setup, n, reinterpret_cast<uint64_t>(&c)), 0) << strerror(errno);
    ctxs_.push_back(c);
    return c;
  }
  // One read of the byte at `off`, which completes inside io_submit.
  void Read(aio_context_t c, uint64_t data, uint64_t off) {
    iocb cb{};
    cb.aio_data = data;
    cb.aio_lio_opcode = IOCB_CMD_PREAD;
    cb.aio_fildes = static_cast<uint32_t>(file_);
    cb.aio_buf = reinterpret_cast<uint64_t>(&buf_[off % sizeof(buf_)]);
    cb.aio_nbytes = 1;
    cb.aio_offset = static_cast<int64_t>(off);
    iocb* list[1] = {&cb};
    ASSERT_EQ(Sys(SYS_io_submit, c, 1, reinterpret_cast<uint64_t>(list)), 1) << strerror(errno);
  }
  std::vector<io_event> Reap(aio_context_t c, long min, long max) {
    std::vector<io_event> ev(static_cast<size_t>(max));
    timespec zero{};
    const long n = Sys(SYS_io_getevents, c, min, max, reinterpret_cast<uint64_t>(ev.data()),
                       reinterpret_cast<uint64_t>(&zero));
    EXPECT_GE(n, 0) << strerror(errno);
    ev.resize(n < 0 ? 0 : static_cast<size_t>(n));
    return ev;
  }

  LocalAioTarget target_;
  int file_ = -1;
  char buf_[256] = {};
  std::vector<aio_context_t> ctxs_;
};

void ExpectSameRing(const AioRingState& a, const AioRingState& b) {
  EXPECT_EQ(a.nr, b.nr);
  EXPECT_EQ(a.head, b.head);
  EXPECT_EQ(a.tail, b.tail);
  ASSERT_EQ(a.unreaped.size(), b.unreaped.size());
  for (size_t i = 0; i < a.unreaped.size(); ++i) {
    EXPECT_EQ(a.unreaped[i].data, b.unreaped[i].data) << i;
    EXPECT_EQ(a.unreaped[i].obj, b.unreaped[i].obj) << i;
    EXPECT_EQ(a.unreaped[i].res, b.unreaped[i].res) << i;
    EXPECT_EQ(a.unreaped[i].res2, b.unreaped[i].res2) << i;
  }
}

TEST_F(AioContextTest, ReplayPutsBackUnreapedCompletionsAndTheKernelsTail) {
  for (int wrap = 0; wrap < 2; ++wrap) {
    SCOPED_TRACE(wrap ? "tail wrapped past the end of the ring" : "no wrap");
    const aio_context_t a = MakeContext(8);
    auto ra = ReadAioRing(target_, a);
    ASSERT_TRUE(ra.ok()) << ra.status().ToString();
    const uint32_t nr = ra->nr;
    // Reaped reads, then 3 left unreaped (the wrapped case ends past slot 0).
    const uint32_t reaped = wrap ? nr - 1 : 2;
    for (uint32_t i = 0; i < reaped; ++i) {
      Read(a, 1000 + i, i);
      ASSERT_EQ(Reap(a, 1, 1).size(), 1u);
    }
    for (uint32_t i = 0; i < 3; ++i) Read(a, 2000 + i, 10 + i);
    auto saved = ReadAioRing(target_, a);
    ASSERT_TRUE(saved.ok());
    ASSERT_EQ(saved->unreaped.size(), 3u);
    if (wrap) {
      EXPECT_LT(saved->tail, saved->head);
    }

    const aio_context_t b = MakeContext(8);
    Status st = ReplayAioRing(target_, b, *saved);
    ASSERT_TRUE(st.ok()) << st.ToString();
    auto rb = ReadAioRing(target_, b);
    ASSERT_TRUE(rb.ok());
    saved->ctx = b;
    ExpectSameRing(*rb, *saved);

    // The kernel's own tail is the ring's: a new completion goes after the
    // three, which io_getevents returns first.
    Read(b, 3000, 42);
    auto after = ReadAioRing(target_, b);
    ASSERT_TRUE(after.ok());
    EXPECT_EQ(after->tail, (saved->tail + 1) % nr);
    std::vector<io_event> ev = Reap(b, 4, 4);
    ASSERT_EQ(ev.size(), 4u);
    for (uint32_t i = 0; i < 3; ++i) {
      EXPECT_EQ(ev[i].data, 2000 + i);
      EXPECT_EQ(ev[i].res, 1);
    }
    EXPECT_EQ(ev[3].data, 3000u);
    EXPECT_EQ(Reap(b, 0, 1).size(), 0u);
    EXPECT_EQ(buf_[42], 42);
    Sys(SYS_io_destroy, a);
    Sys(SYS_io_destroy, b);
    ctxs_.clear();
  }
}

TEST_F(AioContextTest, ReplayRefusesAMismatch) {
  const aio_context_t a = MakeContext(8);
  auto ra = ReadAioRing(target_, a);
  ASSERT_TRUE(ra.ok());
  AioRingState bad = *ra;
  bad.nr += 1;
  EXPECT_FALSE(ReplayAioRing(target_, a, bad).ok());
  bad = *ra;
  bad.tail = (bad.head + 2) % bad.nr;  // two unreaped said, none given
  EXPECT_FALSE(ReplayAioRing(target_, a, bad).ok());
}

TEST_F(AioContextTest, ProbeOfAnIdleContextFindsNothingInFlightAndLeavesTheRingAsFound) {
  auto cpus = PossibleCpus();
  ASSERT_TRUE(cpus.ok()) << cpus.status().ToString();
  const aio_context_t a = MakeContext(8);
  for (int i = 0; i < 5; ++i) Read(a, 1000 + i, i);
  ASSERT_EQ(Reap(a, 2, 2).size(), 2u);
  auto before = ReadAioRing(target_, a);
  ASSERT_TRUE(before.ok());
  auto p = ProbeAioContext(target_, a, *cpus);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->unaccounted, 0u);
  EXPECT_GT(p->drained, 0u);
  auto after = ReadAioRing(target_, a);
  ASSERT_TRUE(after.ok());
  ExpectSameRing(*after, *before);
  std::vector<io_event> ev = Reap(a, 3, 3);
  ASSERT_EQ(ev.size(), 3u);  // the three, none of the probe's
  for (int i = 0; i < 3; ++i) EXPECT_EQ(ev[i].data, 1002u + i);
  EXPECT_EQ(Reap(a, 0, 1).size(), 0u);
  // Every slot is free again: the context takes as many reads as before.
  for (uint32_t i = 0; i < 20; ++i) Read(a, 5000 + i, i);
  EXPECT_EQ(Reap(a, 20, 20).size(), 20u);
}

TEST_F(AioContextTest, ProbeCountsARequestInFlightAndKeepsItsCompletion) {
  auto cpus = PossibleCpus();
  ASSERT_TRUE(cpus.ok());
  const aio_context_t a = MakeContext(8);
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  // A poll of an empty pipe: in flight until the pipe has data.
  iocb cb{};
  cb.aio_data = 77;
  cb.aio_lio_opcode = IOCB_CMD_POLL;
  cb.aio_fildes = static_cast<uint32_t>(p[0]);
  cb.aio_buf = POLLIN;
  iocb* list[1] = {&cb};
  ASSERT_EQ(Sys(SYS_io_submit, a, 1, reinterpret_cast<uint64_t>(list)), 1) << strerror(errno);
  Read(a, 1000, 3);  // and one completion not reaped
  auto pr = ProbeAioContext(target_, a, *cpus);
  ASSERT_TRUE(pr.ok()) << pr.status().ToString();
  EXPECT_EQ(pr->unaccounted, 1u);
  ASSERT_EQ(pr->ring.unreaped.size(), 1u);
  EXPECT_EQ(pr->ring.unreaped[0].data, 1000u);
  ASSERT_EQ(::write(p[1], "x", 1), 1);
  std::vector<io_event> ev;
  timespec ten_s{10, 0};
  ev.resize(3);
  const long n = Sys(SYS_io_getevents, a, 2, 3, reinterpret_cast<uint64_t>(ev.data()), reinterpret_cast<uint64_t>(&ten_s));
  ASSERT_EQ(n, 2) << strerror(errno);
  EXPECT_EQ(ev[0].data, 1000u);
  EXPECT_EQ(ev[1].data, 77u);
  ::close(p[0]);
  ::close(p[1]);
}

TEST_F(AioContextTest, ProbeInOneBatchOfAnIdleContextReapsOnlyItsOwn) {
  auto cpus = PossibleCpus();
  ASSERT_TRUE(cpus.ok());
  const aio_context_t a = MakeContext(8);
  for (int i = 0; i < 5; ++i) Read(a, 1000 + i, i);
  ASSERT_EQ(Reap(a, 5, 5).size(), 5u);
  auto p = ProbeIdleAioContextInOneBatch(target_, a, *cpus);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->unaccounted, 0u);
  EXPECT_GT(p->drained, 0u);
  EXPECT_EQ(p->ring.head, p->ring.tail);
  EXPECT_EQ(p->ring.unreaped.size(), 0u);
  EXPECT_EQ(Reap(a, 0, 1).size(), 0u);
  for (uint32_t i = 0; i < 20; ++i) Read(a, 5000 + i, i);
  std::vector<io_event> ev = Reap(a, 20, 20);
  ASSERT_EQ(ev.size(), 20u);
  EXPECT_EQ(ev[19].data, 5019u);
}

TEST_F(AioContextTest, ProbeInOneBatchRefusesUnreapedCompletionsAndLeavesThem) {
  auto cpus = PossibleCpus();
  ASSERT_TRUE(cpus.ok());
  const aio_context_t a = MakeContext(8);
  Read(a, 1000, 1);
  auto before = ReadAioRing(target_, a);
  ASSERT_TRUE(before.ok());
  auto p = ProbeIdleAioContextInOneBatch(target_, a, *cpus);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("1 completions not yet reaped"), std::string::npos) << p.status().ToString();
  auto after = ReadAioRing(target_, a);
  ASSERT_TRUE(after.ok());
  ExpectSameRing(*after, *before);
}

TEST_F(AioContextTest, ProbeInOneBatchCountsARequestInFlight) {
  auto cpus = PossibleCpus();
  ASSERT_TRUE(cpus.ok());
  const aio_context_t a = MakeContext(8);
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  iocb cb{};
  cb.aio_data = 77;
  cb.aio_lio_opcode = IOCB_CMD_POLL;
  cb.aio_fildes = static_cast<uint32_t>(p[0]);
  cb.aio_buf = POLLIN;
  iocb* list[1] = {&cb};
  ASSERT_EQ(Sys(SYS_io_submit, a, 1, reinterpret_cast<uint64_t>(list)), 1) << strerror(errno);
  auto pr = ProbeIdleAioContextInOneBatch(target_, a, *cpus);
  ASSERT_TRUE(pr.ok()) << pr.status().ToString();
  EXPECT_EQ(pr->unaccounted, 1u);
  ASSERT_EQ(::write(p[1], "x", 1), 1);
  io_event ev[2];
  timespec ten_s{10, 0};
  ASSERT_EQ(Sys(SYS_io_getevents, a, 1, 2, reinterpret_cast<uint64_t>(ev), reinterpret_cast<uint64_t>(&ten_s)), 1);
  EXPECT_EQ(ev[0].data, 77u);
  ::close(p[0]);
  ::close(p[1]);
}

TEST_F(AioContextTest, SetupAtAnAddressGivesAContextOfThatIdWithTheSameRing) {
  auto cpus = PossibleCpus();
  ASSERT_TRUE(cpus.ok());
  for (unsigned n : {1u, 8u, 200u, 1000u}) {
    SCOPED_TRACE("io_setup(" + std::to_string(n) + ")");
    const aio_context_t a = MakeContext(n);
    auto ra = ReadAioRing(target_, a);
    ASSERT_TRUE(ra.ok());
    // Where the ring goes: a page range held by a placeholder, so that
    // io_setup cannot put the new ring there itself (the ring is moved).
    const size_t len = (32 + size_t{ra->nr} * 32 + 4095) & ~size_t{4095};
    void* place = ::mmap(nullptr, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(place, MAP_FAILED);
    auto b = SetupAioContextAt(target_, reinterpret_cast<uint64_t>(place), ra->nr, cpus->size());
    if (!b.ok()) ::munmap(place, len);
    ASSERT_TRUE(b.ok()) << b.status().ToString();
    EXPECT_EQ(*b, reinterpret_cast<uint64_t>(place));
    ctxs_.push_back(*b);
    auto rb = ReadAioRing(target_, *b);
    ASSERT_TRUE(rb.ok()) << rb.status().ToString();
    EXPECT_EQ(rb->nr, ra->nr);
    Read(*b, 7, 9);
    std::vector<io_event> ev = Reap(*b, 1, 1);
    ASSERT_EQ(ev.size(), 1u);
    EXPECT_EQ(ev[0].data, 7u);
    EXPECT_EQ(ev[0].res, 1);
    EXPECT_EQ(Sys(SYS_io_destroy, *b), 0) << strerror(errno);
    EXPECT_EQ(Sys(SYS_io_destroy, a), 0) << strerror(errno);
    ctxs_.clear();
  }
  auto bad = AioSetupArgFor(100, 2);  // not a whole number of pages
  EXPECT_FALSE(bad.ok());
  auto many = AioSetupArgFor(127, 64);  // 64 CPUs make at least 514 events
  EXPECT_FALSE(many.ok());
  auto one = AioSetupArgFor(127, 2);
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(*one, 1u);
}

TEST(AioPossibleCpusTest, ReadsTheKernelsList) {
  auto cpus = PossibleCpus();
  ASSERT_TRUE(cpus.ok()) << cpus.status().ToString();
  EXPECT_GE(cpus->size(), static_cast<size_t>(::sysconf(_SC_NPROCESSORS_ONLN)));
}

}  // namespace
}  // namespace cryo
