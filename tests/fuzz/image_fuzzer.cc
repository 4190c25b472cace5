// libFuzzer target over the image reader: the input is an image directory
// (image_input.h), written to a directory on tmpfs, then read the way `cryo
// restore` and `cryo show` read one: LoadImage (every file, every field rule)
// and, if it accepts the image, ShowText and ShowJson; every file is also
// read on its own with ReadRecord as each kind. A crash, a hang, a leak or an
// allocation beyond the limit is a finding.
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <google/protobuf/stubs/logging.h>

#include "image/image_dir.h"
#include "image/show.h"
#include "image_input.h"

namespace {

void Empty(const std::string& dir);

// Under /tmp, not /dev/shm (tests look for what is left there); removed at
// exit. A plain array: no destructor runs before the exit handler.
char g_dir[64];

std::string WorkDir() {
  if (!g_dir[0]) {
    snprintf(g_dir, sizeof(g_dir), "/tmp/cryo-fuzz-%d", static_cast<int>(::getpid()));
    ::mkdir(g_dir, 0700);
    std::atexit([] {
      Empty(g_dir);
      ::rmdir(g_dir);
    });
  }
  return g_dir;
}

void Empty(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return;
  while (struct dirent* e = ::readdir(d)) {
    const std::string n = e->d_name;
    if (n == "." || n == "..") continue;
    if (::unlinkat(::dirfd(d), n.c_str(), 0) != 0) ::unlinkat(::dirfd(d), n.c_str(), AT_REMOVEDIR);
  }
  ::closedir(d);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // A record that does not parse is refused by cryo's own message.
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace cryo::image;
  const std::string dir = WorkDir();
  Empty(dir);
  std::vector<fuzz::InputFile> files = fuzz::ParseInput(data, size);
  if (!fuzz::WriteImage(dir, files)) return 0;
  cryo::Result<LoadedImage> img = LoadImage(dir);
  if (img.ok()) {
    volatile size_t n = ShowText(*img).size() + ShowJson(*img).size();
    (void)n;
    for (const auto& [pid, p] : img->processes) {
      if (p.core.zombie()) continue;
      auto src = OpenPageFile(*img, pid);
      // A compressed page file: every run read back through its frames.
      if (src.ok() && src->compressed())
        for (const PageRun& r : p.mm.runs()) {
          std::string buf(r.npages() * kPageSize, '\0');
          (void)src->Read(buf.data(), buf.size(), r.offset());
        }
    }
    if (img->shm.objects_size()) (void)OpenShmPageFile(*img);
  } else {
    volatile size_t n = img.status().ToString().size();
    (void)n;
  }
  // Every file as every kind of record, on its own.
  for (const fuzz::InputFile& f : files) {
    Inventory inv;
    ProcessCore core;
    Mm mm;
    FdTable fds;
    PipeTable pipes;
    ShmTable shm;
    TtyTable ttys;
    (void)ReadRecord(dir, f.name, FileKind::kInventory, &inv);
    (void)ReadRecord(dir, f.name, FileKind::kProcessCore, &core);
    (void)ReadRecord(dir, f.name, FileKind::kMm, &mm);
    (void)ReadRecord(dir, f.name, FileKind::kFdTable, &fds);
    (void)ReadRecord(dir, f.name, FileKind::kPipes, &pipes);
    (void)ReadRecord(dir, f.name, FileKind::kShm, &shm);
    (void)ReadRecord(dir, f.name, FileKind::kTtys, &ttys);
  }
  return 0;
}
