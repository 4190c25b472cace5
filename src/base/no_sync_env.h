// NoSyncEnv: the Env of `cryo dump --no-sync`. It forwards everything to
// another Env but makes nothing durable: Sync(), StartWriteback() and
// SyncDir() do nothing, so the image stays in the page cache and reaches the
// disk whenever the kernel writes it back. A crash or power loss before that
// loses the image (and, in kill mode, the process with it).
#pragma once

#include <memory>
#include <string>

#include "base/env.h"

namespace cryo {

class NoSyncEnv final : public Env {
 public:
  explicit NoSyncEnv(Env* base) : base_(base) {}

  Result<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path, mode_t mode) override;
  Status CreateDir(const std::string& path, mode_t mode) override { return base_->CreateDir(path, mode); }
  Status SyncDir(const std::string&) override { return Status::Ok(); }
  Status RemoveFile(const std::string& path) override { return base_->RemoveFile(path); }
  Status RemoveDir(const std::string& path) override { return base_->RemoveDir(path); }
  Status Commit(const std::string& dir) override { return base_->Commit(dir); }

 private:
  Env* base_;
};

}  // namespace cryo
