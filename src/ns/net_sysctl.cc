// The sysctls of a network namespace: /proc/sys/net shows the namespace of
// the reading thread (net/sysctl_net.c net_ctl_header_lookup uses
// current->nsproxy), each namespace with its own values.
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include <algorithm>
#include <cstring>

#include "ns/net_objects.h"
#include "ns/ns_thread.h"

namespace cryo::ns {

namespace {

// Files that can be written and read (a write-only one is an action, such
// as net/ipv4/route/flush; a read-only one is no setting).
void Walk(const std::string& rel, std::map<std::string, std::string>* out) {
  const std::string dir = "/proc/sys/" + rel;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return;
  while (dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    const std::string path = rel + "/" + name;
    struct stat st;
    if (::stat(("/proc/sys/" + path).c_str(), &st) != 0) continue;
    if (S_ISDIR(st.st_mode)) {
      Walk(path, out);
      continue;
    }
    if (!(st.st_mode & S_IWUSR) || !(st.st_mode & S_IRUSR)) continue;
    auto v = ReadSysctl(path);
    if (v.ok()) (*out)[path] = *v;  // unreadable until set (stable_secret: EIO)
  }
  ::closedir(d);
}

// Written in this order: the global switches (ip_forward sets every
// device's forwarding), then "all", then "default", then each device's
// own, which would otherwise be overwritten.
int Rank(const std::string& path) {
  if (path == "net/ipv4/ip_forward") return 0;
  if (path.find("/all/") != std::string::npos) return 1;
  if (path.find("/default/") != std::string::npos) return 2;
  return 3;
}

// A device's own setting (net/ipv4/conf/DEV/..., net/ipv6/neigh/DEV/...) as
// the namespace's default for new devices ("default" for DEV), which a
// device made at restore starts with (net/ipv4/devinet.c inetdev_init
// copies it); "" for other paths.
std::string DefaultFor(const std::string& path) {
  for (const char* dir : {"net/ipv4/conf/", "net/ipv6/conf/", "net/ipv4/neigh/", "net/ipv6/neigh/"}) {
    if (!path.starts_with(dir)) continue;
    const size_t dev = std::strlen(dir), slash = path.find('/', dev);
    if (slash == std::string::npos) return "";
    return std::string(dir) + "default" + path.substr(slash);
  }
  return "";
}

}  // namespace

Status ReadNetSysctls(std::map<std::string, std::string>* out) {
  Walk("net", out);
  if (out->empty()) return Status::Error("/proc/sys/net shows nothing");
  return Status::Ok();
}

Status DumpNetSysctls(const FreshNetDefaults& fresh, image::NetNamespace* out) {
  std::map<std::string, std::string> mine;
  CRYO_RETURN_IF_ERROR(ReadNetSysctls(&mine));
  std::vector<std::pair<std::string, std::string>> changed;
  for (const auto& [path, value] : mine) {
    auto it = fresh.sysctls.find(path);
    if (it != fresh.sysctls.end() && it->second == value) continue;
    // A device a fresh namespace lacks (veth), made at restore before the
    // sysctls are written: set where it differs from a fresh default.
    if (it == fresh.sysctls.end()) {
      auto def = fresh.sysctls.find(DefaultFor(path));
      if (def != fresh.sysctls.end() && def->second == value) continue;
    }
    changed.emplace_back(path, value);
  }
  std::stable_sort(changed.begin(), changed.end(),
                   [](const auto& a, const auto& b) { return Rank(a.first) < Rank(b.first); });
  for (auto& [path, value] : changed) {
    image::NetSysctl* s = out->add_sysctls();
    s->set_path(path);
    s->set_value(value);
  }
  return Status::Ok();
}

Status RestoreNetSysctls(const image::NetNamespace& net, std::vector<const image::NetSysctl*>* later) {
  for (const image::NetSysctl& s : net.sysctls()) {
    if (!s.path().starts_with("net/") || s.path().find("..") != std::string::npos)
      return Status::Error("the image names a sysctl outside net/: " + s.path());
    if (later && ::access(("/proc/sys/" + s.path()).c_str(), F_OK) != 0 && errno == ENOENT) {
      later->push_back(&s);
      continue;
    }
    CRYO_RETURN_IF_ERROR(WriteSysctl(s.path(), s.value()).Prefixed("network namespace sysctl"));
  }
  return Status::Ok();
}

}  // namespace cryo::ns
