#include "image/image_dir.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <initializer_list>
#include <map>
#include <system_error>
#include <thread>

#include "base/file_util.h"

namespace cryo::image {

Result<std::unique_ptr<ImageWriter>> ImageWriter::Create(Env* env, const std::string& dir) {
  struct stat st;
  const bool existed = ::lstat(dir.c_str(), &st) == 0;
  CRYO_RETURN_IF_ERROR(env->CreateDir(dir, 0700));
  std::unique_ptr<ImageWriter> w(new ImageWriter(env, dir));
  w->created_dir_ = !existed;
  return w;
}

Result<std::unique_ptr<WritableFile>> ImageWriter::NewFile(const std::string& name) {
  {
    std::lock_guard<std::mutex> lock(created_mu_);
    created_.push_back(name);  // before it exists: a failed creation is removed too (no-op)
  }
  return env_->NewWritableFile(dir_ + "/" + name, 0600);
}

Status ImageWriter::MarkIncomplete(const std::string& what) {
  CRYO_ASSIGN_OR_RETURN(auto f, NewFile(IncompleteMarkerName()));
  const std::string text = what + "\n";
  CRYO_RETURN_IF_ERROR(f->Append(text.data(), text.size()));
  return f->Close();
}

Status ImageWriter::MarkComplete() {
  CRYO_RETURN_IF_ERROR(env_->RemoveFile(dir_ + "/" + IncompleteMarkerName()));
  {
    std::lock_guard<std::mutex> lock(created_mu_);
    created_.erase(std::remove(created_.begin(), created_.end(), IncompleteMarkerName()), created_.end());
  }
  return SyncDir();
}

Status ImageWriter::Discard() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    async_error_ = Status::Error("the dump was abandoned");  // queued jobs are skipped
  }
  (void)Flush();
  {
    std::lock_guard<std::mutex> lock(pending_mu_);
    for (auto& f : pending_) (void)f->Close();
    pending_.clear();
  }
  std::vector<std::string> names;
  {
    std::lock_guard<std::mutex> lock(created_mu_);
    names.swap(created_);
  }
  Status first;
  // The marker last: until every other file is gone, the image is marked.
  std::stable_partition(names.begin(), names.end(), [](const std::string& n) { return n != IncompleteMarkerName(); });
  for (const std::string& n : names) {
    Status s = env_->RemoveFile(dir_ + "/" + n);
    if (first.ok() && !s.ok()) first = s;
  }
  if (created_dir_) {
    Status s = env_->RemoveDir(dir_);
    if (first.ok() && !s.ok() && s.err() != ENOTEMPTY && s.err() != EEXIST) first = s;
  }
  return first;
}

Status ImageWriter::WriteRecord(const std::string& name, FileKind kind, const google::protobuf::MessageLite& msg) {
  std::string payload;
  if (!msg.SerializeToString(&payload)) return Status::Error("cannot serialize " + name);
  return WritePayload(name, kind, payload);
}

Status ImageWriter::WritePayload(const std::string& name, FileKind kind, const std::string& payload) {
  FileHeader h;
  h.kind = kind;
  h.payload_size = payload.size();
  h.payload_hash = HashBytes(payload.data(), payload.size());
  uint8_t hdr[kHeaderSize];
  EncodeHeader(h, hdr);
  CRYO_ASSIGN_OR_RETURN(auto file, NewFile(name));
  CRYO_RETURN_IF_ERROR(file->Append(hdr, sizeof(hdr)));
  CRYO_RETURN_IF_ERROR(file->Append(payload.data(), payload.size()));
  return AddPending(std::move(file), sizeof(hdr) + payload.size());
}

Result<std::unique_ptr<WritableFile>> ImageWriter::CreatePageFile(const std::string& name) { return NewFile(name); }

Status ImageWriter::FinishPageFile(std::unique_ptr<WritableFile> file, uint64_t payload_size) {
  FileHeader h;
  h.kind = FileKind::kPages;
  h.payload_size = payload_size;
  uint8_t hdr[kPageDataOffset] = {};
  EncodeHeader(h, hdr);
  CRYO_RETURN_IF_ERROR(file->WriteAt(hdr, sizeof(hdr), 0));
  return AddPending(std::move(file), sizeof(hdr));  // the page data's writeback is started as it is written
}

