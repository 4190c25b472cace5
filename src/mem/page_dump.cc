// The page copy of a dump (page_dump.h): the ring of buffers between the
// thread reading the target and the writer thread (CopyPages), and the run
// checksums. What to copy: page_plan.cc; reading a process: process_page_source.cc.
#include "mem/page_dump.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <mutex>
#include <system_error>
#include <thread>

#include "base/clock.h"
#include "base/interrupt.h"
#include "base/log.h"
#include "base/size_format.h"
#include "image/format.h"
#include "mem/direct_write.h"

namespace cryo {

namespace {

constexpr uint64_t kPage = image::kPageSize;
constexpr uint64_t kHugePage = 2ull << 20;

std::string Hex(uint64_t v) {
  char buf[24];
  snprintf(buf, sizeof(buf), "0x%" PRIx64, v);
  return buf;
}

// Sets the checksum of each page run as the run's bytes stream past, in file
// order (a run may straddle two buffers).
class RunHasher {
 public:
  explicit RunHasher(image::Mm* mm) : mm_(mm) {}
  void Feed(const char* data, uint64_t n) {
    while (n > 0) {
      image::PageRun& run = *mm_->mutable_runs(next_);
      const uint64_t run_bytes = run.npages() * kPage;
      if (fed_ == 0 && n >= run_bytes) {  // the whole run at hand: one shot
        run.set_checksum(image::HashBytes(data, run_bytes));
        Advance(data, n, run_bytes);
        continue;
      }
      if (fed_ == 0) hash_.Reset();
      const uint64_t take = std::min(n, run_bytes - fed_);
      hash_.Update(data, take);
      fed_ += take;
      if (fed_ == run_bytes) {
        run.set_checksum(hash_.Digest());
        fed_ = 0;
        Advance(data, n, take);
      } else {
        data += take;
        n -= take;
      }
    }
  }

 private:
  void Advance(const char*& data, uint64_t& n, uint64_t by) {
    data += by;
    n -= by;
    ++next_;
  }
  image::Mm* mm_;
  int next_ = 0;
  uint64_t fed_ = 0;  // bytes of run next_ hashed so far
  image::StreamHash hash_;
};

// The buffers of the ring: anonymous memory, aligned so that it can be backed
// by transparent huge pages (fewer first-touch faults).
class Buffers {
 public:
  ~Buffers() {
    if (base_ != nullptr) ::munmap(base_, map_len_);
  }
  Status Allocate(size_t count, size_t each) {
    each_ = each;
    map_len_ = count * each + kHugePage;
    void* m = ::mmap(nullptr, map_len_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return Status::FromErrno("mmap of " + std::to_string(map_len_ >> 10) + " KiB of page buffers");
    base_ = static_cast<char*>(m);
    const uint64_t addr = reinterpret_cast<uint64_t>(base_);
    aligned_ = base_ + ((addr + kHugePage - 1) / kHugePage * kHugePage - addr);
    (void)::madvise(aligned_, count * each, MADV_HUGEPAGE);  // a hint: fine if THP is off
    return Status::Ok();
  }
  char* operator[](size_t i) const { return aligned_ + i * each_; }

 private:
  char* base_ = nullptr;
  char* aligned_ = nullptr;
  size_t map_len_ = 0;
  size_t each_ = 0;
};

// One filled buffer on its way to the file.
struct Filled {
  size_t buffer;
  uint64_t file_off;
  uint64_t len;
};

// The hand-over between the reading thread and the writer thread.
class Ring {
 public:
  explicit Ring(size_t buffers) {
    for (size_t i = 0; i < buffers; ++i) free_.push_back(i);
  }

  // Reader: the next free buffer, or the writer's error. *written is updated
  // with the bytes written so far.
  Result<size_t> TakeFree(uint64_t* written) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return !free_.empty() || !write_error_.ok(); });
    *written = written_;
    if (!write_error_.ok()) return write_error_;
    const size_t b = free_.front();
    free_.pop_front();
    return b;
  }
  void PushFilled(const Filled& f) {
    std::lock_guard<std::mutex> lock(mu_);
    filled_.push_back(f);
    cv_.notify_all();
  }
  // Reader: no more buffers will come (done, or failed: then the writer stops
  // without writing what is queued).
  void Close(bool failed) {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    abandoned_ = failed;
    cv_.notify_all();
  }
  // Writer: the next buffer to write; false when there is none left.
  bool TakeFilled(Filled* f) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return !filled_.empty() || closed_; });
    if (abandoned_ || filled_.empty()) return false;
    *f = filled_.front();
    filled_.pop_front();
    return true;
  }
  void Written(const Filled& f, Status s) {
    std::lock_guard<std::mutex> lock(mu_);
    if (s.ok()) {
      written_ += f.len;
      free_.push_back(f.buffer);
    } else {
      write_error_ = std::move(s);
    }
    cv_.notify_all();
  }
  Status write_error() {
    std::lock_guard<std::mutex> lock(mu_);
    return write_error_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<size_t> free_;
  std::deque<Filled> filled_;
  bool closed_ = false;
  bool abandoned_ = false;
  uint64_t written_ = 0;
  Status write_error_;
};

