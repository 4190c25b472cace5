// The file a UNIX socket bound to a path made (bind(2) creates it, 0777 less
// the umask, owned by the caller): whether the path still leads to the socket,
// and the file's owner, mode and times. Programs rely on them: GNU screen
// keeps its sockets 0600 in a 0700 directory and reads a session's state from
// its socket's mode, `screen -ls` its time from the socket's mtime.
#pragma once

#include <string>

#include "base/status.h"
#include "cryo/image.pb.h"
#include "files/fd_kind.h"
#include "net/unix_diag.h"

namespace cryo {

// Dump: fills `l`'s file state for a socket bound to an absolute path, or
// refuses one whose path now leads elsewhere (its file was removed and the
// path reused, e.g. by a second listener bound to it), whose directory is gone,
// or that was bound inside a chroot. `what` names it in errors.
// `diag`: what UNIX_DIAG says of the socket.
Status DumpUnixSocketFile(const FdSource& s, const UnixSocketDiag& diag, image::ListenSocket* l,
                          const std::string& what);

// Restore: binds `fd` to `l`'s path. A socket file left there by the original
// (nobody listens on it) is replaced. Then the file's owner, mode and times
// are put back, or the file is removed again if it had been.
Status BindUnixSocketFile(int fd, const image::ListenSocket& l, const std::string& what);

}  // namespace cryo
