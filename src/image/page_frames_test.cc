// Compressed page files: the framing (page_frames.h), the writer
// (framed_writer.h) and random-access reads (page_source.h).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <random>
#include <string>

#include "base/env.h"
#include "image/framed_writer.h"
#include "image/page_frames.h"
#include "image/page_source.h"

namespace cryo::image {
namespace {

constexpr uint32_t kChunk = 64 << 10;

// Mixed content: zero pages, text, random bytes; not a multiple of the chunk.
std::string MixedPages(size_t pages) {
  std::string s(pages * kPageSize, '\0');
  std::mt19937_64 rng(42);
  for (size_t p = 0; p < pages; ++p) {
    char* page = s.data() + p * kPageSize;
    switch (p % 4) {
      case 0: break;  // zeros
      case 1:
        for (size_t i = 0; i < kPageSize; ++i) page[i] = "checkpoint/restore "[i % 19];
        break;
      default:
        for (size_t i = 0; i < kPageSize; i += 8) {
          const uint64_t v = rng();
          std::memcpy(page + i, &v, 8);
        }
    }
  }
  return s;
}

class PageFramesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/cryo-frames-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    identity_.format_version = kFormatVersion;
    identity_.image_id = std::string(kImageIdSize, '\x5a');
  }
  void TearDown() override {
    ::unlink((dir_ + "/" + kName).c_str());
    ::rmdir(dir_.c_str());
  }

  // Writes `data` as a compressed page file, in writes of `piece` bytes.
  uint64_t Write(const std::string& data, Compression c, int workers, size_t piece) {
    auto raw = Env::Default()->NewWritableFile(dir_ + "/" + kName, 0600);
    EXPECT_TRUE(raw.ok());
    FramedPageFile f(std::move(*raw), c, workers, kChunk);
    for (size_t at = 0; at < data.size(); at += piece) {
      const size_t n = std::min(piece, data.size() - at);
      EXPECT_TRUE(f.WriteAt(data.data() + at, n, static_cast<off_t>(kPageDataOffset + at)).ok());
    }
    Result<uint64_t> size = f.Finish([&](uint64_t payload, uint64_t index_hash, uint8_t* hdr) {
      FileHeader h;
      h.kind = FileKind::kCompressedPages;
      h.payload_size = payload;
      h.payload_hash = index_hash;
      h.image_id = identity_.image_id;
      EncodeHeader(h, hdr);
    });
    EXPECT_TRUE(size.ok()) << size.status().ToString();
    auto out = f.Release();
    EXPECT_TRUE(out->Close().ok());
    identity_.sizes[kName] = *size;
    return *size;
  }

  Result<PageSource> Open(bool compressed_ok = true) {
    FileHeader h;
    return PageSource::Open(dir_, identity_, kName, compressed_ok, &h);
  }