// Jobs not run yet are dropped; files not synced are closed (an incomplete image).
ImageWriter::~ImageWriter() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    cv_.notify_all();
  }
  if (writer_.joinable()) writer_.join();
}

void ImageWriter::Async(std::function<Status()> job, uint64_t bytes) {
  constexpr uint64_t kMaxQueuedBytes = 16 << 20;
  constexpr size_t kMaxQueuedJobs = 32;
  std::unique_lock<std::mutex> lock(mu_);
  if (!writer_.joinable() && !no_thread_) {
    try {
      writer_ = std::thread(&ImageWriter::WriterLoop, this);
    } catch (const std::system_error&) {
      no_thread_ = true;
    }
  }
  if (no_thread_) {
    lock.unlock();
    Status s = async_error_.ok() ? job() : Status::Ok();
    lock.lock();
    if (async_error_.ok() && !s.ok()) async_error_ = std::move(s);
    return;
  }
  cv_.wait(lock, [&] {
    return jobs_.empty() || (jobs_.size() < kMaxQueuedJobs && queued_bytes_ + bytes <= kMaxQueuedBytes);
  });
  jobs_.push_back({std::move(job), bytes});
  queued_bytes_ += bytes;
  cv_.notify_all();
}

void ImageWriter::AsyncWriteRecord(const std::string& name, FileKind kind, const google::protobuf::MessageLite& msg) {
  auto payload = std::make_shared<std::string>();
  if (!msg.SerializeToString(payload.get())) {
    Async([name] { return Status::Error("cannot serialize " + name); });
    return;
  }
  Async([this, name, kind, payload] { return WritePayload(name, kind, *payload); }, payload->size());
}

void ImageWriter::WriterLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stop_ || !jobs_.empty(); });
    if (stop_) return;
    Job job = std::move(jobs_.front());
    jobs_.pop_front();
    running_ = true;
    const bool skip = !async_error_.ok();
    lock.unlock();
    Status s = skip ? Status::Ok() : job.run();
    job.run = nullptr;  // frees what it held before the queue makes room
    lock.lock();
    if (async_error_.ok() && !s.ok()) async_error_ = std::move(s);
    queued_bytes_ -= job.bytes;
    running_ = false;
    cv_.notify_all();
  }
}

Status ImageWriter::Flush() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return jobs_.empty() && !running_; });
  return async_error_;
}

Status ImageWriter::AddPending(std::unique_ptr<WritableFile> file, uint64_t size) {
  CRYO_RETURN_IF_ERROR(file->StartWriteback(0, size));
  size_t n;
  {
    std::lock_guard<std::mutex> lock(pending_mu_);
    pending_.push_back(std::move(file));
    n = pending_.size();
  }
  // Bounded, so that a big tree does not run out of file descriptors.
  constexpr size_t kMaxPending = 64;
  if (n >= kMaxPending) return SyncPending();
  return Status::Ok();
}

Status ImageWriter::SyncFiles() {
  CRYO_RETURN_IF_ERROR(Flush());
  return SyncPending();
}

Status ImageWriter::SyncPending() {
  std::vector<std::unique_ptr<WritableFile>> files;
  {
    std::lock_guard<std::mutex> lock(pending_mu_);
    files = std::move(pending_);
    pending_.clear();
  }
  std::vector<Status> results(files.size());
  auto sync = [&](size_t i) {
    results[i] = files[i]->Sync();
    if (results[i].ok()) results[i] = files[i]->Close();
  };
  constexpr size_t kMaxThreads = 8;
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t i; (i = next.fetch_add(1)) < files.size();) sync(i);
  };
  std::vector<std::thread> threads;
  try {
    for (size_t t = 1; t < std::min(kMaxThreads, files.size()); ++t) threads.emplace_back(worker);
  } catch (const std::system_error&) {
    // Fewer threads: the calling one does the rest.
  }
  worker();
  for (std::thread& t : threads) t.join();
  for (const Status& s : results) CRYO_RETURN_IF_ERROR(s);
  return Status::Ok();
}

