#include "mem/page_dump.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <map>
#include <mutex>
#include <string>

#include "base/env.h"
#include "image/format.h"
#include "mem/direct_write.h"

namespace cryo {
namespace {

constexpr uint64_t kPage = image::kPageSize;
constexpr uint64_t kData = image::kPageDataOffset;

// The byte a fake target holds at `addr`.
char ByteAt(uint64_t addr) { return static_cast<char>((addr * 2654435761u) >> 13); }

// A fake target: any address reads ByteAt; can fail at one address.
class FakeSource : public PageSource {
 public:
  Status Read(const PagePiece* pieces, size_t n, char* dst) override {
    ++reads;
    for (size_t i = 0; i < n; ++i) {
      if (fail_at && pieces[i].vaddr <= fail_at && fail_at < pieces[i].vaddr + pieces[i].len)
        return Status::Errno(EFAULT, "fake read at " + std::to_string(fail_at));
      for (uint64_t k = 0; k < pieces[i].len; ++k) *dst++ = ByteAt(pieces[i].vaddr + k);
      if (!pieces[i].readable) unreadable_bytes += pieces[i].len;
    }
    return Status::Ok();
  }
  uint64_t fail_at = 0;
  int reads = 0;
  uint64_t unreadable_bytes = 0;
};

// A page file in memory; fails with ENOSPC once `budget` bytes were written.
class FakeFile : public WritableFile {
 public:
  Status Append(const void* d, size_t n) override { return WriteAt(d, n, static_cast<off_t>(data.size())); }
  Status WriteAt(const void* d, size_t n, off_t o) override {
    std::lock_guard<std::mutex> lock(mu);
    if (n > budget) return Status::Errno(ENOSPC, "write to " + path_);
    budget -= n;
    if (data.size() < o + n) data.resize(o + n);
    std::memcpy(&data[o], d, n);
    ++writes;
    return Status::Ok();
  }
  Status StartWriteback(off_t o, size_t n) override {
    std::lock_guard<std::mutex> lock(mu);
    writeback[o] = n;
    return Status::Ok();
  }
  Status Sync() override { return Status::Ok(); }
  Status Close() override { return Status::Ok(); }
  const std::string& path() const override { return path_; }

