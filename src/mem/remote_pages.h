// Where a lazy restore's pages come from when they are not in the image:
// post-copy migration (cryo migrate --lazy, feature "remote-pages"), whose
// page runs marked `remote` stay in the frozen source process until the
// target asks for them (stream/postcopy.h implements this over the stream).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "base/status.h"

namespace cryo {

class RemotePageSource {
 public:
  virtual ~RemotePageSource() = default;
  // Reads `len` bytes (whole pages) at `vaddr` of image process `pid` into
  // `out`, waiting for them. An error is final: the page cannot come (never
  // zeros instead).
  virtual Status Fetch(pid_t pid, uint64_t vaddr, uint64_t len, void* out) = 0;

  // (feature "remote-vmas") Which pages of the VMAs `vmas` (start, end) of
  // `pid` exist on the source (present or swapped out, not the zero page):
  // appended to `present` as (vaddr, bytes), ascending. Asked before any
  // Request; waits for the answers.
  virtual Status Map(pid_t pid, const std::vector<std::pair<uint64_t, uint64_t>>& vmas,
                     std::vector<std::pair<uint64_t, uint64_t>>* present) = 0;

  // Pipelined requests: several may be outstanding; their pages arrive in
  // the order asked (Collect), each request's in one or more pieces.
  struct Arrival {
    uint64_t tag;   // the request's
    pid_t pid;
    uint64_t vaddr;  // of the first byte of `data` + `at`
    std::string data;
    size_t at = 0;  // where the pages start in `data`
    uint64_t len() const { return data.size() - at; }
    const char* bytes() const { return data.data() + at; }
  };
  // Asks for `len` bytes at `vaddr` of `pid` (whole pages), without waiting.
  virtual Status Request(pid_t pid, uint64_t vaddr, uint64_t len, uint64_t tag) = 0;
  // Appends what has arrived for the requests, without waiting for more
  // than the rest of a piece that has begun to arrive. An error is final
  // (names the request it was waiting for), also an answer overdue.
  virtual Status Collect(std::vector<Arrival>* out) = 0;
  // The file descriptor that becomes readable (poll(2)) when pages arrive.
  virtual int PollFd() const = 0;
  // Bytes asked for and not yet collected.
  virtual uint64_t Outstanding() const = 0;

  // The tree is restored and about to be released: the source must commit
  // (never resume its original) before it runs here. An error: do not release.
  virtual Status Commit() = 0;
  // Every page is in: the source may kill its original.
  virtual Status AllIn() = 0;
};

}  // namespace cryo
