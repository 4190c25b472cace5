#include "image/framed_writer.h"

#include <cstring>
#include <system_error>

namespace cryo::image {

FramedPageFile::FramedPageFile(std::unique_ptr<WritableFile> out, Compression c, int workers, uint32_t chunk_bytes)
    : out_(std::move(out)), compression_(c), chunk_bytes_(chunk_bytes), max_workers_(workers),
      physical_(kPageDataOffset) {
  current_.reserve(chunk_bytes_);
}

FramedPageFile::~FramedPageFile() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    cv_.notify_all();
  }
  for (std::thread& t : workers_) t.join();
}

Status FramedPageFile::Append(const void* data, size_t n) {
  return WriteAt(data, n, static_cast<off_t>(kPageDataOffset + logical_));
}

Status FramedPageFile::WriteAt(const void* data, size_t n, off_t offset) {
  if (static_cast<uint64_t>(offset) != kPageDataOffset + logical_)
    return Status::Error(path() + ": internal: compressed page data written out of order (at " +
                         std::to_string(offset) + ", expected " + std::to_string(kPageDataOffset + logical_) + ")");
  const char* p = static_cast<const char*>(data);
  while (n) {
    const size_t take = std::min<size_t>(n, chunk_bytes_ - current_.size());
    current_.append(p, take);
    p += take;
    n -= take;
    logical_ += take;
    if (current_.size() == chunk_bytes_) {
      Submit();
      CRYO_RETURN_IF_ERROR(WriteReady(false));
    }
  }
  return Status::Ok();
}

void FramedPageFile::Submit() {
  auto job = std::make_shared<Job>();
  job->in.swap(current_);
  current_.reserve(chunk_bytes_);
  std::unique_lock<std::mutex> lock(mu_);
  if (workers_.size() < static_cast<size_t>(max_workers_)) {
    try {
      workers_.emplace_back(&FramedPageFile::WorkerLoop, this);
    } catch (const std::system_error&) {
      max_workers_ = static_cast<int>(workers_.size());  // fewer threads (or none: inline below)
    }
  }
  in_order_.push_back(job);
  if (workers_.empty()) {
    lock.unlock();
    job->method = CompressChunk(compression_, job->in.data(), job->in.size(), &job->out);
    job->hash = HashBytes(job->out.data(), job->out.size());
    job->in.clear();
    job->done = true;
    return;
  }
  todo_.push_back(job);
  cv_.notify_all();
}

void FramedPageFile::WorkerLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stop_ || !todo_.empty(); });
    if (stop_) return;
    std::shared_ptr<Job> job = std::move(todo_.front());
    todo_.pop_front();
    lock.unlock();
    std::string out;
    const FrameMethod m = CompressChunk(compression_, job->in.data(), job->in.size(), &out);
    const uint64_t hash = HashBytes(out.data(), out.size());
    lock.lock();
    job->out.swap(out);
    job->method = m;
    job->hash = hash;
    job->in.clear();
    job->in.shrink_to_fit();
    job->done = true;
    cv_.notify_all();
  }
}

// Writes the finished frames at the head of the queue; waits for the head
// while more than two frames per worker are queued (bounded memory), or for
// every frame with `wait_all`.
Status FramedPageFile::WriteReady(bool wait_all) {
  const size_t max_queued = 2 * static_cast<size_t>(std::max(max_workers_, 1));
  for (;;) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (in_order_.empty()) return Status::Ok();
      if (wait_all || in_order_.size() > max_queued) cv_.wait(lock, [&] { return in_order_.front()->done; });
      if (!in_order_.front()->done) return Status::Ok();
      job = std::move(in_order_.front());
      in_order_.pop_front();
    }
    FrameEntry e;
    e.file_offset = physical_;
    e.stored_bytes = static_cast<uint32_t>(job->out.size());
    e.method = job->method;
    e.hash = job->hash;
    CRYO_RETURN_IF_ERROR(out_->WriteAt(job->out.data(), job->out.size(), static_cast<off_t>(physical_)));
    CRYO_RETURN_IF_ERROR(out_->StartWriteback(static_cast<off_t>(physical_), job->out.size()));
    physical_ += job->out.size();
    entries_.push_back(e);
  }
}

Result<uint64_t> FramedPageFile::Finish(
    const std::function<void(uint64_t payload, uint64_t index_hash, uint8_t* hdr)>& fill_header) {
  if (!current_.empty()) Submit();
  CRYO_RETURN_IF_ERROR(WriteReady(true));
  std::string index(entries_.size() * kFrameEntrySize, '\0');
  for (size_t i = 0; i < entries_.size(); ++i)
    EncodeEntry(entries_[i], reinterpret_cast<uint8_t*>(index.data()) + i * kFrameEntrySize);
  const uint64_t index_offset = physical_;
  if (!index.empty()) CRYO_RETURN_IF_ERROR(out_->WriteAt(index.data(), index.size(), static_cast<off_t>(index_offset)));
  uint8_t block[kPageDataOffset] = {};
  fill_header(logical_, HashBytes(index.data(), index.size()), block);
  FrameDescriptor d;
  d.codec = compression_.codec;
  d.level = static_cast<uint32_t>(compression_.level);
  d.chunk_bytes = chunk_bytes_;
  d.frame_count = entries_.size();
  d.index_offset = index_offset;
  EncodeDescriptor(d, block + kDescriptorOffset);
  CRYO_RETURN_IF_ERROR(out_->WriteAt(block, sizeof(block), 0));
  return index_offset + index.size();
}

}  // namespace cryo::image
