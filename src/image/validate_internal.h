// Shared by the validate_*.cc files: how a problem is reported, the limits the
// kernel imposes, and one function per record kind.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>

#include "base/status.h"
#include "image/image_dir.h"

namespace cryo::image::validate {

// Limits of the kernel cryo restores on (x86_64).
inline constexpr int64_t kPidMax = 4194304;                  // PID_MAX_LIMIT
inline constexpr uint64_t kUserTop = 0x00fffffffffff000ull;  // TASK_SIZE with 5-level paging
inline constexpr uint64_t kVsyscallStart = 0xffffffffff600000ull;
inline constexpr uint64_t kKtimeMaxNs = INT64_MAX;             // KTIME_MAX
inline constexpr size_t kPathMax = 4096;                      // PATH_MAX, with the NUL
inline constexpr int kMaxFd = (1 << 30) - 1;                  // above fs.nr_open's maximum
inline constexpr uint64_t kSigKillStopMask = (1ull << 8) | (1ull << 18);  // bits of signals 9 and 19

// "DIR/NAME: WHAT (corrupted image)".
Status Bad(const LoadedImage& img, const std::string& file, const std::string& what);

// A path the restore opens: absolute, no NUL (a C string would end there),
// shorter than PATH_MAX. "" if it is one, else why not.
std::string PathProblem(const std::string& path);
// A name for messages: at most 80 bytes, non-printable bytes as '?'.
std::string Printable(const std::string& s);
std::string Hex(uint64_t v);
// Owner, mode and times of an inode the restore creates again: ids not -1
// ("unchanged" to chown), permission bits only.
std::string FileAttrsProblem(const FileAttrs& a);
// A cgroup path relative to cryo's and its hierarchy (validate_core.cc).
std::string CgroupProblem(const CgroupPath& c);

// Everything the image names, for cross-references.
struct Index {
  std::set<int> live;                      // pids of live processes
  std::set<int> pgids;                     // process groups of live processes
  std::map<int, int> tid_owner;            // every thread id -> its process
  std::set<uint64_t> pipe_ids;             // pipes.img
  std::map<uint64_t, const Tty*> ttys;     // ttys.img, by id
  std::map<uint64_t, const ShmObject*> shm;  // shm.img, by id
  std::set<std::string> features;
  bool has(const char* feature) const { return features.count(feature) > 0; }
};

// One process's records (core-, mm-, fds-PID.img) on their own and against
// the index.
Status ValidateCore(const LoadedImage& img, const Index& index, int pid, const ProcessCore& core);
Status ValidateMm(const LoadedImage& img, const Index& index, int pid, const ProcessImage& p);
Status ValidateFds(const LoadedImage& img, const Index& index, int pid, const ProcessImage& p);
// A UNIX socket's fd record on its own (validate_unix.cc); "" if valid.
std::string UnixSocketProblem(const Fd& f);
// FD_TCP_SOCKET (validate_tcp.cc); the inventory's net_lock.
std::string TcpSocketProblem(const Fd& f);
std::string UdpSocketProblem(const Fd& f);      // validate_udp.cc
std::string NetlinkSocketProblem(const Fd& f);  // validate_udp.cc
std::string NetLockProblem(const Inventory& inv);
// struct sockaddr_un with a name: absolute path or abstract; "" if valid.
std::string UnixAddressProblem(const std::string& a);
// Recorded socket options (validate_fds.cc); `ipv6`: IPPROTO_IPV6 allowed.
std::string SocketOptionsProblem(const google::protobuf::RepeatedPtrField<SocketOption>& opts, bool ipv6);
// UNIX sockets together: one record per socket, peers, pairs, names, queues.
Status ValidateUnixSockets(const LoadedImage& img, const Index& index);
// Fds of one open file description (file_id), in any process, agree.
Status ValidateSharedDescriptions(const LoadedImage& img);
// The shared-object tables on their own (ids, ranges) and the references of
// every holder to them.
Status ValidatePipes(const LoadedImage& img, const Index& index);
Status ValidateShm(const LoadedImage& img, const Index& index);
Status ValidateTtys(const LoadedImage& img, const Index& index);

}  // namespace cryo::image::validate
