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

namespace cryo::image {

class ImageWriter {
 public:
  static Result<std::unique_ptr<ImageWriter>> Create(Env* env, const std::string& dir);

  ~ImageWriter();

  // Writes header + serialized message; durable after SyncFiles().
  Status WriteRecord(const std::string& name, FileKind kind, const google::protobuf::MessageLite& msg);
  // A page file: the caller writes page data from offset kPageDataOffset on and
  // then hands it to FinishPageFile, which writes the header; durable after
  // SyncFiles().
  Result<std::unique_ptr<WritableFile>> CreatePageFile(const std::string& name);
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
  const std::string& dir() const { return dir_; }

  // A dump's first file: IncompleteMarkerName(), holding `what`.
  Status MarkIncomplete(const std::string& what);
  // A dump's last step: the marker removed and the directory synced.
  Status MarkComplete();
  // A dump that failed or was interrupted: drops the jobs not run yet, then
  // removes every file this writer created and the directory if it created
  // it (and nothing else is in it); files it did not create stay. Best
  // effort: the first error is returned.
  Status Discard();

 private:
  ImageWriter(Env* env, std::string dir) : env_(env), dir_(std::move(dir)) {}
  Status WritePayload(const std::string& name, FileKind kind, const std::string& payload);
  Result<std::unique_ptr<WritableFile>> NewFile(const std::string& name);
  Status AddPending(std::unique_ptr<WritableFile> file, uint64_t size);
  Status SyncPending();
  void WriterLoop();
  Env* env_;
  std::string dir_;
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

struct LoadedImage {
  std::string dir;
  Inventory inventory;
  std::map<int, ProcessImage> processes;  // by pid
  PipeTable pipes;
  ShmTable shm;  // memfds, POSIX and SysV shared memory (shm.img)
  TtyTable ttys;
  UnlinkedFileTable files;  // unlinked files and directories (files.img)
};

// Reads one metadata file, checking magic, version, kind, size and checksum.
Status ReadRecord(const std::string& dir, const std::string& name, FileKind kind, google::protobuf::MessageLite* msg);
// Loads and validates a whole image: every record, the features it needs, the
// page files' headers and sizes against the page runs. Nothing is created.
Result<LoadedImage> LoadImage(const std::string& dir);
// Opens a process's page file after checking its header against `mm`.
Result<UniqueFd> OpenPageFile(const std::string& dir, int pid, const Mm& mm);
// Opens shm-pages.img after checking its header against `shm`.
Result<UniqueFd> OpenShmPageFile(const std::string& dir, const ShmTable& shm);
// Opens files-data.img after checking its header against `files`.
Result<UniqueFd> OpenFilesDataFile(const std::string& dir, const UnlinkedFileTable& files);
// files.img (and the holders that name its files): every field checked.
Status ValidateUnlinkedFiles(const LoadedImage& img);

}  // namespace cryo::image
