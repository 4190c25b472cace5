#include "restore/heap_file.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "base/file_util.h"
#include "proc/proc.h"

namespace cryo {
namespace {

// kB of the heap in /proc/self/smaps (Rss of [heap] and of the file it moved to).
uint64_t HeapRss() {
  auto text = ReadFileToString("/proc/self/smaps");
  if (!text.ok()) return ~0ull;
  uint64_t kb = 0;
  bool in = false;
  size_t pos = 0;
  while (pos < text->size()) {
    size_t nl = text->find('\n', pos);
    if (nl == std::string::npos) nl = text->size();
    const std::string line = text->substr(pos, nl - pos);
    pos = nl + 1;
    if (!line.empty() && isxdigit(static_cast<unsigned char>(line[0])) && line.find('-') < 16)
      in = line.find("[heap]") != std::string::npos || line.find("memfd:cryo-heap") != std::string::npos;
    else if (in && line.rfind("Rss:", 0) == 0)
      kb += std::stoull(line.substr(4));
  }
  return kb;
}

TEST(HeapFile, KeepsTheBytesAndClonesCopyNoneOfThem) {
  // Small blocks: malloc serves them from the [heap] (brk), not mmap.
  std::vector<std::unique_ptr<uint64_t[]>> blocks;
  for (int b = 0; b < 512; ++b) {
    blocks.emplace_back(new uint64_t[512]);
    for (int i = 0; i < 512; ++i) blocks.back()[i] = static_cast<uint64_t>(b) * 1000003u + static_cast<uint64_t>(i);
  }
  auto moved = MoveHeapToFile();
  // A child forked now starts with (almost) none of the heap mapped: fork
  // copied no page-table entry of it (without the move, all of it).
  const pid_t child = fork();
  if (child == 0) _exit(moved.ok() && HeapRss() * 1024 < *moved / 4 ? 0 : 1);
  ASSERT_TRUE(moved.ok()) << moved.status().ToString();
  ASSERT_GE(*moved, 2u << 20);
  ASSERT_GE(child, 0);
  int st = 0;
  ASSERT_EQ(waitpid(child, &st, 0), child);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "the child inherited the heap's pages";
  for (int b = 0; b < 512; ++b)
    for (int i = 0; i < 512; ++i)
      ASSERT_EQ(blocks[b][i], static_cast<uint64_t>(b) * 1000003u + static_cast<uint64_t>(i)) << b << " " << i;
  TakeBackHeap();
  // cryo's own copy again, writable, bytes unchanged.
  for (int b = 0; b < 512; ++b) blocks[b][7] += 1;
  for (int b = 0; b < 512; ++b) ASSERT_EQ(blocks[b][7], static_cast<uint64_t>(b) * 1000003u + 8u);
}

}  // namespace
}  // namespace cryo