Status ImageWriter::SyncDir() { return env_->SyncDir(dir_); }

namespace {

Status CheckHeader(const std::string& path, const uint8_t* data, size_t n, FileKind kind, FileHeader* h) {
  std::string why;
  if (!DecodeHeader(data, n, h, &why)) return Status::Error(path + ": " + why);
  if (h->format_version > kFormatVersion)
    return Status::Error(path + ": image format version " + std::to_string(h->format_version) +
                         " is newer than this cryo supports (" + std::to_string(kFormatVersion) +
                         "); restore it with a newer cryo");
  if (h->format_version == 0) return Status::Error(path + ": image format version 0 is invalid (corrupted)");
  if (h->kind != kind)
    return Status::Error(path + ": expected a " + FileKindName(kind) + " file, found kind " +
                         std::to_string(static_cast<uint32_t>(h->kind)));
  return Status::Ok();
}

}  // namespace

Status ReadRecord(const std::string& dir, const std::string& name, FileKind kind, google::protobuf::MessageLite* msg) {
  const std::string path = dir + "/" + name;
  CRYO_ASSIGN_OR_RETURN(std::string data, ReadFileToString(path));
  FileHeader h;
  CRYO_RETURN_IF_ERROR(CheckHeader(path, reinterpret_cast<const uint8_t*>(data.data()), data.size(), kind, &h));
  if (h.header_size > data.size() || data.size() - h.header_size != h.payload_size)
    return Status::Error(path + ": size " + std::to_string(data.size()) + " does not match the header (payload " +
                         std::to_string(h.payload_size) + " bytes): truncated or corrupted");
  const char* payload = data.data() + h.header_size;
  if (HashBytes(payload, h.payload_size) != h.payload_hash)
    return Status::Error(path + ": checksum mismatch (corrupted)");
  if (!msg->ParseFromArray(payload, static_cast<int>(h.payload_size)))
    return Status::Error(path + ": cannot parse " + FileKindName(kind) + " record");
  return Status::Ok();
}

namespace {

Status ValidateMm(const std::string& dir, int pid, const Mm& mm) {
  const std::string what = dir + "/" + MmName(pid);
  uint64_t expect_off = kPageDataOffset, pages = 0, prev_end = 0;
  for (const Vma& v : mm.vmas()) {
    if (v.start() >= v.end() || v.start() % kPageSize || v.end() % kPageSize)
      return Status::Error(what + ": invalid VMA range (corrupted)");
    if (v.start() < prev_end) return Status::Error(what + ": VMAs overlap or are out of order (corrupted)");
    prev_end = v.end();
  }
  // Runs are in address order, each inside one VMA, at most 4 MiB, and stored
  // back to back in the page file.
  int vi = 0;
  uint64_t prev_run_end = 0;
  for (const PageRun& r : mm.runs()) {
    if (r.offset() != expect_off || r.npages() == 0 || r.vaddr() % kPageSize || r.npages() > (4u << 20) / kPageSize)
      return Status::Error(what + ": page runs are malformed (corrupted)");
    const uint64_t end = r.vaddr() + r.npages() * kPageSize;
    if (r.vaddr() < prev_run_end || end < r.vaddr()) return Status::Error(what + ": page runs out of order (corrupted)");
    prev_run_end = end;
    while (vi < mm.vmas_size() && mm.vmas(vi).end() <= r.vaddr()) ++vi;
    if (vi == mm.vmas_size() || r.vaddr() < mm.vmas(vi).start() || end > mm.vmas(vi).end())
      return Status::Error(what + ": a page run lies outside every VMA (corrupted)");
    expect_off += r.npages() * kPageSize;
    pages += r.npages();
  }
  if (pages != mm.total_pages()) return Status::Error(what + ": page count does not match the page runs (corrupted)");
  return Status::Ok();
}

}  // namespace

