// Tests only: a small image that passes every check of LoadImage, built in
// memory so that a test can change one field and write it.
#pragma once

#include <map>
#include <string>

#include "base/status.h"
#include "image/image_dir.h"

namespace cryo::image::testing {

struct TestImage {
  Inventory inv;
  std::map<int, ProcessImage> procs;  // by pid
  std::map<int, std::string> pages;   // page data of each live process
  PipeTable pipes;
  ShmTable shm;
  std::string shm_pages;
  TtyTable ttys;
  NamespaceTable ns;  // written as ns.img when the inventory lists time-ns
};

// One live process, pid 42: one thread, one private anonymous VMA
// 0x10000-0x14000 with two stored pages at 0x11000, no fd.
TestImage MakeTestImage();
// A live child of `ppid` (same session and group), a copy of pid 42's records.
void AddChild(TestImage* t, int pid, int ppid);
// Writes the image into `dir`, with a new image id; pipes.img, shm.img (and
// shm-pages.img), ttys.img if the inventory lists their features.
Status WriteTestImage(const std::string& dir, const TestImage& t);

// A fresh directory under /tmp, removed with its content on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace cryo::image::testing
