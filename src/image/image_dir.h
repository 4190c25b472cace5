// Writing and reading the files of an image directory. Every file is written
// 0600 inside a 0700 directory, checksummed, and fsynced before the dump is
// declared complete.
//
// The writer does not fsync a file as soon as it is written: it starts the
// file's writeback and keeps it open until SyncFiles(), which fsyncs every
// file written since the previous call from several threads at once (on a
// file system without a journal every fsync waits for its own cache flush;
// concurrent ones share flushes). A tree of N processes so pays a few flushes
// instead of 4 N in a row.
//
// Files can also be written on a writer thread (Async, AsyncWriteRecord), so
// that creating and writing them overlaps with collecting the next process.
#pragma once

#include <google/protobuf/message_lite.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/env.h"
#include "base/status.h"
#include "base/unique_fd.h"
#include "cryo/image.pb.h"
#include "image/format.h"
#include "image/image_file.h"
#include "image/page_frames.h"
#include "image/page_source.h"

namespace cryo::image {

class ImageWriter {
 public:
  // A writer for a new image: a new random image id, the current format.
  static Result<std::unique_ptr<ImageWriter>> Create(Env* env, const std::string& dir);
  // A writer of more files for the existing image `identity` (tools and tests
  // that edit an image): its format version and id.
  static Result<std::unique_ptr<ImageWriter>> ForImage(Env* env, const std::string& dir,
                                                       const ImageIdentity& identity);

  ~ImageWriter();

  // Writes header + serialized message; durable after SyncFiles().
  Status WriteRecord(const std::string& name, FileKind kind, const google::protobuf::MessageLite& msg);
  // A page file: the caller writes page data from offset kPageDataOffset on and
  // then hands it to FinishPageFile, which writes the header; durable after
  // SyncFiles().
  // With compression set, a process's page file (pages-PID.img) is written in
  // compressed frames (page_frames.h) by a pool of `compress_workers` threads.
  Result<std::unique_ptr<WritableFile>> CreatePageFile(const std::string& name);
  void set_compression(const Compression& c, int compress_workers) {
    compression_ = c;
    compress_workers_ = compress_workers;
  }
  const Compression& compression() const { return compression_; }
  Status FinishPageFile(std::unique_ptr<WritableFile> file, uint64_t payload_size);
  // Runs `job` on the writer thread (started on first use), jobs in order. The
  // first failed job's error is returned by Flush() (and SyncFiles()); later
  // jobs are then skipped. `bytes` is what the job holds in memory: queued jobs
  // hold at most 16 MiB (and 32 jobs), Async waits for room. Without a thread
  // (it could not be started) jobs run at once.
  void Async(std::function<Status()> job, uint64_t bytes = 0);
  // WriteRecord on the writer thread (the message is serialized now).
  void AsyncWriteRecord(const std::string& name, FileKind kind, const google::protobuf::MessageLite& msg);
  // Waits until every queued job ran; the first error of any.
  Status Flush();
  // Flush(), then fsyncs and closes every file written since the last call;
  // the first error names its file. Not from a job.
  Status SyncFiles();
  // fsyncs the directory (new entries durable).
  Status SyncDir();
  // Writes inventory.img (after SyncFiles: every other file is complete), with
  // the image id and the size of every file this writer wrote.
  Status WriteInventory(Inventory inv);
  const std::string& dir() const { return dir_; }
  const std::string& image_id() const { return image_id_; }

  // A dump's first file: IncompleteMarkerName(), holding `what`.
  Status MarkIncomplete(const std::string& what);
  // A dump's last step: the marker removed and the directory synced (and its
  // parent, if this writer created it), then the Env's Commit (a streamed
  // image: the receiver's acknowledgement that it is durable).
  Status MarkComplete();
  // A dump that failed or was interrupted: drops the jobs not run yet, then
  // removes every file this writer created and the directory if it created
  // it (and nothing else is in it); files it did not create stay. Best
  // effort: the first error is returned.
  Status Discard();

 private:
  ImageWriter(Env* env, std::string dir, uint32_t version, std::string id)
      : env_(env), dir_(std::move(dir)), format_version_(version), image_id_(std::move(id)) {}
  void NoteSize(const std::string& name, uint64_t size);
  Status WritePayload(const std::string& name, FileKind kind, const std::string& payload);
  Result<std::unique_ptr<WritableFile>> NewFile(const std::string& name);
  Status AddPending(std::unique_ptr<WritableFile> file, uint64_t size);
  Status SyncPending();
  Status SyncParentDir();
  void WriterLoop();
  Env* env_;
  std::string dir_;
  uint32_t format_version_;
  std::string image_id_;
  std::mutex sizes_mu_;
  std::map<std::string, uint64_t> sizes_;  // every file written, by name
  std::mutex pending_mu_;
  std::vector<std::unique_ptr<WritableFile>> pending_;  // written, not yet fsynced