namespace {

// A page file (kind 5) whose page data must be exactly `total_pages` pages.
Result<UniqueFd> OpenPageData(const std::string& path, uint64_t total_pages) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno("open " + path);
  uint8_t hdr[kHeaderSize];
  ssize_t n = ::pread(fd.get(), hdr, sizeof(hdr), 0);
  if (n < 0) return Status::FromErrno("read " + path);
  FileHeader h;
  CRYO_RETURN_IF_ERROR(CheckHeader(path, hdr, static_cast<size_t>(n), FileKind::kPages, &h));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Status::FromErrno("stat " + path);
  const uint64_t want = total_pages * kPageSize;
  if (h.payload_size != want || static_cast<uint64_t>(st.st_size) != kPageDataOffset + want)
    return Status::Error(path + ": holds " + std::to_string(st.st_size) + " bytes, expected " +
                         std::to_string(kPageDataOffset + want) + " (truncated or corrupted)");
  return fd;
}

// shm.img: objects well formed, extents back to back in shm-pages.img, and
// every holder naming an object of a kind it can hold.
Status ValidateShm(const LoadedImage& img) {
  const std::string what = img.dir + "/" + ShmName();
  std::map<uint64_t, const ShmObject*> by_id;
  uint64_t expect_off = kPageDataOffset, pages = 0;
  for (const ShmObject& o : img.shm.objects()) {
    if (o.id() == 0 || !by_id.emplace(o.id(), &o).second) return Status::Error(what + ": object ids are not unique (corrupted)");
    const std::string obj = what + ": object " + std::to_string(o.id());
    switch (o.kind()) {
      case SHM_MEMFD:
        if (o.name().size() > 249) return Status::Error(obj + ": memfd name longer than 249 bytes");
        break;
      case SHM_POSIX:
        if (o.name().rfind("/dev/shm/", 0) != 0 || o.name().find("/../") != std::string::npos)
          return Status::Error(obj + ": POSIX shared memory path " + o.name() + " is not under /dev/shm");
        break;
      case SHM_SYSV:
        if (o.sysv_id() < 0) return Status::Error(obj + ": invalid SysV id");
        break;
      case SHM_ANON:
        if (o.size() == 0) return Status::Error(obj + ": shared anonymous memory of size 0 (corrupted)");
        break;
      default:
        return Status::Error(obj + ": unknown kind " + std::to_string(o.kind()));
    }
    const uint64_t limit = (o.size() + kPageSize - 1) / kPageSize * kPageSize;
    uint64_t prev_end = 0;
    for (const ShmExtent& e : o.extents()) {
      if (e.file_offset() != expect_off || e.npages() == 0 || e.npages() > (4u << 20) / kPageSize ||
          e.offset() % kPageSize || e.offset() < prev_end || e.offset() + e.npages() * kPageSize > limit)
        return Status::Error(obj + ": content extents are malformed (corrupted)");
      prev_end = e.offset() + e.npages() * kPageSize;
      expect_off += e.npages() * kPageSize;
      pages += e.npages();
    }
  }
  if (pages != img.shm.total_pages()) return Status::Error(what + ": page count does not match the extents (corrupted)");
  for (const auto& [pid, p] : img.processes) {
    for (const Vma& v : p.mm.vmas()) {
      if (!v.shm_object()) continue;
      auto it = by_id.find(v.shm_object());
      const bool anon = it != by_id.end() && it->second->kind() == SHM_ANON;
      if (it == by_id.end() || (anon ? v.kind() != VMA_ANON_SHARED : v.kind() != VMA_FILE_SHARED && v.kind() != VMA_FILE_PRIVATE) ||
          (it->second->kind() == SHM_SYSV && v.kind() != VMA_FILE_SHARED))
        return Status::Error(img.dir + "/" + MmName(pid) + ": a VMA names shared memory object " +
                             std::to_string(v.shm_object()) + ", which does not fit it (corrupted)");
    }
    for (const Fd& f : p.fds.fds()) {
      if (f.kind() != FD_MEMFD && f.kind() != FD_POSIX_SHM) continue;
      auto it = by_id.find(f.shm_object());
      if (it == by_id.end() || it->second->kind() != (f.kind() == FD_MEMFD ? SHM_MEMFD : SHM_POSIX))
        return Status::Error(img.dir + "/" + FdsName(pid) + ": fd " + std::to_string(f.fd()) +
                             " names no shared memory object of its kind (corrupted)");
    }
  }
  return Status::Ok();
}