  void Patch(uint64_t offset, uint8_t xor_with) {
    const int fd = ::open((dir_ + "/" + kName).c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    uint8_t b;
    ASSERT_EQ(::pread(fd, &b, 1, static_cast<off_t>(offset)), 1);
    b ^= xor_with;
    ASSERT_EQ(::pwrite(fd, &b, 1, static_cast<off_t>(offset)), 1);
    ::close(fd);
  }

  const std::string kName = "pages-1.img";
  std::string dir_;
  ImageIdentity identity_;
};

TEST_F(PageFramesTest, ParsesTheOption) {
  EXPECT_EQ(ParseCompression("zstd", 3)->ToString(), "zstd:3");
  EXPECT_EQ(ParseCompression("zstd:19")->ToString(), "zstd:19");
  EXPECT_EQ(ParseCompression("lz4")->ToString(), "lz4");
  EXPECT_FALSE(ParseCompression("none")->on());
  for (const char* bad : {"zstd:0", "zstd:20", "zstd:", "gzip", "lz4:1", "zstd:-1"})
    EXPECT_FALSE(ParseCompression(bad).ok()) << bad;
}

TEST_F(PageFramesTest, RoundTripsEveryCodecWithAndWithoutWorkers) {
  const std::string data = MixedPages(83);  // 332 KiB: 5 full frames and a short one
  for (Compression c : {Compression{Codec::kZstd, 1}, Compression{Codec::kZstd, 19}, Compression{Codec::kLz4, 0}})
    for (int workers : {0, 2})
      for (size_t piece : {size_t{4096}, size_t{1} << 20, size_t{12345}}) {
        const uint64_t size = Write(data, c, workers, piece);
        EXPECT_LT(size, kPageDataOffset + data.size()) << c.ToString();
        Result<PageSource> src = Open();
        ASSERT_TRUE(src.ok()) << src.status().ToString();
        EXPECT_TRUE(src->compressed());
        EXPECT_EQ(src->codec(), c.codec);
        std::string back(data.size(), '\x7f');
        ASSERT_TRUE(src->Read(back.data(), back.size(), kPageDataOffset).ok());
        EXPECT_TRUE(back == data) << c.ToString() << " workers " << workers;
      }
}

TEST_F(PageFramesTest, ReadsAnyRangeByOffset) {
  const std::string data = MixedPages(83);
  Write(data, {Codec::kZstd, 3}, 2, 1 << 20);
  Result<PageSource> src = Open();
  ASSERT_TRUE(src.ok());
  std::mt19937 rng(7);
  for (int i = 0; i < 200; ++i) {
    const uint64_t page = rng() % 83;
    const uint64_t n = (1 + rng() % std::min<uint64_t>(40, 83 - page)) * kPageSize;
    std::string got(n, '\0');
    ASSERT_TRUE(src->Read(got.data(), n, kPageDataOffset + page * kPageSize).ok());
    ASSERT_EQ(got, data.substr(page * kPageSize, n)) << "page " << page << " n " << n;
  }
  std::string one(kPageSize, '\0');
  EXPECT_FALSE(src->Read(one.data(), kPageSize, kPageDataOffset + 83 * kPageSize).ok());  // past the end
  EXPECT_FALSE(src->Read(one.data(), kPageSize, 0).ok());                                 // the header
}

TEST_F(PageFramesTest, IncompressibleChunksAreStored) {
  std::string data(2 * kChunk, '\0');
  std::mt19937_64 rng(1);
  for (size_t i = 0; i < data.size(); i += 8) {
    const uint64_t v = rng();
    std::memcpy(data.data() + i, &v, 8);
  }
  const uint64_t size = Write(data, {Codec::kLz4, 0}, 1, 4096);
  EXPECT_EQ(size, kPageDataOffset + data.size() + 2 * kFrameEntrySize);
  Result<PageSource> src = Open();
  ASSERT_TRUE(src.ok());
  std::string back(data.size(), '\0');
  ASSERT_TRUE(src->Read(back.data(), back.size(), kPageDataOffset).ok());
  EXPECT_TRUE(back == data);
}

TEST_F(PageFramesTest, ACorruptedFrameIsNamedAndTheOthersStillRead) {
  const std::string data = MixedPages(83);
  Write(data, {Codec::kZstd, 1}, 2, 1 << 20);
  Patch(kPageDataOffset + 10, 0x40);  // inside frame 0
  Result<PageSource> src = Open();
  ASSERT_TRUE(src.ok()) << "the index is intact: " << src.status().ToString();
  std::string got(kChunk, '\0');
  Status s = src->Read(got.data(), kPageSize, kPageDataOffset);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find(dir_ + "/" + kName + ": frame 0"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("checksum mismatch"), std::string::npos) << s.message();
  ASSERT_TRUE(src->Read(got.data(), kChunk, kPageDataOffset + kChunk).ok());
  EXPECT_EQ(got, data.substr(kChunk, kChunk));
}

TEST_F(PageFramesTest, ACorruptedIndexOrDescriptorIsRefusedAtOpen) {
  const std::string data = MixedPages(20);
  const uint64_t size = Write(data, {Codec::kZstd, 1}, 0, 1 << 20);
  Patch(size - 3, 0x01);  // the last entry's hash
  Result<PageSource> src = Open();
  ASSERT_FALSE(src.ok());
  EXPECT_NE(src.status().message().find("checksum mismatch in the frame index"), std::string::npos);
  Patch(size - 3, 0x01);
  ASSERT_TRUE(Open().ok());
  Patch(kDescriptorOffset + 12, 0x01);  // chunk size no longer a multiple of 4096
  EXPECT_FALSE(Open().ok());
}

TEST_F(PageFramesTest, ACompressedFileIsRefusedWithoutTheFeature) {
  Write(MixedPages(4), {Codec::kZstd, 1}, 0, 4096);
  Result<PageSource> src = Open(/*compressed_ok=*/false);
  ASSERT_FALSE(src.ok());
  EXPECT_NE(src.status().message().find("without the feature 'compressed-pages'"), std::string::npos);
}

TEST_F(PageFramesTest, AFrameThatInflatesBeyondItsChunkIsRefused) {
  // A zstd frame of kChunk + 4096 zero bytes stored where kChunk are expected.
  std::string big(kChunk + kPageSize, '\0'), packed;
  ASSERT_EQ(CompressChunk({Codec::kZstd, 1}, big.data(), big.size(), &packed), FrameMethod::kZstd);
  std::string out(kChunk, '\0'), why;
  EXPECT_FALSE(DecompressFrame(FrameMethod::kZstd, packed.data(), packed.size(), out.data(), out.size(), &why));
  ASSERT_EQ(CompressChunk({Codec::kLz4, 0}, big.data(), big.size(), &packed), FrameMethod::kLz4);
  EXPECT_FALSE(DecompressFrame(FrameMethod::kLz4, packed.data(), packed.size(), out.data(), out.size(), &why));
}

}  // namespace
}  // namespace cryo::image
