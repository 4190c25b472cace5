// Validation of an image's records before anything is restored from them.
// Every field of every record is checked against the range it must lie in and
// against the records it refers to (ids of shared objects, pids, fds, VMAs),
// and every field that must agree with another does: an image a buggy or
// hostile writer made is refused with a message naming the file and the field,
// never restored into something other than what its records say, and never
// able to crash or hang cryo. docs/image-format.md (section 5) lists the rules,
// message by message and field by field.
#pragma once

#include "base/status.h"
#include "image/image_dir.h"

namespace cryo::image {

// The inventory alone (before the other files are read: it decides which):
// format version, features, pids, root, xsave size, file list.
Status ValidateInventory(const LoadedImage& img);
// Every record of a loaded image and their cross-references.
Status ValidateImage(const LoadedImage& img);

}  // namespace cryo::image
