#include "stream/protocol.h"

#include <gtest/gtest.h>

#include <map>

#include "image/format.h"

namespace cryo::stream {
namespace {

struct MemorySink : FileSink {
  std::map<uint32_t, std::string> names;
  std::map<std::string, std::string> files;
  Status Create(uint32_t id, const std::string& name) override {
    names[id] = name;
    files[name];
    return Status::Ok();
  }
  Status Write(uint32_t id, uint64_t offset, std::string_view data) override {
    std::string& f = files[names[id]];
    if (f.size() < offset + data.size()) f.resize(offset + data.size());
    f.replace(offset, data.size(), data);
    return Status::Ok();
  }
  Status Finish(uint32_t, uint64_t) override { return Status::Ok(); }
};

std::string U64(uint64_t v) {
  std::string s;
  PutU64(&s, v);
  return s;
}

Status Feed(ImageReceiver& r, FrameType t, uint32_t id, const std::string& payload) {
  return r.OnFrame({static_cast<uint32_t>(t), id, static_cast<uint32_t>(payload.size())}, payload);
}

Status SendFile(ImageReceiver& r, uint32_t id, const std::string& name, const std::string& data) {
  CRYO_RETURN_IF_ERROR(Feed(r, FrameType::kOpen, id, name));
  if (!data.empty()) CRYO_RETURN_IF_ERROR(Feed(r, FrameType::kData, id, U64(0) + data));
  return Feed(r, FrameType::kClose, id, U64(data.size()));
}

TEST(ImageReceiverTest, AcceptsAnImageWithTheInventoryLast) {
  MemorySink sink;
  ImageReceiver r(&sink);
  ASSERT_TRUE(SendFile(r, 1, "core-42.img", "core").ok());
  ASSERT_TRUE(Feed(r, FrameType::kOpen, 2, "pages-42.img").ok());
  ASSERT_TRUE(Feed(r, FrameType::kData, 2, U64(4096) + "page").ok());
  ASSERT_TRUE(Feed(r, FrameType::kData, 2, U64(0) + "hdr").ok());  // the header block last, at offset 0
  ASSERT_TRUE(Feed(r, FrameType::kClose, 2, U64(4100)).ok());
  ASSERT_TRUE(SendFile(r, 3, "inventory.img", "inv").ok());
  ASSERT_TRUE(Feed(r, FrameType::kEnd, 0, "").ok());
  EXPECT_TRUE(r.ended());
  EXPECT_EQ(sink.files["core-42.img"], "core");
  EXPECT_EQ(sink.files["pages-42.img"].substr(4096), "page");
  EXPECT_EQ(r.files(), 3u);
}

TEST(ImageReceiverTest, RefusesNamesAnImageCannotHave) {
  for (const char* bad : {"../inventory.img", "/etc/passwd", "core-42.img/..", "core-042.img", "core-.img", "core-1x.img",
                          "dump-incomplete", ".", "..", "", "pages-99999999.img"}) {
    MemorySink sink;
    ImageReceiver r(&sink);
    Status s = Feed(r, FrameType::kOpen, 1, std::string(bad));
    EXPECT_FALSE(s.ok()) << bad;
    EXPECT_TRUE(sink.files.empty()) << bad;
  }
  MemorySink sink;
  ImageReceiver r(&sink);
  EXPECT_FALSE(Feed(r, FrameType::kOpen, 1, std::string("core-1.img\0/../x", 16)).ok());
}

TEST(ImageReceiverTest, RefusesWritesBeyondWhatAFileMayHold) {
  MemorySink sink;
  ImageReceiver r(&sink);
  ASSERT_TRUE(Feed(r, FrameType::kOpen, 1, "core-1.img").ok());
  EXPECT_FALSE(Feed(r, FrameType::kData, 1, U64(image::MaxImageFileBytes("core-1.img")) + "x").ok());
  ImageReceiver r2(&sink);
  ASSERT_TRUE(Feed(r2, FrameType::kOpen, 1, "pages-1.img").ok());
  EXPECT_FALSE(Feed(r2, FrameType::kData, 1, U64(UINT64_MAX - 1) + "xy").ok());  // wraps around
  ImageReceiver r3(&sink);
  EXPECT_FALSE(Feed(r3, FrameType::kData, 7, U64(0) + "x").ok());  // never opened
}

TEST(ImageReceiverTest, RefusesTruncatedAndOutOfOrderImages) {
  {
    MemorySink sink;
    ImageReceiver r(&sink);
    ASSERT_TRUE(Feed(r, FrameType::kOpen, 1, "core-1.img").ok());
    ASSERT_TRUE(Feed(r, FrameType::kData, 1, U64(0) + "abc").ok());
    EXPECT_FALSE(Feed(r, FrameType::kClose, 1, U64(10)).ok());  // says 10 bytes, 3 came
  }
  {
    MemorySink sink;
    ImageReceiver r(&sink);
    ASSERT_TRUE(SendFile(r, 1, "core-1.img", "abc").ok());
    EXPECT_FALSE(Feed(r, FrameType::kEnd, 0, "").ok());  // no inventory
  }
  {
    MemorySink sink;
    ImageReceiver r(&sink);
    ASSERT_TRUE(Feed(r, FrameType::kOpen, 1, "core-1.img").ok());
    ASSERT_TRUE(SendFile(r, 2, "inventory.img", "inv").ok());
    EXPECT_FALSE(Feed(r, FrameType::kEnd, 0, "").ok());  // core-1.img still open
  }
  {
    MemorySink sink;
    ImageReceiver r(&sink);
    ASSERT_TRUE(SendFile(r, 1, "inventory.img", "inv").ok());
    EXPECT_FALSE(Feed(r, FrameType::kOpen, 2, "core-1.img").ok());  // after the inventory
  }
  {
    MemorySink sink;
    ImageReceiver r(&sink);
    ASSERT_TRUE(SendFile(r, 1, "core-1.img", "a").ok());
    EXPECT_FALSE(SendFile(r, 2, "core-1.img", "b").ok());  // twice
    EXPECT_FALSE(Feed(r, FrameType::kOpen, 1, "mm-1.img").ok());  // id used before
  }
  {
    MemorySink sink;
    ImageReceiver r(&sink);
    EXPECT_FALSE(Feed(r, FrameType::kAbort, 0, "disk full").ok());
  }
  {
    MemorySink sink;
    ImageReceiver r(&sink);
    ASSERT_TRUE(SendFile(r, 1, "core-1.img", "a").ok());
    EXPECT_FALSE(Feed(r, FrameType::kRound, 0, "1").ok());  // a pre-copy round begins between images only
  }
}

TEST(FrameHeaderTest, RefusesOversizeAndUnknownFrames) {
  uint8_t h[kFrameHeaderSize];
  FrameHeader fh;
  EncodeFrameHeader({static_cast<uint32_t>(FrameType::kData), 1, kMaxPayload}, h);
  EXPECT_TRUE(DecodeFrameHeader(h, &fh).ok());
  EncodeFrameHeader({static_cast<uint32_t>(FrameType::kData), 1, kMaxPayload + 1}, h);
  EXPECT_FALSE(DecodeFrameHeader(h, &fh).ok());
  EncodeFrameHeader({99, 1, 0}, h);
  EXPECT_FALSE(DecodeFrameHeader(h, &fh).ok());
  EncodeFrameHeader({static_cast<uint32_t>(FrameType::kMap), 0, 1}, h);  // the last type there is
  EXPECT_TRUE(DecodeFrameHeader(h, &fh).ok());
  EXPECT_STREQ(FrameTypeName(fh.type), "MAP");
  EncodeFrameHeader({static_cast<uint32_t>(FrameType::kMap) + 1, 0, 0}, h);
  EXPECT_FALSE(DecodeFrameHeader(h, &fh).ok());
  EncodeFrameHeader({1, 0, 0}, h);
  h[12] = 1;
  EXPECT_FALSE(DecodeFrameHeader(h, &fh).ok());
}

TEST(HelloTest, ChecksMagicVersionAndFormat) {
  EXPECT_TRUE(CheckHello(HelloPayload(image::kFormatVersion), image::kFormatVersion).ok());
  EXPECT_FALSE(CheckHello(HelloPayload(image::kFormatVersion + 1), image::kFormatVersion).ok());
  EXPECT_FALSE(CheckHello("GET / HTTP/1.1\r\n\r\n", image::kFormatVersion).ok());
  std::string p = HelloPayload(image::kFormatVersion);
  p[8] = 2;  // protocol version 2
  EXPECT_FALSE(CheckHello(p, image::kFormatVersion).ok());
}

}  // namespace
}  // namespace cryo::stream
