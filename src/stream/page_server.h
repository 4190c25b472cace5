// `cryo page-server --listen ADDR:PORT --images-dir DIR`: receives one
// streamed image (protocol.h) into a temporary directory beside DIR, and
// only once it is complete, synced and valid (image::LoadImage) renames it to
// DIR and acknowledges. A stream that breaks or is refused at any point
// leaves no DIR, and the temporary directory is removed.
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>

#include "base/status.h"
#include "mem/remote_pages.h"
#include "stream/tls.h"

namespace cryo::stream {

struct PageServerOptions {
  std::string listen;      // ADDR:PORT (port 0: any free port)
  std::string images_dir;  // must not exist, or be an empty directory
  double timeout_s = 60;   // silence on the connection
  double wait_s = 3600;    // for the sender to connect
  TlsOptions tls;          // none: no TLS (--insecure)
  // --restore: the sender migrates (MIGRATE); once the image is in DIR and
  // acknowledged, and the sender says its tree is gone (KILLED), this
  // restores DIR and the root's pid goes back (RESTORED).
  std::function<Result<pid_t>(const std::string& dir)> restore;
  // Optional: a last check of the complete image (in its temporary
  // directory) before it is acknowledged; its failure refuses the image,
  // and the sender keeps its tree.
  std::function<Status(const std::string& dir)> check;
  // --restore, when the sender migrates post-copy (POSTCOPY, cryo migrate
  // --lazy): restores DIR lazily with its remote pages from `remote`
  // (stream/postcopy.h) and returns once every page is in and the source
  // was told (ALL_IN), or why not (the restored tree killed).
  std::function<Result<pid_t>(const std::string& dir, RemotePageSource* remote)> restore_post_copy;
  // Called once listening, with the address bound (the port chosen).
  std::function<void(const std::string&)> on_listening;
};

struct ReceivedImage {
  std::string peer;
  uint64_t bytes = 0;
  size_t files = 0;
  pid_t restored = 0;  // with --restore
  bool synced = true;  // false: a post-copy migration's image, restored on arrival, not synced
};

Status RunPageServer(const PageServerOptions& opts, ReceivedImage* out);

}  // namespace cryo::stream