// Seconds spent in each step (for the debug log).
struct CopyTimes {
  double read = 0, hash = 0, wait = 0, write = 0, writeback = 0;
};

// Where filled buffers go: the file, or past the page cache (direct_write.h).
struct PageSink {
  WritableFile* file;
  DirectPageWriter* direct;
};

Status WriteBuffer(const PageSink& out, const char* data, const Filled& f, CopyTimes* t) {
  const double t0 = Now();
  if (out.direct->valid()) {  // on the disk when it returns: no writeback to start
    Status s = out.direct->WriteAt(data, f.len, static_cast<off_t>(f.file_off));
    if (s.err() != EINVAL) {
      t->write += Now() - t0;
      return s;
    }
    // An alignment the file system did not report: this buffer and the rest
    // through the page cache (what was written directly stays valid).
    LOG_DEBUG("%s; writing through the page cache from offset %" PRIu64, s.ToString().c_str(), f.file_off);
    out.direct->Close();
  }
  WritableFile* file = out.file;
  CRYO_RETURN_IF_ERROR(file->WriteAt(data, f.len, static_cast<off_t>(f.file_off)));
  const double t1 = Now();
  Status s = file->StartWriteback(static_cast<off_t>(f.file_off), f.len);
  t->write += t1 - t0;
  t->writeback += Now() - t1;
  return s;
}

void WriterLoop(Ring* ring, const Buffers* buffers, PageSink out, CopyTimes* t) {
  Filled f;
  while (ring->TakeFilled(&f)) {
    Status s = WriteBuffer(out, (*buffers)[f.buffer], f, t);
    const bool failed = !s.ok();
    ring->Written(f, std::move(s));
    if (failed) return;
  }
}

// Cuts the pieces into buffer-sized chunks, in order.
class Chunker {
 public:
  Chunker(const std::vector<PagePiece>& pieces, uint64_t chunk_bytes) : pieces_(pieces), chunk_bytes_(chunk_bytes) {}
  bool done() const { return next_ == pieces_.size(); }
  // The next chunk's pieces (parts of pieces where one straddles two chunks).
  const std::vector<PagePiece>& Next(Filled* f) {
    chunk_.clear();
    f->file_off = pieces_[next_].file_off + consumed_;
    f->len = 0;
    while (next_ < pieces_.size() && f->len < chunk_bytes_) {
      const PagePiece& p = pieces_[next_];
      const uint64_t take = std::min(p.len - consumed_, chunk_bytes_ - f->len);
      chunk_.push_back({p.vaddr + consumed_, take, p.file_off + consumed_, p.readable});
      f->len += take;
      consumed_ += take;
      if (consumed_ == p.len) {
        consumed_ = 0;
        ++next_;
      }
    }
    return chunk_;
  }

 private:
  const std::vector<PagePiece>& pieces_;
  const uint64_t chunk_bytes_;
  size_t next_ = 0;
  uint64_t consumed_ = 0;
  std::vector<PagePiece> chunk_;
};

// The pieces must cover mm's runs exactly, contiguously in file order.
Status CheckLayout(const std::vector<PagePiece>& pieces, const image::Mm& mm, uint64_t* total) {
  uint64_t off = image::kPageDataOffset;
  for (const PagePiece& p : pieces) {
    if (p.file_off != off || p.len == 0 || p.len % kPage != 0)
      return Status::Error("internal: page piece at " + Hex(p.vaddr) + " is not laid out contiguously");
    off += p.len;
  }
  uint64_t run_off = image::kPageDataOffset;
  for (const image::PageRun& r : mm.runs()) {
    if (r.offset() != run_off) return Status::Error("internal: page run at " + Hex(r.vaddr()) + " is out of order");
    run_off += r.npages() * kPage;
  }
  if (run_off != off) return Status::Error("internal: page pieces and page runs differ in size");
  *total = off - image::kPageDataOffset;
  return Status::Ok();
}

}  // namespace

