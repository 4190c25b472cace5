// Env: the seam between cryo and the file system it writes images to (after
// LevelDB's Env). Production code uses Env::Default(); tests substitute an Env
// that injects faults (a full disk, a failing fsync) to check that a dump that
// cannot complete leaves the target untouched.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>

#include "base/status.h"

namespace cryo {

class WritableFile {
 public:
  virtual ~WritableFile() = default;
  // Appends n bytes at the current end (handles short writes).
  virtual Status Append(const void* data, size_t n) = 0;
  // Writes n bytes at `offset` without moving the append position.
  virtual Status WriteAt(const void* data, size_t n, off_t offset) = 0;
  // Starts writing [offset, offset + n) back to the disk without waiting for it
  // (sync_file_range(2) SYNC_FILE_RANGE_WRITE), so that a later Sync() has less
  // to do. Durability still comes only from Sync(). Doing nothing is correct.
  virtual Status StartWriteback(off_t offset, size_t n) {
    (void)offset;
    (void)n;
    return Status::Ok();
  }
  // fsync(2).
  virtual Status Sync() = 0;
  virtual Status Close() = 0;
  virtual const std::string& path() const = 0;
};

// A file whose bytes go nowhere: for pages only hashed (an incremental
// dump's comparison) and for files a streamed image leaves out.
class NullWritableFile final : public WritableFile {
 public:
  explicit NullWritableFile(std::string path) : path_(std::move(path)) {}
  Status Append(const void*, size_t) override { return Status::Ok(); }
  Status WriteAt(const void*, size_t, off_t) override { return Status::Ok(); }
  Status Sync() override { return Status::Ok(); }
  Status Close() override { return Status::Ok(); }
  const std::string& path() const override { return path_; }

 private:
  std::string path_;
};

class Env {
 public:
  virtual ~Env() = default;
  static Env* Default();

  // Creates (truncating) a file with `mode`.
  virtual Result<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path, mode_t mode) = 0;
  // Creates a directory (ok if it exists) and forces its mode.
  virtual Status CreateDir(const std::string& path, mode_t mode) = 0;
  // fsync(2) on a directory so that new entries are durable.
  virtual Status SyncDir(const std::string& path) = 0;
  // unlink(2); a file already gone is fine.
  virtual Status RemoveFile(const std::string& path);
  // rmdir(2) of an empty directory.
  virtual Status RemoveDir(const std::string& path);
  // The image in `dir` is complete: every file written, synced and closed,
  // the directory synced. A local image is durable by then (nothing to do);
  // a streamed one (stream/stream_env.h) asks its receiver to make it durable
  // and waits for the acknowledgement. A dump kills its tree only after this.
  virtual Status Commit(const std::string& dir) {
    (void)dir;
    return Status::Ok();
  }
};

}  // namespace cryo
