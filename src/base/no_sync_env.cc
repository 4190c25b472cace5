#include "base/no_sync_env.h"

namespace cryo {
namespace {

class NoSyncFile final : public WritableFile {
 public:
  explicit NoSyncFile(std::unique_ptr<WritableFile> file) : file_(std::move(file)) {}
  Status Append(const void* data, size_t n) override { return file_->Append(data, n); }
  Status WriteAt(const void* data, size_t n, off_t offset) override { return file_->WriteAt(data, n, offset); }
  // No writeback started either: the bytes stay in the page cache, as after a
  // plain write(2).
  Status StartWriteback(off_t, size_t) override { return Status::Ok(); }
  Status Sync() override { return Status::Ok(); }
  Status Close() override { return file_->Close(); }
  const std::string& path() const override { return file_->path(); }

 private:
  std::unique_ptr<WritableFile> file_;
};

}  // namespace

Result<std::unique_ptr<WritableFile>> NoSyncEnv::NewWritableFile(const std::string& path, mode_t mode) {
  CRYO_ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> file, base_->NewWritableFile(path, mode));
  return std::unique_ptr<WritableFile>(new NoSyncFile(std::move(file)));
}

}  // namespace cryo
