// The options of a socket cryo makes again (a listener): every option that
// getsockopt(2) can read and setsockopt(2) can set, for the socket's family,
// is compared with a new socket's of the same kind; those that differ are
// recorded, and each is set once on a new socket at dump to check that it
// reads back the same (else the dump is refused, naming the option). State
// attached to a socket that cannot be read back (a socket filter, a TCP
// upper-layer protocol) refuses the dump.
#pragma once

#include <google/protobuf/repeated_ptr_field.h>

#include <string>
#include <vector>

#include "base/status.h"
#include "cryo/image.pb.h"

namespace cryo {

// Option values of one socket read without a getsockopt(2) each (the TCP
// iterator, bpf/tcp_options.h): exactly the bytes getsockopt(2) returns. An
// option not in it is read with getsockopt(2).
struct KnownOptions {
  struct Value {
    int level, name;
    std::string bytes;
  };
  std::vector<Value> values;
  const std::string* Find(int level, int name) const;
};

// Records the options of `fd` (family, type and protocol as given) that differ
// from a new socket's. `what` names the socket in errors. A `connected` TCP
// socket skips TCP_MAXSEG (its segment size is the connection's, restored
// with TCP_REPAIR_OPTIONS, not a user's clamp). `known`: values already read.
Status DumpSocketOptions(int fd, int family, int type, int protocol, const std::string& what,
                         google::protobuf::RepeatedPtrField<image::SocketOption>* out, bool connected = false,
                         const KnownOptions* known = nullptr);

// Sets `options` on `fd`, a new socket (before bind).
Status RestoreSocketOptions(int fd, const google::protobuf::RepeatedPtrField<image::SocketOption>& options,
                            const std::string& what);

// The last steps of making a socket again: its inode's owner (fchown unless
// both ids are 0) and O_NONBLOCK when `flags` (the fd's open flags) have it.
Status SetSocketOwnerAndFlags(int fd, uint32_t uid, uint32_t gid, uint32_t flags, const std::string& what);

// Sockets made by DumpSocketOptions in this process to compare and check
// options with (a new socket's defaults: once per kind; a probe: once per
// option value); for the dump's debug log and the tests.
uint64_t OptionSocketsMade();

// An int option of `fd` (getsockopt(2), or `known` when it has it), -1 if it
// cannot be read.
int IntSocketOption(int fd, int level, int name, const KnownOptions* known = nullptr);

// "SO_RCVBUF", "TCP_NODELAY", ... ("level L option N" for one not in the table).
std::string SocketOptionName(int level, int name);

}  // namespace cryo
