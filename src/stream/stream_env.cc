#include "stream/stream_env.h"

#include <zstd.h>

#include <algorithm>

#include "base/interrupt.h"
#include "image/format.h"
#include "image/page_frames.h"

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
      CRYO_RETURN_IF_ERROR(SendChunk(off, std::string_view(p, chunk)));
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
  // One DATA frame, or DATA_ZSTD when that is smaller (zero pages, text...).
  Status SendChunk(uint64_t off, std::string_view bytes) {
    std::string prefix;
    PutU64(&prefix, off);
    if (env_->zstd_level_ > 0) {
      // One context and buffer per sending thread (the writer's and the dump's).
      thread_local std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> cctx(ZSTD_createCCtx(), ZSTD_freeCCtx);
      thread_local std::string packed;
      packed.resize(ZSTD_compressBound(bytes.size()));
      const size_t n = cctx ? ZSTD_compressCCtx(cctx.get(), packed.data(), packed.size(), bytes.data(), bytes.size(),
                                                env_->zstd_level_)
                            : 0;
      // Smaller with its 4-byte length than the bytes: a frame within kMaxPayload.
      if (cctx && !ZSTD_isError(n) && n + 4 < bytes.size()) {
        PutU32(&prefix, static_cast<uint32_t>(bytes.size()));
        env_->wire_bytes_ += n;
        return env_->conn_->Send(FrameType::kDataZstd, id_, prefix, std::string_view(packed.data(), n));
      }
    }
    env_->wire_bytes_ += bytes.size();
    return env_->conn_->Send(FrameType::kData, id_, prefix, bytes);
  }
  StreamEnv* env_;
  uint32_t id_;
  std::string path_;
  uint64_t pos_ = 0, end_ = 0;
  bool closed_ = false;
};

Result<int> ParseCompression(const std::string& text) {
  // The spellings of the image's --compress (image/page_frames.h), zstd only.
  Result<image::Compression> c = image::ParseCompression(text, /*default_zstd_level=*/1);
  if (c.ok() && c->codec != image::Codec::kLz4) return c->codec == image::Codec::kZstd ? c->level : 0;
  return Status::Error("--compress " + text + ": give zstd, zstd:LEVEL (1 to 19) or none");
}

Result<std::unique_ptr<Connection>> StreamEnv::Open(const std::string& addr, double timeout_s,
                                                    const TlsOptions& tls, bool migrate, bool post_copy) {
  std::shared_ptr<TlsContext> ctx;
  if (tls.enabled()) {
    CRYO_ASSIGN_OR_RETURN(ctx, TlsContext::Create(tls, /*server=*/false));
  }
  CRYO_ASSIGN_OR_RETURN(auto conn, Connection::Connect(addr, timeout_s, ctx));
  CRYO_RETURN_IF_ERROR(conn->Send(FrameType::kHello, 0, HelloPayload(image::kFormatVersion)));
  Result<Frame> answer = conn->Receive(timeout_s);
  if (!answer.ok() && !conn->encrypted())
    return answer.status().Prefixed("no HELLO from the page server (if it uses TLS, give this side the same --tls-* "
                                    "options)");
  CRYO_ASSIGN_OR_RETURN(Frame f, std::move(answer));
  if (f.type() == FrameType::kError) return Status::Error("the page server " + addr + " refused: " + f.payload);
  if (f.type() != FrameType::kHello)
    return Status::Error(std::string("the page server ") + addr + " answered " + FrameTypeName(f.header.type));
  CRYO_RETURN_IF_ERROR(CheckHello(f.payload, image::kFormatVersion).Prefixed("page server " + addr));
  if (migrate) CRYO_RETURN_IF_ERROR(conn->Send(post_copy ? FrameType::kPostCopy : FrameType::kMigrate, 0, {}));
  return conn;
}

Result<std::unique_ptr<WritableFile>> StreamEnv::NewWritableFile(const std::string& path, mode_t) {
  const std::string name = path.substr(path.rfind('/') + 1);
  // The incomplete-image marker is no part of a streamed image: the receiver's
  // directory is incomplete until it is renamed into place.
  if (name == image::IncompleteMarkerName()) return std::unique_ptr<WritableFile>(new NullWritableFile(path));
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

Status StreamEnv::BeginRound(int round) { return conn_->Send(FrameType::kRound, 0, std::to_string(round)); }

Result<pid_t> StreamEnv::ConfirmKilled() {
  CRYO_RETURN_IF_ERROR(conn_->Send(FrameType::kKilled, 0, {}));
  Result<Frame> f = conn_->Receive(kAckTimeoutSeconds);
  if (!f.ok()) return f.status().Prefixed("waiting for the page server's restore");
  if (f->type() == FrameType::kError) return Status::Error("the page server " + conn_->peer() + ": " + f->payload);
  if (f->type() != FrameType::kRestored)
    return Status::Error(std::string("the page server answered KILLED with ") + FrameTypeName(f->header.type));
  const std::string& p = f->payload;
  if (p.empty() || p.size() > 9 || p.find_first_not_of("0123456789") != std::string::npos)
    return Status::Error("the page server said RESTORED without a pid");
  return static_cast<pid_t>(std::stol(p));
}

void StreamEnv::Abort(const std::string& why) {
  (void)conn_->Send(FrameType::kAbort, 0, why.substr(0, 4096));
  conn_->CloseGracefully(1);
}

}  // namespace cryo::stream
