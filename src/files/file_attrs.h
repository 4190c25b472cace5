// Owner, permissions and times of an inode cryo creates again (a pty slave, a
// UNIX socket's file): read from a stat at dump, put back once it exists.
#pragma once

#include <sys/stat.h>

#include <string>

#include "base/status.h"
#include "cryo/image.pb.h"

namespace cryo {

void RecordFileAttrs(const struct stat& st, image::FileAttrs* out);

// chown, chmod and the access and modification times of the inode `fd` is
// open on (also an O_PATH fd). `what` names it in errors.
Status ApplyFileAttrs(int fd, const image::FileAttrs& attrs, const std::string& what);

}  // namespace cryo
