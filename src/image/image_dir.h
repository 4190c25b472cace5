// Writing and reading the files of an image directory. Every file is written
// 0600 inside a 0700 directory, checksummed, and fsynced before the dump is
// declared complete.
#pragma once

#include <google/protobuf/message_lite.h>

#include <map>
#include <memory>
#include <string>

#include "base/env.h"
#include "base/status.h"
#include "base/unique_fd.h"
#include "cryo/image.pb.h"
#include "image/format.h"

namespace cryo::image {

class ImageWriter {
 public:
  static Result<std::unique_ptr<ImageWriter>> Create(Env* env, const std::string& dir);

  // Writes header + serialized message, fsyncs and closes the file.
  Status WriteRecord(const std::string& name, FileKind kind, const google::protobuf::MessageLite& msg);
  // A page file: the caller writes page data from offset kPageDataOffset on and
  // then calls FinishPageFile, which writes the header and fsyncs.
  Result<std::unique_ptr<WritableFile>> CreatePageFile(const std::string& name);
  Status FinishPageFile(WritableFile* file, uint64_t payload_size);
  // fsyncs the directory (new entries durable).
  Status SyncDir();
  const std::string& dir() const { return dir_; }

 private:
  ImageWriter(Env* env, std::string dir) : env_(env), dir_(std::move(dir)) {}
  Env* env_;
  std::string dir_;
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

}  // namespace cryo::image