bool HasAnyFeature(const Inventory& inv, std::initializer_list<const char*> names) {
  for (const std::string& f : inv.features())
    for (const char* n : names)
      if (f == n) return true;
  return false;
}

}  // namespace

Result<UniqueFd> OpenPageFile(const std::string& dir, int pid, const Mm& mm) {
  return OpenPageData(dir + "/" + PagesName(pid), mm.total_pages());
}

Result<UniqueFd> OpenShmPageFile(const std::string& dir, const ShmTable& shm) {
  return OpenPageData(dir + "/" + ShmPagesName(), shm.total_pages());
}

namespace {

// A dump that did not finish left its marker, or (a cryo killed before it
// could write its marker, or an older cryo's) process records without an
// inventory.
Status CheckComplete(const std::string& dir) {
  struct stat st;
  const std::string marker = dir + "/" + IncompleteMarkerName();
  if (::lstat(marker.c_str(), &st) == 0) return Status::Error(dir + ": " + kIncompleteImage);
  if (::lstat((dir + "/" + InventoryName()).c_str(), &st) == 0 || errno != ENOENT) return Status::Ok();
  DIR* d = ::opendir(dir.c_str());
  if (!d) return Status::Ok();
  bool records = false;
  while (struct dirent* e = ::readdir(d))
    if (std::strncmp(e->d_name, "core-", 5) == 0 || std::strncmp(e->d_name, "pages-", 6) == 0) records = true;
  ::closedir(d);
  if (records) return Status::Error(dir + ": " + kIncompleteImage + " (no " + InventoryName() + ")");
  return Status::Ok();
}

}  // namespace

