#include "image/show.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cctype>
#include <cstring>
#include <sstream>

#include "base/json_string.h"
#include "base/size_format.h"
#include "image/referenced_files.h"

namespace cryo::image {

namespace {

const char* SnapshotKindText(const SnapshotEntry& e) {
  return e.kind() == SNAPSHOT_DIRECTORY ? "directory"
         : e.kind() == SNAPSHOT_SYMLINK ? "symlink"
         : e.kind() == SNAPSHOT_WHITEOUT ? "whiteout"
                                         : "file";
}

// A name from the image for a terminal: control characters (an escape
// sequence would drive the terminal) as \xNN; the rest (UTF-8 too) as is.
std::string Safe(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) {
      char buf[8];
      snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

std::string ProtString(const Vma& v) {
  std::string s = "---p";
  if (v.prot() & PROT_READ) s[0] = 'r';
  if (v.prot() & PROT_WRITE) s[1] = 'w';
  if (v.prot() & PROT_EXEC) s[2] = 'x';
  if (v.flags() & MAP_SHARED) s[3] = 's';
  return s;
}

// "FD_REGULAR" -> "regular".
std::string FdKindName(FdKind k) {
  std::string n = FdKind_Name(k);
  if (n.rfind("FD_", 0) == 0) n = n.substr(3);
  for (char& ch : n) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return n;
}

// "LOCK_POSIX" -> "posix".
std::string LockKindName(LockKind k) {
  std::string n = LockKind_Name(k);
  for (char& ch : n) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return n.size() > 5 ? n.substr(5) : n;
}

std::string SigList(const google::protobuf::RepeatedPtrField<SigInfo>& q, const char* sep) {
  std::string out;
  for (const SigInfo& si : q) {
    int32_t signo = 0;
    if (si.raw().size() >= 4) std::memcpy(&signo, si.raw().data(), 4);
    if (!out.empty()) out += sep;
    out += std::to_string(signo);
  }
  return out;
}

const char* ShmKindLabel(ShmKind k) {
  switch (k) {
    case SHM_MEMFD: return "memfd";
    case SHM_POSIX: return "posix";
    case SHM_SYSV: return "sysv";
    case SHM_ANON: return "anon";
    default: return "unknown";
  }
}

uint64_t StoredBytes(const UnlinkedFile& f) {
  uint64_t n = 0;
  for (const FileExtent& e : f.extents()) n += e.length();
  return n;
}

uint64_t ShmStoredPages(const ShmObject& o) {
  uint64_t n = 0;
  for (const ShmExtent& e : o.extents()) n += e.npages();
  return n;
}

// What a listening socket's record holds beyond its fd line.
std::string ListenSocketText(const Fd& f) {
  if (f.kind() == FD_UNIX_SOCKET) {  // a UNIX socket that does not listen: its peer and queue
    const UnixSocket& u = f.unix_socket();
    size_t bytes = 0;
    for (const std::string& m : u.queue()) bytes += m.size();
    std::ostringstream o;
    o << ", type " << u.type() << " inode " << u.ino();
    if (u.peer_ino()) o << ", peer inode " << u.peer_ino();
    if (u.peer_closed()) o << ", peer closed";
    if (u.shutdown()) o << ", shutdown " << u.shutdown();
    if (u.queue_stored()) o << ", " << u.queue_size() << " messages queued (" << bytes << " bytes)";
    if (u.options_size()) o << ", " << u.options_size() << " options set";
    return o.str();
  }
  if (f.kind() == FD_TCP_SOCKET) {  // an established TCP connection: its queues
    const TcpSocket& t = f.tcp_socket();
    std::ostringstream o;
    o << ", TCP inode " << t.ino() << ", send queue " << t.send_queue().size() << " bytes (" << t.unsent()
      << " unsent), receive queue " << t.recv_queue().size() << " bytes, mss " << t.mss();
    if (t.options_size()) o << ", " << t.options_size() << " options set";
    return o.str();
  }
  if (f.kind() == FD_UDP_SOCKET) {  // a UDP socket: its queue and groups
    const UdpSocket& u = f.udp_socket();
    size_t bytes = 0;
    for (const UdpDatagram& d : u.queue()) bytes += d.data().size();
    std::ostringstream o;
    o << ", UDP inode " << u.ino() << (u.peer().empty() ? "" : ", connected") << ", " << u.queue_size()
      << " datagrams queued (" << bytes << " bytes)";
    if (u.memberships_size()) o << ", " << u.memberships_size() << " multicast groups";
    if (u.shutdown()) o << ", shutdown " << u.shutdown();
    if (u.options_size()) o << ", " << u.options_size() << " options set";
    return o.str();
  }
  if (f.kind() == FD_NETLINK_SOCKET) {
    const NetlinkSocket& n = f.netlink_socket();
    std::ostringstream o;
    o << ", netlink protocol " << n.protocol() << " portid " << n.portid() << ", " << n.groups_size() << " groups";
    return o.str();
  }
  if (f.kind() != FD_LISTEN_SOCKET) return "";
  const ListenSocket& l = f.listen_socket();
  std::ostringstream o;
  o << ", backlog " << l.backlog();
  if (l.has_file())
    o << ", file " << l.file().uid() << ":" << l.file().gid() << " mode 0" << std::oct << l.file().mode() << std::dec;
  if (l.file_unlinked()) o << ", file removed";
  if (l.options_size()) o << ", " << l.options_size() << " options set";
  if (l.listen_pid()) o << ", listened as pid " << l.listen_pid() << " uid " << l.listen_uid() << " gid " << l.listen_gid();
  return o.str();
}

std::string Xxh3Hex(uint64_t h) {
  char buf[24];
  snprintf(buf, sizeof(buf), "%016" PRIx64, h);
  return buf;
}

// The files a restore checks have not changed since the dump.
void ReferencedFilesJson(const LoadedImage& img, std::ostringstream& o) {
  o << ",\"referenced_files\":[";
  bool first = true;
  for (const ReferencedFile& f : ReferencedFiles(img)) {
    const FileId& id = f.recorded;
    o << (first ? "" : ",") << "{\"path\":" << JsonString(f.path) << ",\"check\":\""
      << (f.check == FileCheck::kContent ? "content" : "identity") << "\",\"dev\":" << id.dev() << ",\"ino\":" << id.ino()
      << ",\"size\":" << id.size() << ",\"mtime_ns\":" << id.mtime_ns();
    if (id.has_content_xxh3()) o << ",\"xxh3\":\"" << Xxh3Hex(id.content_xxh3()) << "\"";
    o << ",\"holders\":[";
    for (size_t i = 0; i < f.holders.size(); ++i) o << (i ? "," : "") << JsonString(f.holders[i]);
    o << "]}";
    first = false;
  }
  o << "]";
}

void ReferencedFilesText(const LoadedImage& img, std::ostringstream& o) {
  const std::vector<ReferencedFile> files = ReferencedFiles(img);
  if (!files.empty()) o << "\nfiles checked at restore (refused if changed since the dump):\n";
  for (const ReferencedFile& f : files) {
    const FileId& id = f.recorded;
    o << "  " << Safe(f.path) << ": inode " << id.ino() << " on " << major(id.dev()) << ":" << minor(id.dev());
    if (f.check == FileCheck::kContent) {
      o << ", " << id.size() << " bytes, mtime " << FormatTimeNs(id.mtime_ns());
      if (id.has_content_xxh3()) o << ", XXH3-64 " << Xxh3Hex(id.content_xxh3());
    } else {
      o << " (which file only)";
    }
    o << "; " << Safe(HoldersText(f, 4)) << "\n";
  }
}

// user_regs_struct word indexes.
constexpr int kRip = 16, kRsp = 19;

// Job control, per-process attributes and cgroups of one process.
void TaskStateJson(const ProcessCore& c, std::ostringstream& o) {
  if (c.stop_signal()) o << ",\"stop_signal\":" << c.stop_signal();
  if (c.has_loginuid()) o << ",\"loginuid\":" << c.loginuid() << ",\"sessionid\":" << c.sessionid();
  if (c.has_oom_score_adj()) o << ",\"oom_score_adj\":" << c.oom_score_adj();
  if (c.has_coredump_filter()) o << ",\"coredump_filter\":" << c.coredump_filter();
  if (c.has_autogroup_nice()) o << ",\"autogroup_nice\":" << c.autogroup_nice();
  o << ",\"cgroups\":{";
  for (int i = 0; i < c.cgroups_size(); ++i)
    o << (i ? "," : "") << JsonString(c.cgroups(i).hierarchy()) << ":" << JsonString(c.cgroups(i).path());
  o << "}";
}

void TaskStateText(const ProcessCore& c, std::ostringstream& o) {
  if (c.stop_signal()) o << "  stopped by signal " << c.stop_signal() << "\n";
  if (c.has_loginuid())
    o << "  audit: loginuid " << c.loginuid() << ", session " << c.sessionid() << " (4294967295: unset)\n";
  if (c.has_oom_score_adj())
    o << "  oom_score_adj " << c.oom_score_adj() << ", coredump_filter 0x" << std::hex << c.coredump_filter()
      << std::dec << (c.has_autogroup_nice() ? ", autogroup nice " + std::to_string(c.autogroup_nice()) : "") << "\n";
  for (const CgroupPath& g : c.cgroups())
    if (!g.path().empty()) o << "  cgroup " << (g.hierarchy().empty() ? "cgroup2" : g.hierarchy()) << ": " << g.path() << " (relative to cryo's)\n";
}

bool Compressed(const Inventory& inv) {
  return std::find(inv.features().begin(), inv.features().end(), "compressed-pages") != inv.features().end();
}

// The processes' page data (uncompressed) and what their page files take.
struct PageDataSize {
  uint64_t data = 0, files = 0;
};
PageDataSize PageDataSizes(const LoadedImage& img) {
  PageDataSize s;
  for (const auto& [pid, p] : img.processes) {
    if (p.core.zombie()) continue;
    s.data += p.mm.total_pages() * kPageSize;
    auto it = img.identity.sizes.find(PagesName(pid));
    s.files += it == img.identity.sizes.end() ? kPageDataOffset + p.mm.total_pages() * kPageSize : it->second;
  }
  return s;
}

}  // namespace

std::string ShowJson(const LoadedImage& img) {
  const Inventory& inv = img.inventory;
  std::ostringstream o;
  o << "{\"format_version\":" << inv.format_version() << ",\"image_id\":" << JsonString(ImageIdHex(inv.image_id()))
    << ",\"cryo_version\":" << JsonString(inv.cryo_version())
    << ",\"kernel\":" << JsonString(inv.kernel_release()) << ",\"dump_mode\":" << JsonString(inv.dump_mode())
    << ",\"features\":[";
  for (int i = 0; i < inv.features_size(); ++i) o << (i ? "," : "") << JsonString(inv.features(i));
  o << "]";
  const PageDataSize pds = PageDataSizes(img);
  o << ",\"compression\":" << JsonString(Compressed(inv) ? inv.compression() : "none")
    << ",\"page_data_bytes\":" << pds.data << ",\"page_files_bytes\":" << pds.files;
  if (inv.has_parent()) {
    o << ",\"parent\":{\"dir\":" << JsonString(inv.parent().dir())
      << ",\"image_id\":" << JsonString(ImageIdHex(inv.parent().image_id())) << ",\"chain\":[";
    for (size_t i = 0; i < img.ancestors.size(); ++i) o << (i ? "," : "") << JsonString(img.ancestors[i].dir);
    o << "]}";
  }
  o << ",\"root_pid\":" << inv.root_pid() << ",\"processes\":[";
  bool first_proc = true;
  for (const auto& [pid, p] : img.processes) {
    const ProcessCore& c = p.core;
    if (c.zombie()) {
      o << (first_proc ? "" : ",") << "{\"pid\":" << pid << ",\"ppid\":" << c.ppid() << ",\"pgid\":" << c.pgid()
        << ",\"sid\":" << c.sid() << ",\"zombie\":true,\"exit_status\":" << c.exit_status() << "}";
      first_proc = false;
      continue;
    }
    const TaskCore& t = c.threads(0);
    o << (first_proc ? "" : ",") << "{\"pid\":" << pid << ",\"ppid\":" << c.ppid() << ",\"pgid\":" << c.pgid()
      << ",\"sid\":" << c.sid() << ",\"comm\":" << JsonString(t.comm()) << ",\"exe\":" << JsonString(c.mm().exe_path())
      << ",\"threads\":" << c.threads_size() << ",\"cwd\":" << JsonString(c.cwd());
    if (c.mm().has_attrs())
      o << ",\"mm_attrs\":{\"thp_disable\":" << c.mm().attrs().thp_disable()
        << ",\"mlock_future\":" << c.mm().attrs().mlock_future() << ",\"membarrier\":" << c.mm().attrs().membarrier()
        << "}";
    o << ",\"vmas\":[";
    first_proc = false;
    for (int i = 0; i < p.mm.vmas_size(); ++i) {
      const Vma& v = p.mm.vmas(i);
      o << (i ? "," : "") << "{\"start\":" << v.start() << ",\"end\":" << v.end() << ",\"prot\":\"" << ProtString(v)
        << "\",\"name\":" << JsonString(v.name()) << ",\"flags\":[";
      for (int j = 0; j < v.vm_flags_size(); ++j) o << (j ? "," : "") << JsonString(v.vm_flags(j));
      o << "],\"pages\":" << v.stored_pages() << ",\"inherited_pages\":" << v.inherited_pages();
      if (v.shm_object()) o << ",\"shm_object\":" << v.shm_object();
      if (v.unlinked_file()) o << ",\"unlinked_file\":" << v.unlinked_file();
      o << "}";
    }
    o << "],\"fds\":[";
    for (int i = 0; i < p.fds.fds_size(); ++i) {
      const Fd& f = p.fds.fds(i);
      o << (i ? "," : "") << "{\"fd\":" << f.fd() << ",\"kind\":\"" << FdKindName(f.kind())
        << "\",\"path\":" << JsonString(f.file().path()) << ",\"flags\":" << f.flags() << ",\"pos\":" << f.pos()
        << ",\"cloexec\":" << (f.cloexec() ? "true" : "false");
      if (f.shm_object()) o << ",\"shm_object\":" << f.shm_object();
      if (f.unlinked_file()) o << ",\"unlinked_file\":" << f.unlinked_file();
      if (f.has_tty())
        o << ",\"tty\":{\"tty_id\":" << f.tty().tty_id() << ",\"master\":" << (f.tty().master() ? "true" : "false")
          << ",\"index\":" << f.tty().index() << "}";
      if (f.locks_size()) {
        o << ",\"locks\":[";
        for (int j = 0; j < f.locks_size(); ++j) {
          const FileLock& l = f.locks(j);
          o << (j ? "," : "") << "{\"kind\":\"" << LockKindName(l.kind()) << "\",\"write\":" << (l.write() ? "true" : "false")
            << ",\"start\":" << l.start() << ",\"end\":" << l.end() << ",\"to_eof\":" << (l.to_eof() ? "true" : "false")
            << "}";
        }
        o << "]";
      }
      if (f.has_owner()) o << ",\"owner\":{\"type\":" << f.owner().type() << ",\"pid\":" << f.owner().pid() << "}";
      if (f.signal()) o << ",\"signal\":" << f.signal();
      o << "}";
    }
    o << "],\"signals\":{\"blocked\":" << t.blocked() << ",\"pending\":[" << SigList(t.pending(), ",")
      << "],\"shared_pending\":[" << SigList(c.shared_pending(), ",") << "],\"actions\":[";
    for (int i = 0; i < c.actions_size(); ++i) {
      const SigAction& a = c.actions(i);
      o << (i ? "," : "") << "{\"sig\":" << a.sig() << ",\"handler\":" << a.handler() << ",\"flags\":" << a.flags()
        << ",\"mask\":" << a.mask() << "}";
    }
    o << "]},\"itimers\":[";
    for (int i = 0; i < c.itimers_size(); ++i)
      o << (i ? "," : "") << "{\"which\":" << c.itimers(i).which() << ",\"interval_us\":" << c.itimers(i).interval_us()
        << ",\"value_us\":" << c.itimers(i).value_us() << "}";
    o << "],\"registers\":{\"rip\":" << t.regs().gpr(kRip) << ",\"rsp\":" << t.regs().gpr(kRsp)
      << ",\"xsave_size\":" << t.regs().xsave().size() << ",\"xfeatures\":" << inv.xsave_features() << "}";
    o << ",\"creds\":{\"uid\":[";
    for (int i = 0; i < c.creds().uid_size(); ++i) o << (i ? "," : "") << c.creds().uid(i);
    o << "],\"gid\":[";
    for (int i = 0; i < c.creds().gid_size(); ++i) o << (i ? "," : "") << c.creds().gid(i);
    uint64_t inherited = 0;
    for (const PageRange& r : p.mm.inherited()) inherited += r.npages();
    uint64_t from_parent = 0;
    for (const PageRun& r : p.mm.parent_runs()) from_parent += r.npages();
    o << "]},\"stored_pages\":" << p.mm.total_pages() << ",\"inherited_pages\":" << inherited
      << ",\"parent_pages\":" << from_parent;
    if (c.has_ctty())
      o << ",\"ctty\":{\"rdev\":" << c.ctty().rdev() << ",\"tty_id\":" << c.ctty().tty_id()
        << ",\"foreground_pgrp\":" << c.ctty().foreground_pgrp() << "}";
    TaskStateJson(c, o);
    o << "}";
  }
  o << "],\"shm_objects\":[";
  for (int i = 0; i < img.shm.objects_size(); ++i) {
    const ShmObject& so = img.shm.objects(i);
    o << (i ? "," : "") << "{\"id\":" << so.id() << ",\"kind\":\"" << ShmKindLabel(so.kind())
      << "\",\"name\":" << JsonString(so.name()) << ",\"size\":" << so.size() << ",\"mode\":" << so.mode()
      << ",\"uid\":" << so.uid() << ",\"gid\":" << so.gid() << ",\"pages\":" << ShmStoredPages(so);
    if (so.kind() == SHM_MEMFD)
      o << ",\"seals\":" << so.seals() << ",\"writers_uncounted\":" << (so.writers_uncounted() ? "true" : "false");
    if (so.kind() == SHM_POSIX) o << ",\"unlinked\":" << (so.unlinked() ? "true" : "false");
    if (so.kind() == SHM_SYSV)
      o << ",\"sysv_id\":" << so.sysv_id() << ",\"sysv_key\":" << so.sysv_key()
        << ",\"sysv_removed\":" << (so.sysv_removed() ? "true" : "false");
    if (so.huge_page_size()) o << ",\"huge_page_size\":" << so.huge_page_size();
    o << "}";
  }
  o << "],\"unlinked_files\":[";
  for (int i = 0; i < img.files.files_size(); ++i) {
    const UnlinkedFile& f = img.files.files(i);
    o << (i ? "," : "") << "{\"id\":" << f.id() << ",\"kind\":\""
      << (f.kind() == UNLINKED_DIRECTORY ? "directory" : "regular") << "\",\"path\":" << JsonString(f.path())
      << ",\"size\":" << f.size() << ",\"mode\":" << f.mode() << ",\"uid\":" << f.uid() << ",\"gid\":" << f.gid()
      << ",\"stored\":" << StoredBytes(f) << ",\"extents\":" << f.extents_size() << "}";
  }
  o << "],\"snapshot\":[";
  for (int i = 0; i < img.snapshot.entries_size(); ++i) {
    const SnapshotEntry& e = img.snapshot.entries(i);
    o << (i ? "," : "") << "{\"path\":" << JsonString(e.path()) << ",\"kind\":" << JsonString(SnapshotKindText(e))
      << ",\"size\":" << e.size() << ",\"mode\":" << e.mode() << ",\"depth\":" << e.depth()
      << ",\"root\":" << (e.root() ? "true" : "false");
    if (!e.link_of().empty()) o << ",\"link_of\":" << JsonString(e.link_of());
    o << "}";
  }
  o << "],\"ttys\":[";
  for (int i = 0; i < img.ttys.ttys_size(); ++i) {
    const Tty& t = img.ttys.ttys(i);
    o << (i ? "," : "") << "{\"id\":" << t.id() << ",\"kind\":" << JsonString(TtyKind_Name(t.kind()))
      << ",\"index\":" << t.index() << ",\"rdev\":" << t.rdev() << ",\"session\":" << t.session()
      << ",\"foreground_pgrp\":" << t.foreground_pgrp() << ",\"locked\":" << (t.locked() ? "true" : "false")
      << ",\"packet_mode\":" << (t.packet_mode() ? "true" : "false")
      << ",\"exclusive\":" << (t.exclusive() ? "true" : "false") << ",\"slave_uid\":" << t.slave_attrs().uid()
      << ",\"slave_gid\":" << t.slave_attrs().gid() << ",\"slave_mode\":" << t.slave_attrs().mode()
      << ",\"rows\":" << t.winsize().rows()
      << ",\"cols\":" << t.winsize().cols() << ",\"lflag\":" << t.termios().lflag()
      << ",\"master_unread\":" << JsonString(t.master_unread()) << ",\"slave_unread\":[";
    for (int j = 0; j < t.slave_unread_size(); ++j)
      o << (j ? "," : "") << "{\"data\":" << JsonString(t.slave_unread(j).data())
        << ",\"eof\":" << (t.slave_unread(j).eof() ? "true" : "false")
        << ",\"partial\":" << (t.slave_unread(j).partial() ? "true" : "false") << "}";
    o << "]}";
  }
  o << "]";
  ReferencedFilesJson(img, o);
  o << "}\n";
  return o.str();
}

std::string ShowText(const LoadedImage& img) {
  const Inventory& inv = img.inventory;
  std::ostringstream o;
  o << "image " << Safe(img.dir) << ": format " << inv.format_version() << ", made by cryo " << Safe(inv.cryo_version())
    << " on " << Safe(inv.hostname()) << " (Linux " << Safe(inv.kernel_release()) << "), " << Safe(inv.dump_mode())
    << " dump\n";
  if (!inv.image_id().empty()) o << "image id " << ImageIdHex(inv.image_id()) << "\n";
  o << "features needed:";
  for (const auto& f : inv.features()) o << " " << Safe(f);
  o << "\n";
  if (Compressed(inv)) {
    const PageDataSize pds = PageDataSizes(img);
    o << "compression: " << Safe(inv.compression()) << " (page data in independent frames): "
      << FormatSize(pds.data) << " of pages in " << FormatSize(pds.files) << " of page files\n";
  }
  if (inv.has_parent()) {
    o << "parent image " << Safe(inv.parent().dir()) << " (image id " << ImageIdHex(inv.parent().image_id())
      << "): an incremental image, restored with the pages of its chain:";
    for (const AncestorImage& a : img.ancestors) o << " " << Safe(a.dir);
    o << "\n";
  }
  for (const auto& [pid, p] : img.processes) {
    const ProcessCore& c = p.core;
    if (c.zombie()) {
      o << "\nprocess " << pid << " (zombie, wait status " << c.exit_status() << ") ppid " << c.ppid() << " pgid "
        << c.pgid() << " sid " << c.sid() << "\n";
      continue;
    }
    const TaskCore& t = c.threads(0);
    char line[512];
    o << "\nprocess " << pid << " (" << Safe(t.comm()) << ") ppid " << c.ppid() << " pgid " << c.pgid() << " sid "
      << c.sid() << "\n  exe " << Safe(c.mm().exe_path()) << "\n  cwd " << Safe(c.cwd()) << "\n  uid " << c.creds().uid(0) << " gid "
      << c.creds().gid(0) << "\n";
    snprintf(line, sizeof(line), "  registers: rip %016" PRIx64 " rsp %016" PRIx64 ", xsave %zu bytes (features %#" PRIx64 ")\n",
             t.regs().gpr(kRip), t.regs().gpr(kRsp), t.regs().xsave().size(), inv.xsave_features());
    o << line;
    o << "  threads: " << c.threads_size() << "\n";
    uint64_t inherited = 0;
    for (const PageRange& r : p.mm.inherited()) inherited += r.npages();
    o << "  memory: " << p.mm.vmas_size() << " VMAs, " << p.mm.total_pages() << " pages stored ("
      << FormatSize(p.mm.total_pages() * 4096) << ")";
    if (inherited) o << ", " << inherited << " shared with the parent (stored there)";
    uint64_t from_parent = 0;
    for (const PageRun& r : p.mm.parent_runs()) from_parent += r.npages();
    if (from_parent) o << ", " << from_parent << " unchanged since the parent image (stored there)";
    o << "\n";
    if (c.mm().has_attrs())
      o << "  memory settings: THP disable " << c.mm().attrs().thp_disable() << ", mlockall future flags "
        << c.mm().attrs().mlock_future() << ", membarrier registrations " << c.mm().attrs().membarrier() << "\n";
    for (const Vma& v : p.mm.vmas()) {
      snprintf(line, sizeof(line), "    %012" PRIx64 "-%012" PRIx64 " %s %8" PRIu64 " pages  %s\n", v.start(), v.end(),
               ProtString(v).c_str(), v.stored_pages(), Safe(v.name()).substr(0, 300).c_str());
      o << line;
      if (v.kind() == VMA_FILE_PRIVATE && v.file_opened_rw()) o << "        (its file opened read-write)\n";
    }
    o << "  fds:\n";
    for (const Fd& f : p.fds.fds())
    {
      o << "    " << f.fd() << ": " << FdKindName(f.kind()) << " " << Safe(f.file().path()) << " pos " << f.pos() << " flags 0"
        << std::oct << f.flags() << std::dec << (f.cloexec() ? " cloexec" : "") << ListenSocketText(f);
      for (const FileLock& l : f.locks()) {
        o << ", " << LockKindName(l.kind()) << (l.write() ? " write" : " read");
        if (l.kind() == LOCK_POSIX || l.kind() == LOCK_OFD)
          o << " " << l.start() << "-" << (l.to_eof() ? std::string("EOF") : std::to_string(l.end()));
      }
      if (f.has_owner()) o << ", SIGIO to " << (f.owner().type() == 2 ? "group " : "") << f.owner().pid();
      if (f.signal()) o << ", signal " << f.signal();
      o << "\n";
    }
    snprintf(line, sizeof(line), "  signals: blocked %#" PRIx64 ", pending [%s], shared pending [%s]\n", t.blocked(),
             SigList(t.pending(), " ").c_str(), SigList(c.shared_pending(), " ").c_str());
    o << line;
    for (const SigAction& a : c.actions()) {
      snprintf(line, sizeof(line), "    sig %2u: %s flags %#" PRIx64 " mask %#" PRIx64 "\n", a.sig(),
               a.handler() == 1 ? "ignored" : ("handler " + std::to_string(a.handler())).c_str(), a.flags(), a.mask());
      o << line;
    }
    for (const ITimer& it : c.itimers())
      o << "  itimer " << it.which() << ": interval " << it.interval_us() << " us, next in " << it.value_us() << " us\n";
    if (c.has_ctty())
      o << "  controlling terminal: device " << major(c.ctty().rdev()) << ":" << minor(c.ctty().rdev())
        << (c.ctty().tty_id() ? " (terminal " + std::to_string(c.ctty().tty_id()) + " of the image)" : " (outside the image)")
        << ", foreground group " << c.ctty().foreground_pgrp() << "\n";
    TaskStateText(c, o);
  }
  for (const Tty& t : img.ttys.ttys()) {
    if (t.kind() == TTY_EXTERNAL) {
      o << "\nterminal " << t.id() << ": the calling shell's (device " << major(t.rdev()) << ":" << minor(t.rdev())
        << "), " << t.winsize().rows() << "x" << t.winsize().cols() << "\n";
      continue;
    }
    if (t.kind() == TTY_OUTSIDE) {
      o << "\nterminal " << t.id() << ": /dev/pts/" << t.index() << ", outside the tree (dump --ext-tty: opened again "
        << "by its path)\n";
      continue;
    }
    o << "\nterminal " << t.id() << ": pseudoterminal /dev/pts/" << t.index() << " (" << Safe(t.master_path()) << "), "
      << t.winsize().rows() << "x" << t.winsize().cols() << ", lflag 0" << std::oct << t.termios().lflag() << std::dec
      << (t.locked() ? ", locked" : "") << (t.packet_mode() ? ", packet mode" : "") << (t.exclusive() ? ", exclusive" : "");
    if (t.session()) o << ", controls session " << t.session() << " (foreground group " << t.foreground_pgrp() << ")";
    if (t.has_slave_attrs())
      o << ", slave owner " << t.slave_attrs().uid() << ":" << t.slave_attrs().gid() << " mode 0" << std::oct
        << t.slave_attrs().mode() << std::dec;
    size_t in = 0;
    for (const TtyInput& i : t.slave_unread()) in += i.data().size();
    o << "\n  queued: " << t.master_unread().size() << " bytes for the master, " << in << " bytes in "
      << t.slave_unread_size() << " pieces for the slave\n";
  }
  if (img.files.files_size()) o << "\nunlinked files:\n";
  for (const UnlinkedFile& f : img.files.files())
    o << "  " << f.id() << ": " << (f.kind() == UNLINKED_DIRECTORY ? "directory " : "file ") << f.path() << " (deleted), "
      << f.size() << " bytes (" << StoredBytes(f) << " stored in " << f.extents_size() << " extents), mode 0" << std::oct
      << f.mode() << std::dec << ", uid " << f.uid() << " gid " << f.gid() << "\n";
  if (img.snapshot.entries_size()) o << "\nfiles carried (put back by the restore):\n";
  if (img.snapshot.has_fs_root()) {
    const FsRoot& r = img.snapshot.fs_root();
    o << "  --fs-root " << Safe(r.path());
    if (r.kind() == FS_ROOT_OVERLAY) {
      o << ": an overlay; its upper dir " << Safe(r.upper_dir()) << " carried, lower dirs checked:";
      for (const OverlayLower& l : r.lowers()) o << " " << Safe(l.path()) << " (" << l.entries() << " entries)";
    }
    o << "\n";
  }
  for (const SnapshotEntry& e : img.snapshot.entries()) {
    o << "  " << SnapshotKindText(e) << " " << e.path();
    if (!e.link_of().empty())
      o << ", a hard link to " << e.link_of();
    else if (e.kind() == SNAPSHOT_REGULAR)
      o << ", " << e.size() << " bytes" << (e.depth() ? " (unchanged: in parent image " + std::to_string(e.depth()) + ")" : "");
    if (e.kind() == SNAPSHOT_SYMLINK) o << " -> " << e.link_target();
    o << "\n";
  }
  if (img.shm.objects_size()) o << "\nshared memory objects:\n";
  for (const ShmObject& so : img.shm.objects()) {
    o << "  " << so.id() << ": " << ShmKindLabel(so.kind());
    if (so.kind() == SHM_SYSV) {
      char key[16];
      snprintf(key, sizeof(key), "%#x", static_cast<uint32_t>(so.sysv_key()));
      o << " id " << so.sysv_id() << " key " << key << (so.sysv_removed() ? " (removed)" : "");
    } else if (so.kind() != SHM_ANON) {
      o << " \"" << Safe(so.name()) << "\"" << (so.unlinked() ? " (unlinked)" : "");
    }
    o << ", " << so.size() << " bytes, mode 0" << std::oct << so.mode() << std::dec << ", uid " << so.uid() << " gid "
      << so.gid() << ", " << ShmStoredPages(so) << " pages stored";
    if (so.kind() == SHM_MEMFD && so.seals()) o << ", seals " << std::hex << "0x" << so.seals() << std::dec;
    if (so.kind() == SHM_MEMFD && so.writers_uncounted()) o << ", written through its own description only";
    if (so.huge_page_size()) o << ", hugetlb pages of " << (so.huge_page_size() >> 10) << " KiB";
    o << "\n";
  }
  ReferencedFilesText(img, o);
  return o.str();
}

}  // namespace cryo::image
