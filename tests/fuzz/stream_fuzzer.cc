// libFuzzer target: the page server's side of a stream (src/stream/protocol.h).
// The input is the bytes a sender would send after HELLO: frames are decoded
// one after the other and fed to ImageReceiver, whose sink checks that every
// write it is asked for lies within the bounds the receiver promised. The
// first refusal ends the input, as it ends a connection.
#include <cstdint>
#include <cstring>
#include <map>
#include <string>

#include "image/format.h"
#include "stream/protocol.h"

namespace {

using cryo::Status;
using namespace cryo::stream;

struct CheckingSink : FileSink {
  std::map<uint32_t, std::string> open;
  Status Create(uint32_t id, const std::string& name) override {
    if (!cryo::image::IsImageFileName(name) || open.count(id)) __builtin_trap();
    open[id] = name;
    return Status::Ok();
  }
  Status Write(uint32_t id, uint64_t offset, std::string_view data) override {
    auto it = open.find(id);
    if (it == open.end()) __builtin_trap();
    const uint64_t max = cryo::image::MaxImageFileBytes(it->second);
    if (data.empty() || data.size() > kMaxChunk || offset > max || data.size() > max - offset) __builtin_trap();
    return Status::Ok();
  }
  Status Finish(uint32_t id, uint64_t) override {
    if (!open.erase(id)) __builtin_trap();
    return Status::Ok();
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  CheckingSink sink;
  ImageReceiver receiver(&sink);
  size_t pos = 0;
  while (size - pos >= kFrameHeaderSize) {
    FrameHeader h;
    if (!DecodeFrameHeader(data + pos, &h).ok()) return 0;
    pos += kFrameHeaderSize;
    if (h.length > size - pos) return 0;  // truncated: the connection would end here
    std::string_view payload(reinterpret_cast<const char*>(data + pos), h.length);
    pos += h.length;
    if (!receiver.OnFrame(h, payload).ok()) return 0;
    if (receiver.ended() && !sink.open.empty()) __builtin_trap();
  }
  return 0;
}