  std::mutex mu;
  std::string data;
  size_t budget = SIZE_MAX;
  int writes = 0;
  std::map<off_t, size_t> writeback;
  std::string path_ = "/fake/pages-1.img";
};

image::Vma* AddVma(image::Mm* mm, uint64_t start, uint64_t end, image::VmaKind kind, uint32_t prot) {
  image::Vma* v = mm->add_vmas();
  v->set_start(start);
  v->set_end(end);
  v->set_kind(kind);
  v->set_prot(prot);
  return v;
}

// Scans as if every page of every VMA listed in `present` were present.
PageScanFn FakeScan(std::vector<PageRegion> present) {
  return [present](uint64_t start, uint64_t end) -> Result<std::vector<PageRegion>> {
    std::vector<PageRegion> out;
    for (const PageRegion& r : present)
      if (r.start < end && start < r.end) out.push_back({std::max(r.start, start), std::min(r.end, end), r.categories});
    return out;
  };
}

// A layout with: a 10 MiB anonymous VMA (runs split at 4 MiB), an adjacent
// anonymous VMA (no run across the boundary), a PROT_NONE VMA with content, a
// file mapping with one copied-on-write page and one clean page, a zero page.
struct Layout {
  image::Mm mm;
  std::vector<PagePiece> pieces;
};

Layout MakeLayout() {
  Layout l;
  const uint64_t a = 0x10000000;
  AddVma(&l.mm, a, a + (10 << 20), image::VMA_ANON_PRIVATE, PROT_READ | PROT_WRITE);
  AddVma(&l.mm, a + (10 << 20), a + (11 << 20), image::VMA_ANON_PRIVATE, PROT_READ);
  AddVma(&l.mm, 0x20000000, 0x20010000, image::VMA_ANON_PRIVATE, PROT_NONE);
  AddVma(&l.mm, 0x30000000, 0x30010000, image::VMA_FILE_PRIVATE, PROT_READ | PROT_WRITE);
  AddVma(&l.mm, 0x40000000, 0x40010000, image::VMA_FILE_SHARED, PROT_READ | PROT_WRITE);
  std::vector<PageRegion> present = {
      {a, a + (11 << 20), kPagePresent},
      {0x20001000, 0x20003000, kPagePresent},
      {0x30000000, 0x30001000, kPagePresent},                // copied on write
      {0x30001000, 0x30002000, kPagePresent | kPageFile},    // clean file page
      {0x30002000, 0x30003000, kPagePresent | kPagePfnZero}, // the zero page
      {0x40000000, 0x40010000, kPagePresent | kPageFile},    // shared file: never stored
  };
  auto pieces = PlanPages(&l.mm, FakeScan(present));
  EXPECT_TRUE(pieces.ok()) << pieces.status().ToString();
  l.pieces = *pieces;
  return l;
}

TEST(PlanPagesTest, RunsSplitAtFourMiBAndVmaBoundaries) {
  Layout l = MakeLayout();
  const image::Mm& mm = l.mm;
  ASSERT_EQ(mm.runs_size(), 6);
  const uint64_t a = 0x10000000;
  const uint64_t mib = 1 << 20;
  const std::vector<std::pair<uint64_t, uint64_t>> want = {
      {a, 4 * mib}, {a + 4 * mib, 4 * mib}, {a + 8 * mib, 2 * mib}, {a + 10 * mib, mib},
      {0x20001000, 2 * kPage}, {0x30000000, kPage}};
  uint64_t off = kData;
  for (int i = 0; i < mm.runs_size(); ++i) {
    EXPECT_EQ(mm.runs(i).vaddr(), want[i].first) << "run " << i;
    EXPECT_EQ(mm.runs(i).npages() * kPage, want[i].second) << "run " << i;
    EXPECT_EQ(mm.runs(i).offset(), off) << "run " << i;
    off += want[i].second;
  }
  EXPECT_EQ(mm.total_pages(), (off - kData) / kPage);
  EXPECT_EQ(mm.vmas(0).stored_pages(), 10 * mib / kPage);
  EXPECT_EQ(mm.vmas(1).stored_pages(), mib / kPage);
  EXPECT_EQ(mm.vmas(2).stored_pages(), 2u);
  EXPECT_EQ(mm.vmas(3).stored_pages(), 1u);
  EXPECT_EQ(mm.vmas(4).stored_pages(), 0u);
  // Pieces: the two adjacent readable VMAs are read as one; the PROT_NONE one apart.
  ASSERT_EQ(l.pieces.size(), 3u);
  EXPECT_EQ(l.pieces[0].len, 11 * mib);
  EXPECT_TRUE(l.pieces[0].readable);
  EXPECT_EQ(l.pieces[1].vaddr, 0x20001000u);
  EXPECT_FALSE(l.pieces[1].readable);
  EXPECT_EQ(l.pieces[2].file_off, off - kPage);
}

// Every run's bytes land at its offset, with its checksum, whatever the ring.
void ExpectCopied(const Layout& l, const image::Mm& mm, const FakeFile& f) {
  ASSERT_EQ(f.data.size(), kData + mm.total_pages() * kPage);
  for (const image::PageRun& r : mm.runs()) {
    const uint64_t n = r.npages() * kPage;
    std::string want(n, '\0');
    for (uint64_t k = 0; k < n; ++k) want[k] = ByteAt(r.vaddr() + k);
    ASSERT_EQ(f.data.compare(r.offset(), n, want), 0) << "run at " << std::hex << r.vaddr();
    EXPECT_EQ(r.checksum(), image::HashBytes(want.data(), n)) << "run at " << std::hex << r.vaddr();
  }
  (void)l;
}

TEST(CopyPagesTest, BytesAndChecksumsForManyRingShapes) {
  const std::vector<PageCopyOptions> shapes = {
      {kPage, 1}, {kPage, 3}, {3 * kPage, 2}, {1 << 20, 4}, {8 << 20, 4}, {64 << 20, 2},
      {1 << 20, 4, true}};  // direct asked for, but a file without a local fd: through the file
  for (const PageCopyOptions& o : shapes) {
    SCOPED_TRACE("buffer " + std::to_string(o.buffer_bytes) + " x " + std::to_string(o.buffers));
    Layout l = MakeLayout();
    FakeSource src;
    FakeFile f;
    std::vector<std::pair<uint64_t, uint64_t>> calls;
    Status s = CopyPages(src, l.pieces, &l.mm, &f, [&](uint64_t d, uint64_t t) { calls.push_back({d, t}); }, o);
    ASSERT_TRUE(s.ok()) << s.ToString();
    ExpectCopied(l, l.mm, f);
    EXPECT_EQ(src.unreadable_bytes, 2 * kPage);
    // Writeback was started for every byte written.
    uint64_t wb = 0;
    for (const auto& [off, n] : f.writeback) wb += n;
    EXPECT_EQ(wb, l.mm.total_pages() * kPage);
    // Progress: increasing, ends with total exactly once.
    const uint64_t total = l.mm.total_pages() * kPage;
    ASSERT_FALSE(calls.empty());
    EXPECT_EQ(calls.back(), std::make_pair(total, total));
    for (size_t i = 0; i + 1 < calls.size(); ++i) {
      EXPECT_LT(calls[i].first, calls[i + 1].first);
      EXPECT_LT(calls[i].first, total);
    }
  }
}

TEST(CopyPagesTest, NothingToStoreWritesNothing) {
  image::Mm mm;
  AddVma(&mm, 0x1000, 0x2000, image::VMA_ANON_PRIVATE, PROT_READ);
  auto pieces = PlanPages(&mm, FakeScan({}));
  ASSERT_TRUE(pieces.ok());
  FakeSource src;
  FakeFile f;
  int calls = 0;
  ASSERT_TRUE(CopyPages(src, *pieces, &mm, &f, [&](uint64_t, uint64_t) { ++calls; }).ok());
  EXPECT_EQ(f.writes, 0);
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(mm.total_pages(), 0u);
}

TEST(CopyPagesTest, FullDiskMidCopyFailsWithTheFileAndStopsReading) {
  for (size_t buffers : {1, 2, 4}) {
    SCOPED_TRACE("buffers " + std::to_string(buffers));
    Layout l = MakeLayout();
    FakeSource src;
    FakeFile f;
    f.budget = 3 << 20;  // 3 of ~11 MiB fit
    Status s = CopyPages(src, l.pieces, &l.mm, &f, nullptr, {1 << 20, buffers});
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.err(), ENOSPC);
    EXPECT_NE(s.ToString().find(f.path()), std::string::npos) << s.ToString();
    // The reader stops soon after the writer failed: at most the ring ahead.
    EXPECT_LE(src.reads, 3 + 1 + static_cast<int>(buffers));
    EXPECT_EQ(f.writes, 3);
  }
}

TEST(CopyPagesTest, ReadErrorMidCopyStopsTheWriter) {
  for (size_t buffers : {1, 4}) {
    SCOPED_TRACE("buffers " + std::to_string(buffers));
    Layout l = MakeLayout();
    FakeSource src;
    src.fail_at = 0x10000000 + (5 << 20);
    FakeFile f;
    Status s = CopyPages(src, l.pieces, &l.mm, &f, nullptr, {1 << 20, buffers});
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.err(), EFAULT);
    EXPECT_NE(s.ToString().find("fake read"), std::string::npos);
    EXPECT_LE(f.writes, 5);
  }
}

