// Post-copy migration over the stream (cryo migrate --lazy,
// docs/stream-protocol.md "Post-copy"): the image goes without the contents
// of the private anonymous pages (runs marked `remote`), the target restores
// with --lazy and fetches them from the source, which reads them from its
// still-frozen original on demand.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "base/status.h"
#include "mem/remote_pages.h"
#include "stream/connection.h"

namespace cryo::stream {

// The source's remote runs: pid -> [(vaddr, bytes)], what PAGE_REQ may ask for.
using RemoteRuns = std::map<pid_t, std::vector<std::pair<uint64_t, uint64_t>>>;

// The source, once its image is acknowledged: answers PAGE_REQ with the
// pages read from the frozen process (/proc/PID/mem), READY with GO (from
// then on *committed: the original never resumes), until ALL_IN (Ok). An
// error: the connection broke, timed out (`timeout_s` of silence) or the
// receiver refused; with *committed false the original may resume.
// `commit` is called on READY before GO goes (its failure: ERROR, not committed).
Status ServePostCopy(Connection& conn, const RemoteRuns& runs, double timeout_s, const std::function<Status()>& commit,
                     bool* committed);

// The target's side: fetches pages over the connection. Requests are
// pipelined (several outstanding, answered in the order asked: the source
// serves them one after the other); several threads may use it (one at a
// time on the connection).
class StreamPages final : public RemotePageSource {
 public:
  StreamPages(Connection* conn, double timeout_s) : conn_(conn), timeout_s_(timeout_s) {}
  Status Fetch(pid_t pid, uint64_t vaddr, uint64_t len, void* out) override;
  Status Request(pid_t pid, uint64_t vaddr, uint64_t len, uint64_t tag) override;
  Status Collect(std::vector<Arrival>* out) override;
  int PollFd() const override { return conn_->fd(); }
  uint64_t Outstanding() const override;
  Status Commit() override;
  Status AllIn() override;
  Status Map(pid_t pid, const std::vector<std::pair<uint64_t, uint64_t>>& vmas,
             std::vector<std::pair<uint64_t, uint64_t>>* present) override;

 private:
  struct Asked {
    uint64_t tag;
    pid_t pid;
    uint64_t vaddr, len, got;
  };
  Status RequestLocked(pid_t pid, uint64_t vaddr, uint64_t len, uint64_t tag);
  // Reads one frame (at most timeout_s_ of silence): PAGES go to arrived_
  // (for the first request outstanding), another frame into *other.
  Status ReadOneLocked(Frame* other, bool* got_other);
  // "pid P: the pages at 0x... (N bytes, post-copy)" of the first request
  // outstanding, or the source's address.
  std::string WhereLocked() const;
  Status FailLocked(const Status& s);

  Connection* conn_;
  double timeout_s_;
  mutable std::mutex mu_;
  std::deque<Asked> asked_;
  std::deque<Arrival> arrived_;
  uint64_t outstanding_ = 0;
  double last_progress_ = 0;  // an answer came, or a request when none was outstanding
  Status failed_;
};

}  // namespace cryo::stream