  struct Job {
    std::function<Status()> run;
    uint64_t bytes;
  };
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;
  uint64_t queued_bytes_ = 0;
  bool running_ = false;  // a job is running
  bool stop_ = false;
  Status async_error_;
  std::thread writer_;
  bool no_thread_ = false;  // it could not be started

  Compression compression_;
  int compress_workers_ = 0;
  bool created_dir_ = false;  // the directory did not exist before
  std::mutex created_mu_;
  std::vector<std::string> created_;  // names of the files created, in order
};

// One process of a loaded image.
struct ProcessImage {
  ProcessCore core;
  Mm mm;
  FdTable fds;
};

// An ancestor of an incremental image (feature "incremental"): the parent
// image, its parent, ... whose page files hold the pages the image did not
// store again (Mm.parent_runs).
struct AncestorImage {
  std::string dir;
  ImageIdentity identity;
  Inventory inventory;
};

struct LoadedImage {
  std::string dir;
  ImageIdentity identity;  // format version, image id, file sizes
  Inventory inventory;
  std::map<int, ProcessImage> processes;  // by pid
  PipeTable pipes;
  ShmTable shm;  // memfds, POSIX and SysV shared memory (shm.img)
  TtyTable ttys;
  UnlinkedFileTable files;  // unlinked files and directories (files.img)
  NamespaceTable namespaces;  // the tree's own UTS and IPC namespaces (ns.img)
  SnapshotTable snapshot;  // files whose content the image carries (snapshot.img)
  // Incremental images: ancestors[0] the parent, [1] its parent, ...
  // (PageRun.depth d is ancestors[d - 1]).
  std::vector<AncestorImage> ancestors;
};

// Reads one metadata file on its own (tools, tests), checking magic, version,
// kind, size and checksum, but not that it belongs to any image.
Status ReadRecord(const std::string& dir, const std::string& name, FileKind kind, google::protobuf::MessageLite* msg);
// Reads one metadata file of the loaded image `img` (its dir and identity set,
// e.g. from LoadImage): also checks that it belongs to the image (format,
// image id) and has the size the inventory records. A new kind of record read
// by LoadImage goes through this.
Status ReadImageRecord(const LoadedImage& img, const std::string& name, FileKind kind,
                       google::protobuf::MessageLite* msg);
// Reads inventory.img and the identity every other file must match.
Status ReadInventory(const std::string& dir, Inventory* inv, ImageIdentity* identity);
// Rewrites one record of an existing image (tools and tests that edit images):
// the image's format and id in its header, its size updated in the inventory.
Status ReplaceRecord(const std::string& dir, const std::string& name, FileKind kind,
                     const google::protobuf::MessageLite& msg);
// Loads and validates a whole image: every record, every field against its
// range and the records it refers to (validate.h), the features it needs, the
// page files' headers and sizes against the page runs. Nothing is created.
Result<LoadedImage> LoadImage(const std::string& dir);
// Opens the data file (kind 5) `name` of the image in `dir` whose identity is
// `identity`: its size (`size`) as the inventory lists it, its header (`h`)
// of that image; its payload is the caller's to check.
Result<UniqueFd> OpenDataFileOf(const std::string& dir, const ImageIdentity& identity, const std::string& name,
                                uint64_t* size, FileHeader* h);
// Opens a process's page file after checking its header against its Mm
// (raw, or compressed when the image lists "compressed-pages").
Result<PageSource> OpenPageFile(const LoadedImage& img, int pid);
// Opens shm-pages.img after checking its header against the ShmTable.
Result<UniqueFd> OpenShmPageFile(const LoadedImage& img);
// Opens files-data.img after checking its header against img.files.
Result<UniqueFd> OpenFilesDataFile(const LoadedImage& img);
// files.img (and the holders that name its files): every field checked.
Status ValidateUnlinkedFiles(const LoadedImage& img);
// Opens snapshot-data.img after checking its header against img.snapshot.
Result<UniqueFd> OpenSnapshotDataFile(const LoadedImage& img);
// snapshot.img: paths, kinds, order, extents, depths against the ancestors.
Status ValidateSnapshot(const LoadedImage& img);

}  // namespace cryo::image
