#include "ns/ns_thread.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <string_view>
#include <thread>

#include "base/file_util.h"
#include "base/unique_fd.h"

namespace cryo::ns {

namespace {
std::atomic<uint64_t> g_home_net{0};
std::atomic<int> g_home_net_fd{-1};
}  // namespace

void SetHomeNetInode(uint64_t ino) { g_home_net = ino; }
uint64_t HomeNetInode() { return g_home_net; }
void SetHomeNetFd(int fd) { g_home_net_fd = fd; }
int HomeNetFd() { return g_home_net_fd; }

Result<uint64_t> NsInode(pid_t pid, const char* name) {
  if (pid == 0 && g_home_net && std::string_view(name) == "net") return g_home_net.load();
  const std::string path = (pid ? "/proc/" + std::to_string(pid) : std::string("/proc/self")) + "/ns/" + name;
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return Status::FromErrno("stat " + path);
  return static_cast<uint64_t>(st.st_ino);
}

Status RunInNamespacesOf(pid_t pid, int nstypes, const std::function<Status()>& fn) {
  std::vector<std::pair<UniqueFd, int>> fds;
  for (auto [type, name] : {std::pair{CLONE_NEWIPC, "ipc"}, std::pair{CLONE_NEWUTS, "uts"},
                             std::pair{CLONE_NEWNET, "net"}}) {
    if (!(nstypes & type)) continue;
    const std::string path = "/proc/" + std::to_string(pid) + "/ns/" + name;
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return Status::FromErrno("open " + path);
    fds.emplace_back(std::move(fd), type);
  }
  Status st = Status::Ok();
  std::thread t([&] {
    for (auto& [fd, type] : fds)
      if (::setns(fd.get(), type) != 0) {
        st = Status::FromErrno("setns into the namespace of pid " + std::to_string(pid));
        return;
      }
    st = fn();
  });
  t.join();
  return st;
}

Result<std::string> ReadSysctl(const std::string& path) {
  CRYO_ASSIGN_OR_RETURN(std::string text, ReadFileToString("/proc/sys/" + path));
  while (!text.empty() && text.back() == '\n') text.pop_back();
  return text;
}

Status WriteSysctl(const std::string& path, const std::string& value) {
  const std::string full = "/proc/sys/" + path;
  UniqueFd fd(::open(full.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno("open " + full);
  if (::write(fd.get(), value.data(), value.size()) != static_cast<ssize_t>(value.size()))
    return Status::FromErrno("writing \"" + value + "\" to " + full);
  return Status::Ok();
}

Result<std::vector<std::vector<long long>>> ReadSysvipcTable(const std::string& name, size_t min_columns) {
  const std::string path = "/proc/sysvipc/" + name;
  CRYO_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  std::vector<std::vector<long long>> rows;
  bool header = true;
  for (std::string_view line : SplitLines(text)) {
    if (header) {  // "key semid perms ..."
      header = false;
      continue;
    }
    if (Trim(line).empty()) continue;
    std::vector<long long> row;
    for (std::string_view w : SplitWords(line)) {
      long long v = 0;
      // perms is octal (ipc/util.c "%4o"), every other column decimal.
      const int base = row.size() == 2 ? 8 : 10;
      auto [p, ec] = std::from_chars(w.data(), w.data() + w.size(), v, base);
      if (ec != std::errc() || p != w.data() + w.size())
        return Status::Error("malformed " + path + " line \"" + std::string(line) + "\"");
      row.push_back(v);
    }
    if (row.size() < min_columns) return Status::Error("malformed " + path + " line \"" + std::string(line) + "\"");
    rows.push_back(std::move(row));
  }
  return rows;
}

}  // namespace cryo::ns
