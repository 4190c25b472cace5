#include "files/lock_lines.h"

#include <sys/sysmacros.h>

#include <charconv>

#include "base/file_util.h"
#include "base/parse_number.h"
#include "files/fd_kind.h"

namespace cryo {

namespace {

}  // namespace

dev_t LockLine::dev() const { return makedev(major, minor); }

std::string DescribeRange(uint64_t start, uint64_t end, bool to_eof) {
  if (to_eof) return "bytes " + std::to_string(start) + " to the end of the file";
  return "bytes " + std::to_string(start) + "-" + std::to_string(end);
}

std::string LockLine::Describe() const {
  const bool write = type == "WRITE";
  if (kind == "POSIX" || kind == "OFDLCK")
    return std::string(kind == "POSIX" ? "a POSIX " : "an OFD ") + (write ? "write" : "read") + " lock on " +
           DescribeRange(start, end, to_eof);
  if (kind == "FLOCK") return std::string("a flock ") + (write ? "exclusive" : "shared") + " lock";
  if (kind == "LEASE") return std::string("a ") + (write ? "write" : "read") + " lease";
  return "a " + kind + " " + type + " lock";
}

Result<LockLine> ParseLockLine(std::string_view line) {
  auto bad = [&] { return Status::Error("malformed lock line \"" + std::string(line) + "\""); };
  std::string_view s = Trim(line);
  if (StartsWith(s, "lock:")) s = Trim(s.substr(5));
  const size_t colon = s.find(':');
  if (colon == std::string_view::npos) return bad();
  LockLine l;
  if (!ParseNumber(s.substr(0, colon), &l.id)) return bad();
  std::vector<std::string_view> w = SplitWords(s.substr(colon + 1));
  if (!w.empty() && w[0] == "->") {
    l.waiter = true;
    w.erase(w.begin());
  }
  // KIND STATE TYPE PID DEV:INO START END|EOF
  if (w.size() != 7) return bad();
  l.kind = w[0];
  l.state = w[1];
  l.type = w[2];
  if (!ParseNumber(w[3], &l.pid)) return bad();
  const std::string_view id = w[4];
  if (StartsWith(id, "<none>")) {
    l.has_inode = false;
  } else {
    const size_t c1 = id.find(':'), c2 = id.rfind(':');
    if (c1 == c2 || c1 == std::string_view::npos || !ParseNumber(id.substr(0, c1), &l.major, 16) ||
        !ParseNumber(id.substr(c1 + 1, c2 - c1 - 1), &l.minor, 16) || !ParseNumber(id.substr(c2 + 1), &l.ino))
      return bad();
  }
  if (!ParseNumber(w[5], &l.start)) return bad();
  if (w[6] == "EOF") {
    l.to_eof = true;
  } else if (!ParseNumber(w[6], &l.end) || l.end < l.start) {
    return bad();
  }
  return l;
}

Result<std::vector<LockLine>> ParseProcLocks(std::string_view text) {
  std::vector<LockLine> out;
  for (std::string_view line : SplitLines(text)) {
    if (Trim(line).empty()) continue;
    CRYO_ASSIGN_OR_RETURN(LockLine l, ParseLockLine(line));
    out.push_back(std::move(l));
  }
  return out;
}

Result<std::vector<LockLine>> ReadProcLocks() {
  CRYO_ASSIGN_OR_RETURN(std::string text, ReadFileToString("/proc/locks"));
  auto locks = ParseProcLocks(text);
  if (!locks.ok()) return locks.status().Prefixed("/proc/locks");
  return locks;
}

std::string DescribeLockHolders(dev_t dev, uint64_t ino) {
  auto locks = ReadProcLocks();
  if (!locks.ok()) return "";
  std::string out;
  for (const LockLine& l : *locks) {
    if (l.waiter || !l.has_inode || l.dev() != dev || l.ino != ino) continue;
    if (!out.empty()) out += "; ";
    out += (l.pid > 0 ? NamePid(l.pid) : std::string("an open file description")) + " holds ";
    out += l.Describe();
  }
  return out;
}

}  // namespace cryo