Status CopyPages(PageSource& src, const std::vector<PagePiece>& pieces, image::Mm* mm, WritableFile* file,
                 const ProgressFn& progress, const PageCopyOptions& opts) {
  uint64_t total = 0;
  CRYO_RETURN_IF_ERROR(CheckLayout(pieces, *mm, &total));
  if (total == 0) return Status::Ok();
  if (opts.buffers == 0 || opts.buffer_bytes == 0 || opts.buffer_bytes % kPage != 0)
    return Status::Error("internal: bad page copy options");
  // A small dump gets a small ring (a tree of small processes allocates little),
  // still cut in a few chunks so that reading and writing overlap; below 1 MiB
  // a second thread is not worth starting.
  constexpr uint64_t kMinChunk = 1 << 20;
  uint64_t chunk = (total / opts.buffers + kPage - 1) / kPage * kPage;
  chunk = std::min<uint64_t>({std::max(chunk, kMinChunk), opts.buffer_bytes, total});
  if (total <= kMinChunk) chunk = total;
  const size_t nbuf = static_cast<size_t>(std::min<uint64_t>(opts.buffers, (total + chunk - 1) / chunk));
  Buffers buffers;
  CRYO_RETURN_IF_ERROR(buffers.Allocate(nbuf, chunk));
  // (buffers, chunks and file offsets are all page-aligned, as O_DIRECT wants)
  DirectPageWriter direct = opts.direct ? DirectPageWriter::Open(file) : DirectPageWriter();
  const PageSink out{file, &direct};
  RunHasher hasher(mm);
  Chunker chunker(pieces, chunk);
  CopyTimes reader, writer_times;
  const double start = Now();
  auto read_and_hash = [&](const Filled& f, const std::vector<PagePiece>& c, char* buf) -> Status {
    CRYO_RETURN_IF_ERROR(CheckInterrupt());  // a buffer at a time
    const double t0 = Now();
    CRYO_RETURN_IF_ERROR(src.Read(c.data(), c.size(), buf));
    const double t1 = Now();
    hasher.Feed(buf, f.len);
    reader.read += t1 - t0;
    reader.hash += Now() - t1;
    return Status::Ok();
  };

  Status read_status;
  if (nbuf == 1) {  // one buffer (a small dump): no second thread, nothing to overlap
    uint64_t done = 0;
    while (!chunker.done()) {
      if (progress && done) progress(done, total);
      Filled f{0, 0, 0};
      const std::vector<PagePiece>& c = chunker.Next(&f);
      CRYO_RETURN_IF_ERROR(read_and_hash(f, c, buffers[0]));
      CRYO_RETURN_IF_ERROR(WriteBuffer(out, buffers[0], f, &writer_times));
      done += f.len;
    }
  } else {
    Ring ring(nbuf);
    std::thread writer;
    try {
      writer = std::thread(WriterLoop, &ring, &buffers, out, &writer_times);
    } catch (const std::system_error& e) {
      return Status::Errno(e.code().value(), "cannot start the page writer thread");
    }
    uint64_t reported = 0;
    while (!chunker.done()) {
      uint64_t written = 0;
      const double t0 = Now();
      Result<size_t> b = ring.TakeFree(&written);
      reader.wait += Now() - t0;
      if (progress && written != reported) progress(reported = written, total);
      if (!b.ok()) break;  // the writer failed: its error is returned below
      Filled f{*b, 0, 0};
      const std::vector<PagePiece>& c = chunker.Next(&f);
      read_status = read_and_hash(f, c, buffers[*b]);
      if (!read_status.ok()) break;
      ring.PushFilled(f);
    }
    ring.Close(!read_status.ok());
    writer.join();
    CRYO_RETURN_IF_ERROR(read_status);
    CRYO_RETURN_IF_ERROR(ring.write_error());
  }
  if (progress) progress(total, total);
  LOG_DEBUG("%" PRIu64 " KiB of pages copied in %.1f ms through %zu x %" PRIu64
            " KiB buffers%s: read %.1f ms, hash %.1f ms, reader waited %.1f ms, write %.1f ms, writeback start %.1f ms",
            total >> 10, (Now() - start) * 1e3, nbuf, chunk >> 10, direct.valid() ? " (written with O_DIRECT)" : "",
            reader.read * 1e3, reader.hash * 1e3,
            reader.wait * 1e3, writer_times.write * 1e3, writer_times.writeback * 1e3);
  return Status::Ok();
}

Status DumpPages(pid_t pid, const std::vector<PagePiece>& pieces, image::Mm* mm, WritableFile* file,
                 const ProgressFn& progress, bool direct) {
  CRYO_ASSIGN_OR_RETURN(auto source, ProcessPageSource::Open(pid));
  PageCopyOptions opts;
  opts.direct = direct;
  return CopyPages(*source, pieces, mm, file, progress, opts);
}

Status ReadPages(pid_t pid, const std::vector<PagePiece>& pieces, image::Mm* mm, std::string* data) {
  uint64_t total = 0;
  CRYO_RETURN_IF_ERROR(CheckLayout(pieces, *mm, &total));
  data->resize(total);
  if (total == 0) return Status::Ok();
  CRYO_ASSIGN_OR_RETURN(auto source, ProcessPageSource::Open(pid));
  CRYO_RETURN_IF_ERROR(source->Read(pieces.data(), pieces.size(), data->data()));
  RunHasher(mm).Feed(data->data(), total);
  return Status::Ok();
}

}  // namespace cryo