TEST(CopyPagesTest, RejectsPiecesThatDoNotMatchTheRuns) {
  Layout l = MakeLayout();
  l.pieces.back().len += kPage;
  FakeSource src;
  FakeFile f;
  Status s = CopyPages(src, l.pieces, &l.mm, &f, nullptr);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(f.writes, 0);
}

// The real source on this process: readable memory through process_vm_readv,
// a PROT_NONE region through /proc/PID/mem, unmapped memory is an error
// naming the address.
TEST(ProcessPageSourceTest, ReadsReadableAndProtNoneMemory) {
  const size_t len = 64 * kPage;
  char* m = static_cast<char*>(mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(m, MAP_FAILED);
  for (size_t i = 0; i < len; ++i) m[i] = ByteAt(i);
  ASSERT_EQ(mprotect(m + 32 * kPage, 16 * kPage, PROT_NONE), 0);
  const uint64_t base = reinterpret_cast<uint64_t>(m);
  auto src = ProcessPageSource::Open(getpid());
  ASSERT_TRUE(src.ok()) << src.status().ToString();
  std::vector<PagePiece> pieces = {{base, 8 * kPage, 0, true},
                                   {base + 20 * kPage, 12 * kPage, 0, true},
                                   {base + 32 * kPage, 16 * kPage, 0, false},
                                   {base + 48 * kPage, 16 * kPage, 0, true}};
  std::string out(52 * kPage, '\0');
  Status s = (*src)->Read(pieces.data(), pieces.size(), out.data());
  ASSERT_TRUE(s.ok()) << s.ToString();
  size_t o = 0;
  for (const PagePiece& p : pieces)
    for (uint64_t k = 0; k < p.len; ++k, ++o) ASSERT_EQ(out[o], ByteAt(p.vaddr - base + k)) << "byte " << o;

  // A readable piece running into unmapped memory: the message names where.
  ASSERT_EQ(munmap(m + 60 * kPage, 4 * kPage), 0);
  PagePiece bad = {base + 56 * kPage, 8 * kPage, 0, true};
  s = (*src)->Read(&bad, 1, out.data());
  ASSERT_FALSE(s.ok());
  char where[32];
  snprintf(where, sizeof(where), "0x%lx", static_cast<unsigned long>(base + 60 * kPage));
  EXPECT_NE(s.ToString().find(where), std::string::npos) << s.ToString();
  munmap(m, 60 * kPage);
}

}  // namespace
}  // namespace cryo

