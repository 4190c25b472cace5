#include "stream/stream_env.h"

#include <algorithm>

#include "base/interrupt.h"
#include "image/format.h"

namespace cryo::stream {

class StreamFile final : public WritableFile {
 public:
  StreamFile(StreamEnv* env, uint32_t id, std::string path) : env_(env), id_(id), path_(std::move(path)) {}
  ~StreamFile() override { (void)Close(); }
  Status Append(const void* data, size_t n) override { return WriteAt(data, n, static_cast<off_t>(pos_)); }
  Status WriteAt(const void* data, size_t n, off_t offset) override {
    if (closed_) return Status::Error(path_ + ": written after close");
    const char* p = static_cast<const char*>(data);
    uint64_t off = static_cast<uint64_t>(offset);
    while (n > 0) {
      const size_t chunk = std::min<size_t>(n, kMaxChunk);
      std::string prefix;
      PutU64(&prefix, off);
      CRYO_RETURN_IF_ERROR(env_->conn_->Send(FrameType::kData, id_, prefix, std::string_view(p, chunk)));
      env_->bytes_ += chunk;
      p += chunk;
      off += chunk;
      n -= chunk;
    }
    end_ = std::max(end_, off);
    if (static_cast<uint64_t>(offset) == pos_) pos_ = off;
    return Status::Ok();
  }
  // Durability is the receiver's: it syncs everything before its ACK.
  Status Sync() override { return Status::Ok(); }
  Status Close() override {
    if (closed_) return Status::Ok();
    closed_ = true;
    FaultPoint();  // (the tests kill the sender between files)
    std::string size;
    PutU64(&size, end_);
    return env_->conn_->Send(FrameType::kClose, id_, size);
  }
  const std::string& path() const override { return path_; }

 private:
  StreamEnv* env_;
  uint32_t id_;
  std::string path_;
  uint64_t pos_ = 0, end_ = 0;
  bool closed_ = false;
};

namespace {

// The incomplete-image marker is no part of a streamed image: the receiver's
// directory is incomplete until it is renamed into place.
class DroppedFile final : public WritableFile {
 public:
  explicit DroppedFile(std::string path) : path_(std::move(path)) {}
  Status Append(const void*, size_t) override { return Status::Ok(); }
  Status WriteAt(const void*, size_t, off_t) override { return Status::Ok(); }
  Status Sync() override { return Status::Ok(); }
  Status Close() override { return Status::Ok(); }
  const std::string& path() const override { return path_; }

 private:
  std::string path_;
};

}  // namespace

Result<std::unique_ptr<Connection>> StreamEnv::Open(const std::string& addr, double timeout_s) {
  CRYO_ASSIGN_OR_RETURN(auto conn, Connection::Connect(addr, timeout_s));
  CRYO_RETURN_IF_ERROR(conn->Send(FrameType::kHello, 0, HelloPayload(image::kFormatVersion)));
  CRYO_ASSIGN_OR_RETURN(Frame f, conn->Receive(timeout_s));
  if (f.type() == FrameType::kError) return Status::Error("the page server " + addr + " refused: " + f.payload);
  if (f.type() != FrameType::kHello)
    return Status::Error(std::string("the page server ") + addr + " answered " + FrameTypeName(f.header.type));
  CRYO_RETURN_IF_ERROR(CheckHello(f.payload, image::kFormatVersion).Prefixed("page server " + addr));
  return conn;
}

Result<std::unique_ptr<WritableFile>> StreamEnv::NewWritableFile(const std::string& path, mode_t) {
  const std::string name = path.substr(path.rfind('/') + 1);
  if (name == image::IncompleteMarkerName()) return std::unique_ptr<WritableFile>(new DroppedFile(path));
  const uint32_t id = next_id_++;
  CRYO_RETURN_IF_ERROR(conn_->Send(FrameType::kOpen, id, name));
  return std::unique_ptr<WritableFile>(new StreamFile(this, id, path));
}

Status StreamEnv::Commit(const std::string&) {
  FaultPoint();
  CRYO_RETURN_IF_ERROR(conn_->Send(FrameType::kEnd, 0, {}));
  Result<Frame> f = conn_->Receive(kAckTimeoutSeconds);
  if (!f.ok()) return f.status().Prefixed("waiting for the page server's acknowledgement");
  if (f->type() == FrameType::kError)
    return Status::Error("the page server " + conn_->peer() + " refused the image: " + f->payload);
  if (f->type() != FrameType::kAck)
    return Status::Error(std::string("the page server answered END with ") + FrameTypeName(f->header.type));
  remote_dir_ = f->payload;
  FaultPoint();
  return Status::Ok();
}

void StreamEnv::Abort(const std::string& why) {
  (void)conn_->Send(FrameType::kAbort, 0, why.substr(0, 4096));
  conn_->CloseGracefully(1);
}

}  // namespace cryo::stream
