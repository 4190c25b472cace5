// The chain of an incremental image (feature "incremental"): the images whose
// page files hold the pages it did not store again. Each link is named by a
// directory and the image id it must have (Inventory.parent); a missing,
// incomplete or different image there is refused by name before anything is
// restored.
#pragma once

#include <string>
#include <vector>

#include "base/status.h"
#include "base/unique_fd.h"
#include "image/image_dir.h"

namespace cryo::image {

// Longest chain an image may have (PageRun.depth at most this).
inline constexpr uint32_t kMaxParentDepth = 32;

// Where `parent` (Inventory.parent) of the image in `dir` is: an absolute
// path as it is, a relative one from `dir`.
std::string ParentDir(const std::string& dir, const ParentImage& parent);

// Reads the inventory of every ancestor of `img` (img->ancestors): each one
// complete, with the image id its child recorded.
Status LoadAncestors(LoadedImage* img);

// The page files of pid's ancestors, by depth (fds[d - 1] for PageRun.depth
// d; not valid() where no run of pid's Mm.parent_runs needs it): each one's header
// checked against its ancestor's identity, every run inside its data.
Result<std::vector<PageSource>> OpenAncestorPageFiles(const LoadedImage& img, int pid);

}  // namespace cryo::image