Result<LoadedImage> LoadImage(const std::string& dir) {
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) return Status::FromErrno("images directory " + dir);
  if (!S_ISDIR(st.st_mode)) return Status::Error("images directory " + dir + " is not a directory");
  CRYO_RETURN_IF_ERROR(CheckComplete(dir));
  LoadedImage img;
  img.dir = dir;
  CRYO_RETURN_IF_ERROR(ReadRecord(dir, InventoryName(), FileKind::kInventory, &img.inventory));
  const Inventory& inv = img.inventory;
  if (inv.format_version() > kFormatVersion)
    return Status::Error(dir + ": image format version " + std::to_string(inv.format_version()) +
                         " is newer than this cryo supports (" + std::to_string(kFormatVersion) + ")");
  const auto& supported = SupportedFeatures();
  for (const std::string& f : inv.features())
    if (std::find(supported.begin(), supported.end(), f) == supported.end())
      return Status::Error(dir + ": the image needs feature '" + f + "', which this cryo (" CRYO_VERSION
                           ") does not support; restore it with a newer cryo");
  if (inv.format_version() == 0) return Status::Error(dir + ": the inventory's format version 0 is invalid (corrupted)");
  if (inv.pids().empty()) return Status::Error(dir + ": the inventory lists no process");
  for (int pid : inv.pids()) {
    if (pid <= 0 || img.processes.count(pid))
      return Status::Error(dir + ": the inventory lists pid " + std::to_string(pid) + " " +
                           (pid <= 0 ? "(invalid)" : "twice") + " (corrupted)");
    ProcessImage& p = img.processes[pid];
    CRYO_RETURN_IF_ERROR(ReadRecord(dir, CoreName(pid), FileKind::kProcessCore, &p.core));
    if (p.core.pid() != pid) return Status::Error(dir + "/" + CoreName(pid) + ": record is for pid " + std::to_string(p.core.pid()));
    if (p.core.zombie()) continue;  // nothing but its core
    CRYO_RETURN_IF_ERROR(ReadRecord(dir, MmName(pid), FileKind::kMm, &p.mm));
    CRYO_RETURN_IF_ERROR(ReadRecord(dir, FdsName(pid), FileKind::kFdTable, &p.fds));
    if (p.core.threads_size() < 1) return Status::Error(dir + "/" + CoreName(pid) + ": no thread");
    for (const TaskCore& t : p.core.threads()) {
      if (t.regs().gpr_size() != 27) return Status::Error(dir + "/" + CoreName(pid) + ": register set is incomplete");
      if (t.regs().xsave().size() != inv.xsave_size())
        return Status::Error(dir + "/" + CoreName(pid) + ": xsave area size does not match the inventory");
    }
    CRYO_RETURN_IF_ERROR(ValidateMm(dir, pid, p.mm));
    CRYO_ASSIGN_OR_RETURN(UniqueFd pf, OpenPageFile(dir, pid, p.mm));
    (void)pf;
  }
  if (!img.processes.count(inv.root_pid()) || img.processes[inv.root_pid()].core.zombie())
    return Status::Error(dir + ": the root process " + std::to_string(inv.root_pid()) + " is missing or a zombie");
  for (const auto& [pid, p] : img.processes) {
    if (pid == inv.root_pid()) continue;
    auto parent = img.processes.find(p.core.ppid());
    if (parent == img.processes.end() || parent->second.core.zombie())
      return Status::Error(dir + ": the parent " + std::to_string(p.core.ppid()) + " of pid " + std::to_string(pid) +
                           " is not a live process of the image (corrupted)");
  }
  if (std::find(inv.features().begin(), inv.features().end(), "pipes") != inv.features().end() ||
      std::find(inv.features().begin(), inv.features().end(), "fifos") != inv.features().end())
    CRYO_RETURN_IF_ERROR(ReadRecord(dir, PipesName(), FileKind::kPipes, &img.pipes));
  if (HasAnyFeature(inv, {"memfd", "posix-shm", "sysv-shm", "anon-shmem"})) {
    CRYO_RETURN_IF_ERROR(ReadRecord(dir, ShmName(), FileKind::kShm, &img.shm));
    CRYO_RETURN_IF_ERROR(ValidateShm(img));
    if (!img.shm.objects().empty()) {
      CRYO_ASSIGN_OR_RETURN(UniqueFd sf, OpenShmPageFile(dir, img.shm));
      (void)sf;
    }
  } else {
    // Without the features an image holds no shared memory objects.
    for (const auto& [pid, p] : img.processes) {
      for (const Vma& v : p.mm.vmas())
        if (v.shm_object()) return Status::Error(dir + "/" + MmName(pid) + ": a VMA names a shared memory object, but the image lists no shared memory feature (corrupted)");
    }
  }
  if (std::find(inv.features().begin(), inv.features().end(), "tty") != inv.features().end())
    CRYO_RETURN_IF_ERROR(ReadRecord(dir, TtysName(), FileKind::kTtys, &img.ttys));
  if (HasAnyFeature(inv, {"unlinked-files"})) {
    CRYO_RETURN_IF_ERROR(ReadRecord(dir, FilesName(), FileKind::kFiles, &img.files));
    if (!img.files.files().empty()) CRYO_RETURN_IF_ERROR(OpenFilesDataFile(dir, img.files).status());
  }
  CRYO_RETURN_IF_ERROR(ValidateUnlinkedFiles(img));
  return img;
}

Result<UniqueFd> OpenFilesDataFile(const std::string& dir, const UnlinkedFileTable& files) {
  const std::string path = dir + "/" + FilesDataName();
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno("open " + path);
  uint8_t hdr[kHeaderSize];
  const ssize_t n = ::pread(fd.get(), hdr, sizeof(hdr), 0);
  if (n < 0) return Status::FromErrno("read " + path);
  FileHeader h;
  CRYO_RETURN_IF_ERROR(CheckHeader(path, hdr, static_cast<size_t>(n), FileKind::kPages, &h));
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Status::FromErrno("stat " + path);
  const uint64_t want = files.data_size();
  if (h.payload_size != want || static_cast<uint64_t>(st.st_size) != kPageDataOffset + want)
    return Status::Error(path + ": holds " + std::to_string(st.st_size) + " bytes, expected " +
                         std::to_string(kPageDataOffset + want) + " (truncated or corrupted)");
  return fd;
}

}  // namespace cryo::image
