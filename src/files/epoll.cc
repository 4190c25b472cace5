// epoll(7): the interest list is in fdinfo, one "tfd:" line per registered
// file. The restore creates an empty epoll instance in Open() and registers the
// targets in Finish(), once every fd of the process is in place. Only targets
// that are open, under the number they were registered with, in the same
// process can be restored: anything else fails the dump.
//
// What is not exact: the kernel rebuilds the ready list on registration from
// the targets' current state. For level-triggered entries that is the same
// thing; an edge-triggered entry whose target is ready reports one more event
// after the restore (registration counts as an edge), even if the process had
// already collected that edge. EPOLLWAKEUP is dropped by the kernel without
// CAP_BLOCK_SUSPEND.
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <charconv>

#include "base/file_util.h"
#include "base/parse_number.h"
#include "files/event_fds.h"
#include "files/fd_kind.h"

namespace cryo {

namespace {

class Epoll final : public FdKindHandler {
 public:
  image::FdKind kind() const override { return image::FD_EPOLL; }
  const char* name() const override { return "epoll"; }
  const char* feature() const override { return "epoll"; }
  bool Handles(const FdSource& s) const override { return s.link == "anon_inode:[eventpoll]"; }
  Status Dump(const FdSource& s, image::Fd* out) const override {
    CRYO_ASSIGN_OR_RETURN(std::vector<EpollEntry> entries, ParseEpollInfo(s.info));
    const std::string pid = std::to_string(s.pid);
    for (const EpollEntry& e : entries) {
      const std::string target = "fd " + std::to_string(e.fd);
      struct stat st;
      if (::stat(("/proc/" + pid + "/fd/" + std::to_string(e.fd)).c_str(), &st) != 0) {
        if (errno == ENOENT)
          return Status::Error("watches target " + target + ", which is not open in pid " + pid +
                               " (registered, then its fd was closed or the epoll fd passed to another "
                               "process); only targets in the same process's fd table are supported");
        return Status::FromErrno("stat of epoll target " + target + " of pid " + pid);
      }
      if (st.st_ino != e.ino || st.st_dev != e.dev)
        return Status::Error("watches target " + target + " of pid " + pid +
                             ", but that fd now holds another file (the registered one was closed and the number "
                             "reused); only targets in the same process's fd table are supported");
      image::EpollTarget* t = out->mutable_epoll()->add_targets();
      t->set_fd(e.fd);
      t->set_events(e.events);
      t->set_data(e.data);
    }
    return Status::Ok();
  }
  Result<int> Open(const image::Fd& f) const override {
    int fd = ::epoll_create1(EPOLL_CLOEXEC);
    if (fd < 0) return Status::FromErrno("epoll_create1");
    if ((f.flags() & O_NONBLOCK) && ::fcntl(fd, F_SETFL, O_NONBLOCK) != 0) {
      Status s = Status::FromErrno("F_SETFL O_NONBLOCK on the epoll fd");
      ::close(fd);
      return s;
    }
    return fd;
  }
  Status Finish(const image::Fd& f) const override {
    for (const image::EpollTarget& t : f.epoll().targets()) {
      struct epoll_event ev{};
      ev.events = t.events();
      ev.data.u64 = t.data();
      // EEXIST: the description is shared and another holder registered it.
      if (::epoll_ctl(f.fd(), EPOLL_CTL_ADD, t.fd(), &ev) != 0 && errno != EEXIST)
        return Status::FromErrno("epoll_ctl(EPOLL_CTL_ADD) of target fd " + std::to_string(t.fd()));
    }
    return Status::Ok();
  }
};

}  // namespace

uint64_t KernelDevToUser(uint64_t kdev) { return makedev(kdev >> 20, kdev & 0xfffff); }

const std::string* FindFdinfoPair(const std::vector<std::pair<std::string, std::string>>& pairs, const char* key) {
  for (const auto& [k, v] : pairs)
    if (k == key) return &v;
  return nullptr;
}

bool SplitFdinfoPairs(std::string_view text, std::string* first,
                      std::vector<std::pair<std::string, std::string>>* pairs) {
  std::vector<std::string_view> words = SplitWords(text);
  if (words.empty()) return false;
  *first = std::string(words[0]);
  for (size_t i = 1; i < words.size(); ++i) {
    std::string_view w = words[i];
    const size_t colon = w.find(':');
    if (colon == std::string_view::npos || colon == 0) return false;
    std::string_view key = w.substr(0, colon), value = w.substr(colon + 1);
    if (value.empty()) {  // "events:       19": the value is the next word
      if (i + 1 >= words.size()) return false;
      value = words[++i];
    }
    pairs->emplace_back(std::string(key), std::string(value));
  }
  return true;
}

Result<std::vector<EpollEntry>> ParseEpollInfo(const proc::FdInfo& info) {
  std::vector<EpollEntry> out;
  auto [begin, end] = info.fields.equal_range("tfd");
  for (auto it = begin; it != end; ++it) {
    const std::string line = "tfd: " + it->second;
    std::string first;
    std::vector<std::pair<std::string, std::string>> pairs;
    EpollEntry e;
    const std::string *events, *data, *ino, *sdev;
    uint64_t kdev = 0;
    auto field = [&pairs](const char* key) { return FindFdinfoPair(pairs, key); };
    if (!SplitFdinfoPairs(it->second, &first, &pairs) || !ParseNumber(first, &e.fd, 10) ||
        !(events = field("events")) || !(data = field("data")) || !(ino = field("ino")) ||
        !(sdev = field("sdev")) || !ParseNumber(*events, &e.events, 16) || !ParseNumber(*data, &e.data, 16) ||
        !ParseNumber(*ino, &e.ino, 16) || !ParseNumber(*sdev, &kdev, 16))
      return Status::Error("malformed epoll fdinfo line \"" + line + "\"");
    e.dev = KernelDevToUser(kdev);
    out.push_back(e);
  }
  return out;
}

const FdKindHandler* EpollHandler() {
  static const Epoll h;
  return &h;
}

}  // namespace cryo
