// CountingEnv: the Env a dump writes through from the command line, so that
// its success line can say how big the image is. It forwards everything to
// another Env and counts, per file, the bytes up to the end of what was
// written (page data is written at offsets).
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "base/env.h"

namespace cryo::cli {

class CountingEnv final : public Env {
 public:
  explicit CountingEnv(Env* base) : base_(base) {}

  Result<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path, mode_t mode) override;
  Status CreateDir(const std::string& path, mode_t mode) override { return base_->CreateDir(path, mode); }
  Status SyncDir(const std::string& path) override { return base_->SyncDir(path); }
  Status RemoveFile(const std::string& path) override { return base_->RemoveFile(path); }
  Status RemoveDir(const std::string& path) override { return base_->RemoveDir(path); }
  Status Commit(const std::string& dir) override { return base_->Commit(dir); }

  // Bytes of every file created through this Env that still exists (a file
  // created again counts with its last content).
  uint64_t BytesWritten() const;

 private:
  Env* base_;
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<std::atomic<uint64_t>>> sizes_;
};

}  // namespace cryo::cli
