#include "stream/page_server.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <optional>

#include "base/interrupt.h"
#include "base/log.h"
#include "image/format.h"
#include "image/image_dir.h"
#include "image/parent_chain.h"
#include "stream/connection.h"
#include "stream/postcopy.h"

namespace cryo::stream {
namespace {

// The files of one image, in its temporary directory.
class DirSink final : public FileSink {
 public:
  DirSink(int dirfd, std::string dir) : dirfd_(dirfd), dir_(std::move(dir)) {}
  Status Create(uint32_t id, const std::string& name) override {
    // A new inode, 0600 whatever the umask, never through a link.
    UniqueFd fd(::openat(dirfd_, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!fd.valid()) return Status::FromErrno("cannot create " + dir_ + "/" + name);
    if (::fchmod(fd.get(), 0600) != 0) return Status::FromErrno("chmod " + dir_ + "/" + name);
    files_[id] = {name, std::move(fd)};
    return Status::Ok();
  }
  Status Write(uint32_t id, uint64_t offset, std::string_view data) override {
    File& f = files_.at(id);
    const char* p = data.data();
    size_t n = data.size();
    off_t off = static_cast<off_t>(offset);
    while (n > 0) {
      const ssize_t w = ::pwrite(f.fd.get(), p, n, off);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return Status::FromErrno("write to " + dir_ + "/" + f.name);
      p += w;
      off += w;
      n -= static_cast<size_t>(w);
    }
    return Status::Ok();
  }
  Status Finish(uint32_t id, uint64_t size) override {
    File& f = files_.at(id);
    // Bytes never written in a page file's range read as zeros: the size is
    // the sender's, which the receiver checked against what arrived.
    if (::ftruncate(f.fd.get(), static_cast<off_t>(size)) != 0) return Status::FromErrno("truncate " + f.name);
    ::sync_file_range(f.fd.get(), 0, 0, SYNC_FILE_RANGE_WRITE);  // writeback starts now; syncfs waits for it
    int fd = f.fd.release();
    files_.erase(id);
    if (::close(fd) != 0) return Status::FromErrno("close " + dir_ + "/" + f.name);
    return Status::Ok();
  }

 private:
  struct File {
    std::string name;
    UniqueFd fd;
  };
  int dirfd_;
  std::string dir_;
  std::map<uint32_t, File> files_;
};

std::string ParentOf(const std::string& dir, std::string* base) {
  std::string d = dir;
  while (d.size() > 1 && d.back() == '/') d.pop_back();
  const size_t slash = d.rfind('/');
  *base = slash == std::string::npos ? d : d.substr(slash + 1);
  return slash == std::string::npos ? "." : slash == 0 ? "/" : d.substr(0, slash);
}

Status SyncPath(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno("open " + path);
  if (::fsync(fd.get()) != 0) return Status::FromErrno("fsync " + path);
  return Status::Ok();
}

// DIR may not hold anything: an image is never received over another.
Status CheckTarget(const std::string& dir) {
  struct stat st;
  if (::lstat(dir.c_str(), &st) != 0) {
    if (errno == ENOENT) return Status::Ok();
    return Status::FromErrno("images directory " + dir);
  }
  if (!S_ISDIR(st.st_mode)) return Status::Error("images directory " + dir + " exists and is not a directory");
  DIR* d = ::opendir(dir.c_str());
  if (!d) return Status::FromErrno("images directory " + dir);
  bool empty = true;
  while (struct dirent* e = ::readdir(d))
    if (std::string(e->d_name) != "." && std::string(e->d_name) != "..") empty = false;
  ::closedir(d);
  if (!empty) return Status::Error("images directory " + dir + " is not empty: give a new or empty directory");
  return Status::Ok();
}

// The temporary directory and everything in it (the receiver made every
// entry: regular files, and the pre-copy rounds' directories).
void RemoveTree(const std::string& dir) {
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  if (ec) LOG_WARN("cannot remove the partial image %s: %s", dir.c_str(), ec.message().c_str());
}

// The incomplete-image marker of a directory being received into.
Status MarkReceiving(int dirfd, const std::string& dir, const std::string& peer) {
  UniqueFd marker(::openat(dirfd, image::IncompleteMarkerName().c_str(),
                           O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  const std::string text = "cryo page-server is receiving an image from " + peer + " here\n";
  if (!marker.valid() || ::write(marker.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()))
    return Status::FromErrno("cannot write " + dir + "/" + image::IncompleteMarkerName());
  return Status::Ok();
}

// Receives one image's files into `tmp` until END (`first`: its first frame,
// read already), then makes them durable and checks the image as a restore
// would (its chain included).
Status ReceiveImage(Connection& conn, const std::string& tmp, int tmpfd, std::optional<Frame> first,
                    ReceivedImage* out, bool durable = true) {
  DirSink sink(tmpfd, tmp);
  ImageReceiver receiver(&sink);
  while (!receiver.ended()) {
    Frame f;
    if (first) {
      f = std::move(*first);
      first.reset();
    } else {
      CRYO_ASSIGN_OR_RETURN(f, conn.Receive(conn.timeout()));
    }
    // (the tests kill the receiver between files: a fault point at each file's end)
    if (f.type() == FrameType::kClose || f.type() == FrameType::kEnd) FaultPoint();
    CRYO_RETURN_IF_ERROR(receiver.OnFrame(f.header, f.payload));
  }
  out->bytes += receiver.bytes();
  out->files += receiver.files();
  // syncfs(2) writes back every file of the file system and, since Linux
  // 5.8, reports a writeback error of any of them.
  if (durable && ::syncfs(tmpfd) != 0) return Status::FromErrno("syncfs " + tmp);
  if (::unlinkat(tmpfd, image::IncompleteMarkerName().c_str(), 0) != 0)
    return Status::FromErrno("remove " + tmp + "/" + image::IncompleteMarkerName());
  // What a restore would refuse is refused now, while the sender still holds
  // its tree: every record read and checked.
  Result<image::LoadedImage> img = image::LoadImage(tmp);
  if (!img.ok()) return img.status().Prefixed("the image received does not validate");
  if (durable && ::fsync(tmpfd) != 0) return Status::FromErrno("fsync " + tmp);
  return Status::Ok();
}

// A pre-copy sends ROUND N before each round's image: each goes into
// pre-copy/N of the temporary directory, is checked like any image (its
// parent is round N-1, "../N-1") and acknowledged. Returns the first frame
// that is not ROUND: the final image's (whose parent is pre-copy/LAST).
Result<Frame> ReceiveRounds(Connection& conn, const std::string& tmp, int tmpfd, const std::string& dir,
                            ReceivedImage* out) {
  const std::string rounds = "pre-copy";
  for (uint32_t n = 0;; ++n) {
    CRYO_ASSIGN_OR_RETURN(Frame f, conn.Receive(conn.timeout()));
    if (f.type() != FrameType::kRound) return f;
    if (f.payload != std::to_string(n))
      return Status::Error("ROUND " + f.payload.substr(0, 16) + " where pre-copy round " + std::to_string(n) +
                           " was due");
    if (n + 1 >= image::kMaxParentDepth) return Status::Error("more pre-copy rounds than an image chain may have");
    if (n == 0 && ::mkdirat(tmpfd, rounds.c_str(), 0700) != 0) return Status::FromErrno("mkdir " + tmp + "/" + rounds);
    const std::string rel = rounds + "/" + f.payload, path = tmp + "/" + rel;
    if (::mkdirat(tmpfd, rel.c_str(), 0700) != 0) return Status::FromErrno("mkdir " + path);
    UniqueFd fd(::openat(tmpfd, rel.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd.valid()) return Status::FromErrno("open " + path);
    CRYO_RETURN_IF_ERROR(MarkReceiving(fd.get(), path, out->peer));
    CRYO_RETURN_IF_ERROR(ReceiveImage(conn, path, fd.get(), std::nullopt, out).Prefixed("pre-copy round " + f.payload));
    CRYO_RETURN_IF_ERROR(SyncPath(tmp + "/" + rounds));
    CRYO_RETURN_IF_ERROR(conn.Send(FrameType::kAck, 0, dir + "/" + rel));
  }
}

// Receives the image (after any pre-copy rounds) into `tmp`, then renames it
// to `dir`.
// `durable` false (a post-copy migration restored on arrival): nothing is
// synced. Such an image is no use after a crash of this machine (its private
// memory is in the source's tree, which stays frozen until every page is here
// and dies then), so its ACK need not wait for the disk.
Status ReceiveInto(Connection& conn, const std::string& tmp, int tmpfd, const PageServerOptions& opts,
                   ReceivedImage* out, bool durable) {
  const std::string& dir = opts.images_dir;
  CRYO_ASSIGN_OR_RETURN(Frame first, ReceiveRounds(conn, tmp, tmpfd, dir, out));
  CRYO_RETURN_IF_ERROR(ReceiveImage(conn, tmp, tmpfd, std::move(first), out, durable));
  if (opts.check) CRYO_RETURN_IF_ERROR(opts.check(tmp));
  FaultPoint();
  if (::rename(tmp.c_str(), dir.c_str()) != 0) return Status::FromErrno("rename " + tmp + " to " + dir);
  std::string base;
  Status s = durable ? SyncPath(ParentOf(dir, &base)) : Status::Ok();
  if (!s.ok()) {
    ::rename(dir.c_str(), tmp.c_str());  // not durable: not complete
    return s;
  }
  return Status::Ok();
}

// --restore: the sender must be `cryo migrate`, which says so first.
Status ExpectMigrate(Connection& conn, bool* post_copy) {
  CRYO_ASSIGN_OR_RETURN(Frame f, conn.Receive(conn.timeout()));
  if (f.type() == FrameType::kMigrate && f.payload.empty()) return Status::Ok();
  *post_copy = f.type() == FrameType::kPostCopy && f.payload.empty();
  if (*post_copy) return Status::Ok();
  if (f.type() == FrameType::kOpen)
    return Status::Error("the sender does not migrate (cryo dump --to): this page server restores what it receives "
                         "(--restore); use cryo migrate, or a page server without --restore");
  return Status::Error(std::string("expected MIGRATE, got ") + FrameTypeName(f.header.type));
}

// How long the receiver waits for KILLED once it sent the ACK: the source
// kills its tree and waits for it to die first.
constexpr double kKilledTimeoutSeconds = 120;

// After the ACK: the source kills its tree and says KILLED; only then is the
// image restored here (on one machine the restore needs the source's pids).
Status RestoreMigrated(const PageServerOptions& opts, Connection& conn, ReceivedImage* out) {
  Result<Frame> k = conn.Receive(kKilledTimeoutSeconds);
  if (!k.ok() || k->type() != FrameType::kKilled)
    return Status::Error("the source did not confirm that its tree is gone (" +
                         (k.ok() ? std::string(FrameTypeName(k->header.type)) : k.status().ToString()) +
                         "): not restored; the image is complete in " + opts.images_dir +
                         " (cryo restore -D " + opts.images_dir + " once the source tree is gone)");
  FaultPoint();
  Result<pid_t> pid = opts.restore(opts.images_dir);
  if (!pid.ok()) {
    const Status s = pid.status().Prefixed("restore of the migrated image " + opts.images_dir);
    (void)conn.Send(FrameType::kError, 0, s.ToString().substr(0, 4096));
    conn.CloseGracefully(2);
    return s;
  }
  out->restored = *pid;
  if (Status r = conn.Send(FrameType::kRestored, 0, std::to_string(*pid)); !r.ok())
    LOG_WARN("restored as pid %d, but the source did not hear it: %s", *pid, r.ToString().c_str());
  conn.CloseGracefully(2);
  return Status::Ok();
}

// Post-copy: the image is in DIR (its remote runs still on the source,
// which keeps its tree frozen and answers PAGE_REQ from now on); the restore
// commits with the source (READY, GO) before the tree runs, and the source
// kills its tree once every page is in (ALL_IN). A failure after GO loses the
// tree on both sides (the post-copy window, docs/stream-protocol.md).
Status RestorePostCopy(const PageServerOptions& opts, Connection& conn, ReceivedImage* out) {
  if (!opts.restore_post_copy) return Status::Error("this page server does not restore post-copy migrations");
  StreamPages pages(&conn, opts.timeout_s);
  Result<pid_t> pid = opts.restore_post_copy(opts.images_dir, &pages);
  if (!pid.ok()) {
    // Nothing more is sent: with --pidns new the connection was the
    // namespace init's to use; the source sees it close.
    conn.CloseGracefully(0);
    return pid.status().Prefixed("post-copy restore of the migrated image " + opts.images_dir);
  }
  out->restored = *pid;
  conn.CloseGracefully(2);
  return Status::Ok();
}

}  // namespace

Status RunPageServer(const PageServerOptions& opts, ReceivedImage* out) {
  CRYO_RETURN_IF_ERROR(CheckTarget(opts.images_dir));
  std::shared_ptr<TlsContext> tls;  // its files loaded before anything listens
  if (opts.tls.enabled()) {
    CRYO_ASSIGN_OR_RETURN(tls, TlsContext::Create(opts.tls, /*server=*/true));
  }
  CRYO_ASSIGN_OR_RETURN(Listener listener, Listener::Listen(opts.listen));
  if (opts.on_listening) opts.on_listening(listener.address());
  // A sender that fails the TLS handshake gets nothing: no directory is made.
  CRYO_ASSIGN_OR_RETURN(auto conn, listener.Accept(opts.wait_s, opts.timeout_s, tls));
  out->peer = conn->peer();
  auto refuse = [&conn](const Status& s) {
    (void)conn->Send(FrameType::kError, 0, s.ToString().substr(0, 4096));
    conn->CloseGracefully(2);
    return s;
  };
  Result<Frame> hello = conn->Receive(opts.timeout_s);
  if (!hello.ok()) return hello.status().Prefixed("handshake with " + out->peer);
  if (hello->type() != FrameType::kHello) return refuse(Status::Error("the sender " + out->peer + " said no HELLO"));
  if (Status s = CheckHello(hello->payload, image::kFormatVersion); !s.ok()) return refuse(s);
  // The image goes into a new directory beside DIR (the same file system:
  // rename(2) moves it into place at once), marked incomplete meanwhile.
  CRYO_RETURN_IF_ERROR(CheckTarget(opts.images_dir));
  std::string base;
  const std::string parent = ParentOf(opts.images_dir, &base);
  std::string tmpl = parent + "/." + base + ".cryo-receiving.XXXXXX";
  if (!::mkdtemp(tmpl.data())) return refuse(Status::FromErrno("cannot create a directory beside " + opts.images_dir));
  const std::string tmp = tmpl;  // mkdtemp(3): mode 0700
  UniqueFd tmpfd(::open(tmp.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  Status s = tmpfd.valid() ? Status::Ok() : Status::FromErrno("open " + tmp);
  if (s.ok()) s = MarkReceiving(tmpfd.get(), tmp, out->peer);
  if (s.ok()) s = conn->Send(FrameType::kHello, 0, HelloPayload(image::kFormatVersion));
  bool post_copy = false;
  if (s.ok() && opts.restore) s = ExpectMigrate(*conn, &post_copy);
  out->synced = !(opts.restore && post_copy);
  if (s.ok()) s = ReceiveInto(*conn, tmp, tmpfd.get(), opts, out, out->synced);
  if (!s.ok()) {
    RemoveTree(tmp);
    return refuse(s.Prefixed("image from " + out->peer));
  }
  FaultPoint();  // (complete, not acknowledged)
  if (Status a = conn->Send(FrameType::kAck, 0, opts.images_dir); !a.ok())
    LOG_WARN("the image is complete in %s, but the sender did not get the acknowledgement: %s "
             "(it keeps its tree running)", opts.images_dir.c_str(), a.ToString().c_str());
  if (opts.restore && post_copy) return RestorePostCopy(opts, *conn, out);
  if (opts.restore) return RestoreMigrated(opts, *conn, out);
  conn->CloseGracefully(2);
  return Status::Ok();
}

}  // namespace cryo::stream
