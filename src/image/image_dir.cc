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
#include "image/framed_writer.h"
#include "image/validate.h"
#include "image/parent_chain.h"

namespace cryo::image {

Result<std::unique_ptr<ImageWriter>> ImageWriter::Create(Env* env, const std::string& dir) {
  struct stat st;
  const bool existed = ::lstat(dir.c_str(), &st) == 0;
  CRYO_RETURN_IF_ERROR(env->CreateDir(dir, 0700));
  std::unique_ptr<ImageWriter> w(new ImageWriter(env, dir, kFormatVersion, NewImageId()));
  w->created_dir_ = !existed;
  return w;
}

Result<std::unique_ptr<ImageWriter>> ImageWriter::ForImage(Env* env, const std::string& dir,
                                                           const ImageIdentity& identity) {
  CRYO_RETURN_IF_ERROR(env->CreateDir(dir, 0700));
  auto w = std::unique_ptr<ImageWriter>(new ImageWriter(env, dir, identity.format_version, identity.image_id));
  w->sizes_ = identity.sizes;
  return w;
}

void ImageWriter::NoteSize(const std::string& name, uint64_t size) {
  std::lock_guard<std::mutex> lock(sizes_mu_);
  sizes_[name] = size;
}

Status ImageWriter::WriteInventory(Inventory inv) {
  inv.set_image_id(image_id_);
  inv.clear_files();
  {
    std::lock_guard<std::mutex> lock(sizes_mu_);
    for (const auto& [name, size] : sizes_) {
      if (name == InventoryName()) continue;
      ImageFile* f = inv.add_files();
      f->set_name(name);
      f->set_size(size);
    }
  }
  return WriteRecord(InventoryName(), FileKind::kInventory, inv);
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
  CRYO_RETURN_IF_ERROR(SyncDir());
  if (created_dir_) CRYO_RETURN_IF_ERROR(SyncParentDir());
  return env_->Commit(dir_);
}

Status ImageWriter::SyncParentDir() {
  // A directory this dump created is durable only once its entry in its
  // parent is (fsync(2): "Calling fsync() does not necessarily ensure that
  // the entry in the directory containing the file has also reached disk").
  std::string parent = dir_;
  while (parent.size() > 1 && parent.back() == '/') parent.pop_back();
  const size_t slash = parent.rfind('/');
  parent = slash == std::string::npos ? "." : slash == 0 ? "/" : parent.substr(0, slash);
  return env_->SyncDir(parent);
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
  h.format_version = format_version_;
  h.image_id = image_id_;
  h.kind = kind;
  h.payload_size = payload.size();
  h.payload_hash = HashBytes(payload.data(), payload.size());
  uint8_t hdr[kHeaderSize];
  EncodeHeader(h, hdr);
  CRYO_ASSIGN_OR_RETURN(auto file, NewFile(name));
  CRYO_RETURN_IF_ERROR(file->Append(hdr, h.header_size));
  CRYO_RETURN_IF_ERROR(file->Append(payload.data(), payload.size()));
  NoteSize(name, h.header_size + payload.size());
  return AddPending(std::move(file), h.header_size + payload.size());
}

Result<std::unique_ptr<WritableFile>> ImageWriter::CreatePageFile(const std::string& name) {
  CRYO_ASSIGN_OR_RETURN(auto file, NewFile(name));
  if (!compression_.on() || name.rfind("pages-", 0) != 0) return file;
  return std::unique_ptr<WritableFile>(new FramedPageFile(std::move(file), compression_, compress_workers_));
}

Status ImageWriter::FinishPageFile(std::unique_ptr<WritableFile> file, uint64_t payload_size) {
  if (auto* framed = dynamic_cast<FramedPageFile*>(file.get())) {
    if (framed->payload_bytes() != payload_size)
      return Status::Error(framed->path() + ": internal: " + std::to_string(framed->payload_bytes()) +
                           " bytes of page data written, " + std::to_string(payload_size) + " announced");
    CRYO_ASSIGN_OR_RETURN(uint64_t size, framed->Finish([this](uint64_t payload, uint64_t index_hash, uint8_t* hdr) {
      FileHeader h;
      h.format_version = format_version_;
      h.image_id = image_id_;
      h.kind = FileKind::kCompressedPages;
      h.payload_size = payload;
      h.payload_hash = index_hash;
      EncodeHeader(h, hdr);
    }));
    const std::string& path = framed->path();
    NoteSize(path.substr(path.rfind('/') + 1), size);
    return AddPending(framed->Release(), size);
  }
  FileHeader h;
  h.format_version = format_version_;
  h.image_id = image_id_;
  h.kind = FileKind::kPages;
  h.payload_size = payload_size;
  uint8_t hdr[kPageDataOffset] = {};
  EncodeHeader(h, hdr);
  CRYO_RETURN_IF_ERROR(file->WriteAt(hdr, sizeof(hdr), 0));
  const std::string& path = file->path();
  NoteSize(path.substr(path.rfind('/') + 1), kPageDataOffset + payload_size);
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

// Reads a metadata file of kind `kind` whole: a regular file of at most
// `max_size` bytes whose header, size and checksum hold.
Status ReadMetadata(const std::string& path, const std::string& name, FileKind kind, const ImageIdentity* identity,
                    uint64_t max_size, google::protobuf::MessageLite* msg) {
  uint64_t size = 0;
  CRYO_ASSIGN_OR_RETURN(UniqueFd fd, OpenImageFile(path, &size));
  if (identity) CRYO_RETURN_IF_ERROR(identity->CheckSize(path, name, size, false));
  if (size > max_size)
    return Status::Error(path + ": " + std::to_string(size) + " bytes, more than the " + std::to_string(max_size) +
                         " such a file may have (corrupted)");
  CRYO_ASSIGN_OR_RETURN(std::string data, ReadWholeFile(fd.get(), size, path));
  FileHeader h;
  CRYO_RETURN_IF_ERROR(CheckFileHeader(path, reinterpret_cast<const uint8_t*>(data.data()), data.size(), kind, &h));
  if (identity) CRYO_RETURN_IF_ERROR(identity->CheckHeader(path, name, h));
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

Result<UniqueFd> OpenDataFile(const LoadedImage& img, const std::string& name, uint64_t want);

// A page file (kind 5) of the image whose page data must be exactly
// `total_pages` pages.
Result<UniqueFd> OpenPageData(const LoadedImage& img, const std::string& name, uint64_t total_pages) {
  if (total_pages > (UINT64_MAX - kPageDataOffset) / kPageSize)
    return Status::Error(img.dir + "/" + name + ": page count " + std::to_string(total_pages) +
                         " is impossible (corrupted)");
  return OpenDataFile(img, name, total_pages * kPageSize);
}

// A data file (kind 5: page data, unlinked files' content) of the image whose
// payload must be exactly `want` bytes.
Result<UniqueFd> OpenDataFile(const LoadedImage& img, const std::string& name, uint64_t want) {
  const std::string path = img.dir + "/" + name;
  uint64_t size = 0;
  FileHeader h;
  CRYO_ASSIGN_OR_RETURN(UniqueFd fd, OpenDataFileOf(img.dir, img.identity, name, &size, &h));
  if (want > UINT64_MAX - kPageDataOffset) return Status::Error(path + ": impossible size (corrupted)");
  if (h.payload_size != want || size != kPageDataOffset + want)
    return Status::Error(path + ": holds " + std::to_string(size) + " bytes, expected " +
                         std::to_string(kPageDataOffset + want) + " (truncated or corrupted)");
  return fd;
}

bool HasFeature(const Inventory& inv, const char* name) {
  return std::find(inv.features().begin(), inv.features().end(), name) != inv.features().end();
}

}  // namespace

Result<UniqueFd> OpenDataFileOf(const std::string& dir, const ImageIdentity& identity, const std::string& name,
                                uint64_t* size, FileHeader* h) {
  const std::string path = dir + "/" + name;
  CRYO_ASSIGN_OR_RETURN(UniqueFd fd, OpenImageFile(path, size));
  CRYO_RETURN_IF_ERROR(identity.CheckSize(path, name, *size, true));
  uint8_t hdr[kHeaderSize];
  ssize_t n;
  while ((n = ::pread(fd.get(), hdr, sizeof(hdr), 0)) < 0 && errno == EINTR) {
  }
  if (n < 0) return Status::FromErrno("read " + path);
  CRYO_RETURN_IF_ERROR(CheckFileHeader(path, hdr, static_cast<size_t>(n), FileKind::kPages, h));
  CRYO_RETURN_IF_ERROR(identity.CheckHeader(path, name, *h));
  return fd;
}

Status ReadImageRecord(const LoadedImage& img, const std::string& name, FileKind kind,
                       google::protobuf::MessageLite* msg) {
  return ReadMetadata(img.dir + "/" + name, name, kind, &img.identity, kMaxRecordBytes, msg);
}

Status ReadRecord(const std::string& dir, const std::string& name, FileKind kind, google::protobuf::MessageLite* msg) {
  return ReadMetadata(dir + "/" + name, name, kind, nullptr,
                      kind == FileKind::kInventory ? kMaxInventoryBytes : kMaxRecordBytes, msg);
}

Status ReadInventory(const std::string& dir, Inventory* inv, ImageIdentity* identity) {
  const std::string path = dir + "/" + InventoryName();
  uint64_t size = 0;
  CRYO_ASSIGN_OR_RETURN(UniqueFd fd, OpenImageFile(path, &size));
  if (size > kMaxInventoryBytes)
    return Status::Error(path + ": " + std::to_string(size) + " bytes, more than the " +
                         std::to_string(kMaxInventoryBytes) + " an inventory may have (corrupted)");
  CRYO_ASSIGN_OR_RETURN(std::string data, ReadWholeFile(fd.get(), size, path));
  FileHeader h;
  CRYO_RETURN_IF_ERROR(
      CheckFileHeader(path, reinterpret_cast<const uint8_t*>(data.data()), data.size(), FileKind::kInventory, &h));
  fd.reset();
  // The header is the identity: read the rest like every other file of it.
  identity->format_version = h.format_version;
  identity->image_id = h.image_id;
  identity->sizes.clear();
  CRYO_RETURN_IF_ERROR(ReadMetadata(path, InventoryName(), FileKind::kInventory, nullptr, kMaxInventoryBytes, inv));
  if (inv->format_version() != h.format_version)
    return Status::Error(path + ": the inventory says format version " + std::to_string(inv->format_version()) +
                         ", its header " + std::to_string(h.format_version) + " (corrupted)");
  if (inv->image_id() != h.image_id)
    return Status::Error(path + ": the inventory's image id " + ImageIdHex(inv->image_id()) +
                         " is not its header's " + ImageIdHex(h.image_id) + " (corrupted)");
  if (h.format_version >= 2 && h.image_id == std::string(kImageIdSize, '\0'))
    return Status::Error(path + ": the image id is missing (all zero; corrupted)");
  if (h.format_version < 2 && inv->files_size())
    return Status::Error(path + ": a format 1 inventory lists file sizes (corrupted)");
  for (const ImageFile& f : inv->files()) {
    const std::string& n = f.name();
    if (n.empty() || n.size() > 255 || n.find('/') != std::string::npos || n.find('\0') != std::string::npos ||
        n == "." || n == ".." || n == InventoryName())
      return Status::Error(path + ": lists an invalid file name (corrupted)");
    if (!identity->sizes.emplace(n, f.size()).second)
      return Status::Error(path + ": lists " + n + " twice (corrupted)");
  }
  return Status::Ok();
}

Status ReplaceRecord(const std::string& dir, const std::string& name, FileKind kind,
                     const google::protobuf::MessageLite& msg) {
  Inventory inv;
  ImageIdentity identity;
  CRYO_RETURN_IF_ERROR(ReadInventory(dir, &inv, &identity));
  CRYO_ASSIGN_OR_RETURN(auto w, ImageWriter::ForImage(Env::Default(), dir, identity));
  CRYO_RETURN_IF_ERROR(w->WriteRecord(name, kind, msg));
  CRYO_RETURN_IF_ERROR(w->SyncFiles());
  if (name == InventoryName() || identity.format_version < 2) return Status::Ok();
  struct stat st;
  if (::stat((dir + "/" + name).c_str(), &st) != 0) return Status::FromErrno("stat " + dir + "/" + name);
  bool listed = false;
  for (ImageFile& f : *inv.mutable_files())
    if (f.name() == name) {
      f.set_size(static_cast<uint64_t>(st.st_size));
      listed = true;
    }
  if (!listed) {
    ImageFile* f = inv.add_files();
    f->set_name(name);
    f->set_size(static_cast<uint64_t>(st.st_size));
  }
  CRYO_RETURN_IF_ERROR(w->WriteRecord(InventoryName(), FileKind::kInventory, inv));
  return w->SyncFiles();
}

Result<PageSource> OpenPageFile(const LoadedImage& img, int pid) {
  const uint64_t total_pages = img.processes.at(pid).mm.total_pages();
  const std::string name = PagesName(pid);
  if (total_pages > (UINT64_MAX - kPageDataOffset) / kPageSize)
    return Status::Error(img.dir + "/" + name + ": page count " + std::to_string(total_pages) +
                         " is impossible (corrupted)");
  FileHeader h;
  CRYO_ASSIGN_OR_RETURN(PageSource src, PageSource::Open(img.dir, img.identity, name,
                                                         HasFeature(img.inventory, "compressed-pages"), &h));
  if (h.payload_size != total_pages * kPageSize)
    return Status::Error(src.path() + ": holds " + std::to_string(h.payload_size) + " bytes of page data, expected " +
                         std::to_string(total_pages * kPageSize) + " (truncated or corrupted)");
  return src;
}

Result<UniqueFd> OpenShmPageFile(const LoadedImage& img) {
  return OpenPageData(img, ShmPagesName(), img.shm.total_pages());
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
  CRYO_RETURN_IF_ERROR(ReadInventory(dir, &img.inventory, &img.identity));
  const Inventory& inv = img.inventory;
  // What decides which files are read comes first: features, pids.
  CRYO_RETURN_IF_ERROR(ValidateInventory(img));
  for (int pid : inv.pids()) {
    ProcessImage& p = img.processes[pid];
    CRYO_RETURN_IF_ERROR(ReadImageRecord(img, CoreName(pid), FileKind::kProcessCore, &p.core));
    if (p.core.pid() != pid)
      return Status::Error(dir + "/" + CoreName(pid) + ": record is for pid " + std::to_string(p.core.pid()) +
                           " (corrupted)");
    if (p.core.zombie()) continue;  // nothing but its core
    CRYO_RETURN_IF_ERROR(ReadImageRecord(img, MmName(pid), FileKind::kMm, &p.mm));
    CRYO_RETURN_IF_ERROR(ReadImageRecord(img, FdsName(pid), FileKind::kFdTable, &p.fds));
  }
  if (HasFeature(inv, "pipes") || HasFeature(inv, "fifos"))
    CRYO_RETURN_IF_ERROR(ReadImageRecord(img, PipesName(), FileKind::kPipes, &img.pipes));
  if (HasFeature(inv, "memfd") || HasFeature(inv, "posix-shm") || HasFeature(inv, "sysv-shm") ||
      HasFeature(inv, "anon-shmem"))
    CRYO_RETURN_IF_ERROR(ReadImageRecord(img, ShmName(), FileKind::kShm, &img.shm));
  if (HasFeature(inv, "tty")) CRYO_RETURN_IF_ERROR(ReadImageRecord(img, TtysName(), FileKind::kTtys, &img.ttys));
  if (HasFeature(inv, "uts-ns") || HasFeature(inv, "ipc-ns") || HasFeature(inv, "net-ns") || HasFeature(inv, "time-ns") ||
      HasFeature(inv, "mount-ns") || HasFeature(inv, "user-ns") ||
      HasFeature(inv, "cgroup-ns") || HasFeature(inv, "cgroup-settings"))
    CRYO_RETURN_IF_ERROR(ReadImageRecord(img, NamespacesName(), FileKind::kNamespaces, &img.namespaces));
  CRYO_RETURN_IF_ERROR(ValidateImage(img));
  if (inv.has_parent() != HasFeature(inv, "incremental"))
    return Status::Error(dir + "/" + InventoryName() + ": a parent image without the feature 'incremental', or the " +
                         "feature without a parent (corrupted)");
  CRYO_RETURN_IF_ERROR(LoadAncestors(&img));
  for (const auto& [pid, p] : img.processes) {
    if (p.core.zombie()) continue;
    CRYO_ASSIGN_OR_RETURN(PageSource pf, OpenPageFile(img, pid));
    (void)pf;
    CRYO_RETURN_IF_ERROR(OpenAncestorPageFiles(img, pid).status());
  }
  if (!img.shm.objects().empty()) {
    CRYO_ASSIGN_OR_RETURN(UniqueFd sf, OpenShmPageFile(img));
    (void)sf;
  }
  if (HasFeature(inv, "unlinked-files")) {
    CRYO_RETURN_IF_ERROR(ReadImageRecord(img, FilesName(), FileKind::kFiles, &img.files));
    if (!img.files.files().empty()) CRYO_RETURN_IF_ERROR(OpenFilesDataFile(img).status());
  }
  CRYO_RETURN_IF_ERROR(ValidateUnlinkedFiles(img));
  if (HasFeature(inv, "snapshot-files")) {
    CRYO_RETURN_IF_ERROR(ReadImageRecord(img, SnapshotName(), FileKind::kSnapshot, &img.snapshot));
    CRYO_RETURN_IF_ERROR(ValidateSnapshot(img));
    CRYO_RETURN_IF_ERROR(OpenSnapshotDataFile(img).status());
  }
  return img;
}

Result<UniqueFd> OpenSnapshotDataFile(const LoadedImage& img) {
  return OpenDataFile(img, SnapshotDataName(), img.snapshot.data_size());
}

Result<UniqueFd> OpenFilesDataFile(const LoadedImage& img) {
  return OpenDataFile(img, FilesDataName(), img.files.data_size());
}

}  // namespace cryo::image
