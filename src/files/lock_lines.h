// The kernel's text form of file locks: the lines of /proc/locks and the
// "lock:" lines of /proc/PID/fdinfo/N, both printed by lock_get_status() in
// fs/locks.c (proc(5)):
//
//   1: POSIX  ADVISORY  WRITE 1234 08:01:5678 0 EOF
//   1: -> POSIX  ADVISORY  WRITE 1240 08:01:5678 10 14   (a request blocked on lock 1)
//   2: OFDLCK ADVISORY  READ  -1 08:01:5678 100 199        (OFD locks show pid -1)
//   3: FLOCK  ADVISORY  WRITE 1234 08:01:99 0 EOF
//   4: LEASE  ACTIVE    READ  1234 08:01:77 0 EOF           (or BREAKING, BREAKER)
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace cryo {

struct LockLine {
  int64_t id = 0;          // the ordinal; a blocked request repeats its blocker's
  bool waiter = false;     // "->": a request blocked on the lock of the same id
  std::string kind;        // POSIX, OFDLCK, FLOCK, LEASE, DELEG, ACCESS, UNKNOWN
  std::string state;       // second column: ADVISORY (POSIX, OFDLCK, FLOCK), ACTIVE/BREAKING/BREAKER (leases)
  std::string type;        // READ, WRITE, UNLCK
  pid_t pid = 0;           // -1 for OFD locks, 0 if the owner is not visible
  uint32_t major = 0, minor = 0;  // the device of the file (hex in the text)
  uint64_t ino = 0;
  bool has_inode = true;   // false for "<none>:0"
  uint64_t start = 0;
  uint64_t end = 0;        // inclusive; meaningless when to_eof
  bool to_eof = false;
  dev_t dev() const;
  // "a POSIX write lock on bytes 10-14", "a flock shared lock", ...
  std::string Describe() const;
};

// One line, with or without the "lock:\t" prefix of fdinfo.
Result<LockLine> ParseLockLine(std::string_view line);
// The whole text of /proc/locks.
Result<std::vector<LockLine>> ParseProcLocks(std::string_view text);
Result<std::vector<LockLine>> ReadProcLocks();

// The held locks (not requests) on a file, from /proc/locks, named for a
// message: "pid 12 (sqlite3) holds a POSIX write lock on bytes 10-14; ...".
// Empty if none (or /proc/locks cannot be read).
std::string DescribeLockHolders(dev_t dev, uint64_t ino);

// "bytes 10-14", "bytes 100 to the end of the file".
std::string DescribeRange(uint64_t start, uint64_t end, bool to_eof);

}  // namespace cryo
