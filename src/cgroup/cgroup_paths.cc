#include "cgroup/cgroup_paths.h"

#include <algorithm>

#include "base/file_util.h"

namespace cryo::cgroup {

namespace {

std::vector<std::string> Components(std::string_view path) {
  std::vector<std::string> out;
  for (size_t start = 0; start <= path.size();) {
    size_t slash = path.find('/', start);
    if (slash == std::string_view::npos) slash = path.size();
    const std::string_view c = path.substr(start, slash - start);
    if (!c.empty() && c != ".") out.emplace_back(c);
    start = slash + 1;
  }
  return out;
}

std::vector<std::string> Split(std::string_view s, char sep) {
  std::vector<std::string> out;
  for (size_t start = 0; start <= s.size();) {
    size_t at = s.find(sep, start);
    if (at == std::string_view::npos) at = s.size();
    if (at > start) out.emplace_back(s.substr(start, at - start));
    start = at + 1;
  }
  return out;
}

// Whether mount `m` is of `hierarchy`: cgroup2 for "", else a v1 mount whose
// super options hold every controller of it (a controller is in one
// hierarchy only).
bool Mounts(const proc::MountInfo& m, const std::string& hierarchy) {
  if (hierarchy.empty()) return m.fstype == "cgroup2";
  if (m.fstype != "cgroup") return false;
  for (const std::string& c : Split(hierarchy, ','))
    if (std::find(m.super_options.begin(), m.super_options.end(), c) == m.super_options.end()) return false;
  return true;
}

}  // namespace

std::string HierarchyName(const std::string& hierarchy) { return hierarchy.empty() ? "cgroup2" : hierarchy; }

Result<std::vector<Membership>> ParseProcCgroup(std::string_view text) {
  std::vector<Membership> out;
  for (std::string_view line : SplitLines(text)) {
    if (line.empty()) continue;
    // ID:CONTROLLERS:PATH (the path may hold ':').
    const size_t a = line.find(':');
    const size_t b = a == std::string_view::npos ? a : line.find(':', a + 1);
    if (b == std::string_view::npos || b + 1 >= line.size() || line[b + 1] != '/')
      return Status::Error("malformed cgroup line \"" + std::string(line) + "\"");
    Membership m;
    m.hierarchy = std::string(line.substr(a + 1, b - a - 1));
    m.path = std::string(line.substr(b + 1));
    out.push_back(std::move(m));
  }
  return out;
}

Result<std::vector<Membership>> ReadProcCgroup(const std::string& file) {
  CRYO_ASSIGN_OR_RETURN(std::string text, ReadFileToString(file));
  auto r = ParseProcCgroup(text);
  if (!r.ok()) return r.status().Prefixed(file);
  return r;
}

Result<std::vector<proc::MountInfo>> OwnMounts() {
  CRYO_ASSIGN_OR_RETURN(std::string text, ReadFileToString("/proc/self/mountinfo"));
  return proc::ParseMountInfo(text);
}

Result<std::string> CgroupDir(const std::vector<proc::MountInfo>& mounts, const std::string& hierarchy,
                              const std::string& path) {
  const std::vector<std::string> want = Components(path);
  for (const proc::MountInfo& m : mounts) {
    if (!Mounts(m, hierarchy)) continue;
    const std::vector<std::string> root = Components(m.root);
    if (root.size() > want.size() || !std::equal(root.begin(), root.end(), want.begin())) continue;
    std::string dir = m.mount_point == "/" ? "" : m.mount_point;
    for (size_t i = root.size(); i < want.size(); ++i) dir += "/" + want[i];
    return dir.empty() ? "/" : dir;
  }
  return Status::Error("cgroup hierarchy " + HierarchyName(hierarchy) + " is not mounted here (no mount holds " +
                       path + ")");
}

std::string RelativePath(const std::string& path, const std::string& base) {
  const std::vector<std::string> p = Components(path), b = Components(base);
  size_t common = 0;
  while (common < p.size() && common < b.size() && p[common] == b[common]) ++common;
  std::string out;
  for (size_t i = common; i < b.size(); ++i) out += out.empty() ? ".." : "/..";
  for (size_t i = common; i < p.size(); ++i) out += (out.empty() ? "" : "/") + p[i];
  return out;
}

Result<std::string> JoinPath(const std::string& base, const std::string& rel) {
  std::vector<std::string> out = Components(base);
  for (const std::string& c : Components(rel)) {
    if (c != "..") {
      out.push_back(c);
      continue;
    }
    if (out.empty()) return Status::Error("cgroup path " + rel + " climbs above the root from " + base);
    out.pop_back();
  }
  std::string s;
  for (const std::string& c : out) s += "/" + c;
  return s.empty() ? "/" : s;
}

}  // namespace cryo::cgroup
