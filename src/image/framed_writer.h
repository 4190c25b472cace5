// Writing a compressed page file (page_frames.h): the page dump writes its
// page data as to a raw page file (in order, from offset 4096 on); this file
// cuts it into chunks, has a small pool of threads (one per core) compress
// them as independent frames while the dump goes on reading pages, writes the
// frames in order to the real file, and at Finish the frame index and the
// header block.
#pragma once

#include <algorithm>
#include <condition_variable>
#include <functional>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/env.h"
#include "image/page_frames.h"

namespace cryo::image {

class FramedPageFile final : public WritableFile {
 public:
  // `workers`: compressing threads (0: compress on the writing thread).
  FramedPageFile(std::unique_ptr<WritableFile> out, Compression c, int workers,
                 uint32_t chunk_bytes = kDefaultChunkBytes);
  ~FramedPageFile() override;

  // Page data, in order: `offset` must be where the previous write ended
  // (4096 for the first).
  Status Append(const void* data, size_t n) override;
  Status WriteAt(const void* data, size_t n, off_t offset) override;
  Status Sync() override { return out_->Sync(); }
  Status Close() override { return out_->Close(); }
  const std::string& path() const override { return out_->path(); }

  // Every frame written, then the index; `header` (the 48-byte file header,
  // whose payload_hash must be the index's hash: set by `fill_header`) and the
  // descriptor at offset 0. Returns the file's size.
  Result<uint64_t> Finish(const std::function<void(uint64_t payload, uint64_t index_hash, uint8_t* hdr)>& fill_header);
  // The underlying file, once finished.
  std::unique_ptr<WritableFile> Release() { return std::move(out_); }
  uint64_t payload_bytes() const { return logical_; }

 private:
  struct Job {
    std::string in;
    std::string out;
    FrameMethod method = FrameMethod::kStored;
    uint64_t hash = 0;  // of `out`, taken by the thread that compressed it
    bool done = false;
  };
  void Submit();
  Status WriteReady(bool wait_all);
  void WorkerLoop();

  std::unique_ptr<WritableFile> out_;
  Compression compression_;
  uint32_t chunk_bytes_;
  int max_workers_;
  std::vector<std::thread> workers_;
  std::string current_;     // the chunk being filled
  uint64_t logical_ = 0;    // page data bytes received
  uint64_t physical_ = 0;   // next frame's offset in the file
  std::vector<FrameEntry> entries_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> in_order_;  // submitted, not yet written
  std::deque<std::shared_ptr<Job>> todo_;      // not yet taken by a worker
  bool stop_ = false;
};

}  // namespace cryo::image
