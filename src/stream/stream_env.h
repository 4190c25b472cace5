// StreamEnv: the Env of `cryo dump --to ADDR:PORT`. Nothing is written on
// the source: every file the image writer creates is sent to the page server
// as frames (protocol.h) as it is written; the directory operations do
// nothing here (the receiver writes into a directory of its own and throws it
// away whole if the stream breaks). Commit() sends END and waits for the
// receiver's ACK that the image is durable under its final name: the dump
// kills its tree only after that.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "base/env.h"
#include "stream/connection.h"

namespace cryo::stream {

// How long the sender waits for the ACK after END: the receiver syncs and
// validates the whole image first.
inline constexpr double kAckTimeoutSeconds = 600;

// `--compress zstd[:LEVEL]|none`: the zstd level, 0 for none.
Result<int> ParseCompression(const std::string& text);

class StreamEnv final : public Env {
 public:
  explicit StreamEnv(Connection* conn) : conn_(conn) {}
  // Connects to `addr` (with TLS when `tls` is enabled) and says HELLO; the
  // receiver must answer HELLO.
  // `migrate`: says MIGRATE too (the receiver must run with --restore);
  // with `post_copy`, POSTCOPY instead (cryo migrate --lazy).
  static Result<std::unique_ptr<Connection>> Open(const std::string& addr, double timeout_s, const TlsOptions& tls,
                                                  bool migrate = false, bool post_copy = false);

  Result<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path, mode_t mode) override;
  Status CreateDir(const std::string&, mode_t) override { return Status::Ok(); }
  Status SyncDir(const std::string&) override { return Status::Ok(); }
  Status RemoveFile(const std::string&) override { return Status::Ok(); }
  Status RemoveDir(const std::string&) override { return Status::Ok(); }
  Status Commit(const std::string& dir) override;
  // The dump failed: tells the receiver (best effort), which removes what it
  // received.
  void Abort(const std::string& why);
  // A pre-copy round's image comes next (ROUND): the receiver puts it in
  // pre-copy/N of its directory.
  Status BeginRound(int round);
  // `cryo migrate`, once the tree is killed (after the ACK): says KILLED and
  // waits for the receiver's restore; its root's pid there.
  Result<pid_t> ConfirmKilled();
  // Where the receiver put the image (its ACK), once committed.
  const std::string& remote_dir() const { return remote_dir_; }
  uint64_t bytes_sent() const { return bytes_; }
  // DATA compressed with zstd at `level` (DATA_ZSTD frames; 0: none).
  void set_zstd_level(int level) { zstd_level_ = level; }
  int zstd_level() const { return zstd_level_; }
  // The bytes of file data as sent (after compression).
  uint64_t data_bytes_on_wire() const { return wire_bytes_; }

 private:
  friend class StreamFile;
  Connection* conn_;
  std::atomic<uint32_t> next_id_{1};
  std::atomic<uint64_t> bytes_{0};
  std::atomic<uint64_t> wire_bytes_{0};
  int zstd_level_ = 0;
  std::string remote_dir_;
};

}  // namespace cryo::stream
