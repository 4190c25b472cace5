#include "cli/counting_env.h"

#include <unistd.h>

#include "base/local_file.h"

namespace cryo::cli {
namespace {

class CountingFile final : public WritableFile, public LocalFile {
 public:
  CountingFile(std::unique_ptr<WritableFile> file, std::shared_ptr<std::atomic<uint64_t>> size)
      : file_(std::move(file)), size_(std::move(size)) {}
  Status Append(const void* data, size_t n) override {
    CRYO_RETURN_IF_ERROR(file_->Append(data, n));
    appended_ += n;
    Grow(appended_);
    return Status::Ok();
  }
  Status WriteAt(const void* data, size_t n, off_t offset) override {
    CRYO_RETURN_IF_ERROR(file_->WriteAt(data, n, offset));
    Grow(static_cast<uint64_t>(offset) + n);
    return Status::Ok();
  }
  Status StartWriteback(off_t offset, size_t n) override { return file_->StartWriteback(offset, n); }
  Status Sync() override { return file_->Sync(); }
  Status Close() override { return file_->Close(); }
  const std::string& path() const override { return file_->path(); }
  // The file underneath, if local: direct page writes go past this wrapper
  // and are counted through WrittenElsewhere.
  int local_fd() const override {
    const LocalFile* local = AsLocalFile(file_.get());
    return local ? local->local_fd() : -1;
  }
  void WrittenElsewhere(off_t offset, size_t n) override {
    if (LocalFile* local = AsLocalFile(file_.get())) local->WrittenElsewhere(offset, n);
    Grow(static_cast<uint64_t>(offset) + n);
  }

 private:
  // The size is the end of the furthest write (page files are written at
  // offsets, from several threads).
  void Grow(uint64_t end) {
    uint64_t cur = size_->load();
    while (end > cur && !size_->compare_exchange_weak(cur, end)) {
    }
  }
  std::unique_ptr<WritableFile> file_;
  std::shared_ptr<std::atomic<uint64_t>> size_;
  uint64_t appended_ = 0;
};

}  // namespace

Result<std::unique_ptr<WritableFile>> CountingEnv::NewWritableFile(const std::string& path, mode_t mode) {
  CRYO_ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> file, base_->NewWritableFile(path, mode));
  auto size = std::make_shared<std::atomic<uint64_t>>(0);
  {
    std::lock_guard<std::mutex> lock(mu_);
    sizes_[path] = size;
  }
  return std::unique_ptr<WritableFile>(new CountingFile(std::move(file), std::move(size)));
}

uint64_t CountingEnv::BytesWritten() const {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t total = 0;
  // A file the dump removed again (a marker, say) is not part of the image.
  for (const auto& [path, size] : sizes_)
    if (::access(path.c_str(), F_OK) == 0) total += size->load();
  return total;
}

}  // namespace cryo::cli