namespace cryo {
namespace {

TEST(SplitSharedTest, SharedPagesAreReadWithoutPinning) {
  std::vector<PagePiece> pieces = {{0x10000, 0x8000, 4096, true}, {0x20000, 0x2000, 4096 + 0x8000, false}};
  SplitShared(&pieces, {{0x11000, 0x12000}, {0x16000, 0x19000}, {0x20000, 0x21000}});
  ASSERT_EQ(pieces.size(), 5u);
  EXPECT_EQ(pieces[0].vaddr, 0x10000u);
  EXPECT_EQ(pieces[0].len, 0x1000u);
  EXPECT_TRUE(pieces[0].readable);
  EXPECT_EQ(pieces[1].vaddr, 0x11000u);
  EXPECT_FALSE(pieces[1].readable);
  EXPECT_EQ(pieces[1].file_off, 4096u + 0x1000);
  EXPECT_EQ(pieces[2].vaddr, 0x12000u);
  EXPECT_EQ(pieces[2].len, 0x4000u);
  EXPECT_TRUE(pieces[2].readable);
  EXPECT_EQ(pieces[3].vaddr, 0x16000u);
  EXPECT_EQ(pieces[3].len, 0x2000u);  // clipped to the piece
  EXPECT_FALSE(pieces[3].readable);
  EXPECT_EQ(pieces[4].vaddr, 0x20000u);  // already unreadable: untouched
  EXPECT_EQ(pieces[4].len, 0x2000u);
  uint64_t off = 4096;
  for (const PagePiece& p : pieces) {
    EXPECT_EQ(p.file_off, off);
    off += p.len;
  }
}

TEST(SplitSharedTest, NothingSharedChangesNothing) {
  std::vector<PagePiece> pieces = {{0x10000, 0x8000, 4096, true}};
  SplitShared(&pieces, {});
  ASSERT_EQ(pieces.size(), 1u);
  EXPECT_EQ(pieces[0].len, 0x8000u);
}

// A page file on a local file system, `direct` on: the page data goes past
// the page cache (O_DIRECT) and lands byte for byte with every run's
// checksum; the header page, written through the page cache afterwards (as
// FinishPageFile does), sits next to it.
TEST(CopyPagesTest, DirectWritesLandByteForBytePastThePageCache) {
  char tmpl[] = "/var/tmp/cryo-direct-write-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl, path = dir + "/pages-1.img";
  struct Cleanup {
    std::string dir, path;
    ~Cleanup() {
      ::unlink(path.c_str());
      ::rmdir(dir.c_str());
    }
  } cleanup{dir, path};
  auto file = Env::Default()->NewWritableFile(path, 0600);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  if (!DirectPageWriter::Open(file->get()).valid()) GTEST_SKIP() << "no O_DIRECT on /var/tmp's file system";
  for (const size_t buffers : {1, 4}) {
    SCOPED_TRACE("buffers " + std::to_string(buffers));
    Layout l = MakeLayout();
    FakeSource src;
    Status s = CopyPages(src, l.pieces, &l.mm, file->get(), nullptr, {1 << 20, buffers, true});
    ASSERT_TRUE(s.ok()) << s.ToString();
    const std::string header(kData, 'H');
    ASSERT_TRUE((*file)->WriteAt(header.data(), header.size(), 0).ok());
    const size_t size = kData + l.mm.total_pages() * kPage;
    // Past the page cache: none of the page data is cached (mincore(2) of a
    // shared file mapping reports the file's cached pages).
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(fd.valid());
    void* m = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd.get(), 0);
    ASSERT_NE(m, MAP_FAILED);
    std::vector<unsigned char> resident(size / kPage);
    ASSERT_EQ(::mincore(m, size, resident.data()), 0);
    ::munmap(m, size);
    size_t cached = 0;
    for (size_t i = 1; i < resident.size(); ++i) cached += resident[i] & 1;
    EXPECT_EQ(cached, 0u) << "pages of page data in the page cache";
    FakeFile back;
    back.data.resize(size);
    ASSERT_EQ(::pread(fd.get(), back.data.data(), size, 0), static_cast<ssize_t>(size));
    EXPECT_EQ(back.data.substr(0, kData), header);
    ExpectCopied(l, l.mm, back);
  }
}

// What is not a plain local file gets no direct writer.
TEST(DirectPageWriterTest, OnlyForLocalFiles) {
  FakeFile f;
  EXPECT_FALSE(DirectPageWriter::Open(&f).valid());
  NullWritableFile null("/dev/null-pages");
  EXPECT_FALSE(DirectPageWriter::Open(&null).valid());
}

}  // namespace
}  // namespace cryo
