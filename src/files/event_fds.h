// Parsers of the fdinfo lines of the event-like fd kinds (eventfd, timerfd,
// signalfd, epoll, inotify), shared by their handlers and unit-tested on their
// own. Each takes the parsed /proc/PID/fdinfo/N (proc::FdInfo keeps every line
// by its key) and fails with a message quoting the line it could not read.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"
#include "cryo/image.pb.h"
#include "proc/proc.h"

namespace cryo {

// "eventfd-count: <hex>" and "eventfd-semaphore: 0|1" (absent before Linux 6.6:
// then an error, as the mode cannot be seen).
Status ParseEventfdInfo(const proc::FdInfo& info, image::EventfdState* out);

// Whether the eventfd `fd` (holding `count`) is in semaphore mode, where
// fdinfo does not say (before Linux 6.6, or CRYO_PRETEND_MISSING=
// eventfd-semaphore): a read takes 1 from a semaphore and the whole count
// from another (eventfd(2)). The counter is brought to at least 2 first and
// put back to `count` after. For the dump, on cryo's duplicate of a stopped
// tree's eventfd: the stopped tasks are not in a read; a poller of the tree
// sees at most a wakeup that finds the same count.
Result<bool> EventfdIsSemaphore(int fd, uint64_t count);

// "clockid: N", "ticks: N", "settime flags: 0<octal>", "it_value: (sec, nsec)",
// "it_interval: (sec, nsec)". it_value is the time left (relative), even for a
// TFD_TIMER_ABSTIME timer.
Status ParseTimerfdInfo(const proc::FdInfo& info, image::TimerfdState* out);

// "sigmask: <hex>" (the mask as given to signalfd(2)).
Status ParseSignalfdInfo(const proc::FdInfo& info, image::SignalfdState* out);

// One "tfd: N events: HEX data: HEX pos:N ino:HEX sdev:HEX" line.
struct EpollEntry {
  int fd = -1;
  uint32_t events = 0;
  uint64_t data = 0;
  uint64_t ino = 0;
  uint64_t dev = 0;  // user-space dev_t (converted from the kernel's encoding)
};
Result<std::vector<EpollEntry>> ParseEpollInfo(const proc::FdInfo& info);

// One "inotify wd:HEX ino:HEX sdev:HEX mask:HEX ignored_mask:HEX
// fhandle-bytes:HEX fhandle-type:HEX f_handle:HEX" line.
struct InotifyMark {
  int wd = 0;
  uint64_t ino = 0;
  uint64_t dev = 0;  // user-space dev_t
  uint32_t mask = 0;
  uint32_t ignored_mask = 0;
  int handle_type = 0;
  std::string handle;  // f_handle bytes (empty if the kernel could not encode one)
};
// In increasing wd order.
Result<std::vector<InotifyMark>> ParseInotifyInfo(const proc::FdInfo& info);

// Splits "FIRST key: value key:value ..." (the shape of epoll and inotify
// fdinfo lines after their first colon) into FIRST and key -> value.
bool SplitFdinfoPairs(std::string_view text, std::string* first, std::vector<std::pair<std::string, std::string>>* pairs);
// The value of `key` in pairs SplitFdinfoPairs made, or null.
const std::string* FindFdinfoPair(const std::vector<std::pair<std::string, std::string>>& pairs, const char* key);

// A device number as the kernel prints it in fdinfo (MAJOR << 20 | MINOR) as
// a user-space dev_t.
uint64_t KernelDevToUser(uint64_t kdev);

}  // namespace cryo
