#include "net/net_lock.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <atomic>
#include <cstring>
#include <set>
#include <utility>

#include "base/clock.h"
#include "base/janitor.h"
#include "base/log.h"
#include "base/nft.h"

namespace cryo {

namespace {

// One end as an element of a set of 4-tuples: "1.2.3.4 . 5".
std::string Element(const InetEndpoint& e) { return e.ip + " . " + std::to_string(e.port); }

// Every nft(8) run of the lock goes through here, logged with its time:
// tests count the runs of a dump (one lock script, whatever the number of
// connections).
Result<int> Nft(const std::vector<std::string>& args, const std::string& input, std::string* output) {
  const double t0 = Now();
  Result<int> rc = RunNftCommand(args, input, output);
  std::string cmd;
  for (const std::string& a : args) cmd += " " + a;
  const std::string end = rc.ok() ? "exit " + std::to_string(*rc) : rc.status().ToString();
  LOG_DEBUG("network lock: nft%s (%zu bytes of script): %s in %.1f ms", cmd.c_str(), input.size(), end.c_str(),
            (Now() - t0) * 1e3);
  return rc;
}

// The sets of 4-tuples (saddr . sport . daddr . dport) whose packets the
// rules drop, one per address family.
constexpr const char* kSet4 = "conns4";
constexpr const char* kSet6 = "conns6";

}  // namespace

InetEndpoint ParseInetEndpoint(const std::string& addr) {
  InetEndpoint e;
  char text[INET6_ADDRSTRLEN] = {};
  sa_family_t fam = 0;
  if (addr.size() >= sizeof(fam)) std::memcpy(&fam, addr.data(), sizeof(fam));
  if (fam == AF_INET && addr.size() >= sizeof(sockaddr_in)) {
    sockaddr_in a;
    std::memcpy(&a, addr.data(), sizeof(a));
    e.ipv4 = true;
    e.port = ntohs(a.sin_port);
    if (::inet_ntop(AF_INET, &a.sin_addr, text, sizeof(text))) e.ip = text;
  } else if (fam == AF_INET6 && addr.size() >= sizeof(sockaddr_in6)) {
    sockaddr_in6 a;
    std::memcpy(&a, addr.data(), sizeof(a));
    e.port = ntohs(a.sin6_port);
    e.ipv4 = IN6_IS_ADDR_V4MAPPED(&a.sin6_addr);
    if (e.ipv4 ? ::inet_ntop(AF_INET, &a.sin6_addr.s6_addr[12], text, sizeof(text))
               : ::inet_ntop(AF_INET6, &a.sin6_addr, text, sizeof(text)))
      e.ip = text;
  }
  return e;
}

bool IsNetLockName(const std::string& name) {
  const std::string prefix = std::string(kNetLockPrefix) + "-";
  if (name.size() <= prefix.size() || name.size() > 64 || name.compare(0, prefix.size(), prefix) != 0) return false;
  for (char c : name)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-')) return false;
  return true;
}

std::string NewNetLockName() {
  static std::atomic<int> serial{0};
  return OwnTempName(kNetLockPrefix, std::to_string(serial++));
}

std::string NetLockScript(const std::string& name, const std::vector<LockedConnection>& conns) {
  std::string s;
  // Before conntrack (priority -200): a dropped packet leaves no trace.
  s += "add table inet " + name + "\n";
  s += "add chain inet " + name + " input { type filter hook input priority -300 ; policy accept ; }\n";
  s += "add chain inet " + name + " output { type filter hook output priority -300 ; policy accept ; }\n";
  s += "add chain inet " + name + " dumping\n";
  // A constant number of rules, whatever the number of connections: one
  // lookup in a hashed set per packet of the machine while the lock is on,
  // and one nft run locks every connection of a dump.
  s += "add set inet " + name + " " + kSet4 + " { type ipv4_addr . inet_service . ipv4_addr . inet_service ; }\n";
  s += "add set inet " + name + " " + kSet6 + " { type ipv6_addr . inet_service . ipv6_addr . inet_service ; }\n";
  const std::string pass = " meta mark != " + std::to_string(kNetLockPassMark) + " drop\n";
  // Both hooks: over loopback the two ends' packets pass both.
  for (const char* chain : {"input", "output"}) {
    s += "add rule inet " + name + " " + chain + " ip saddr . tcp sport . ip daddr . tcp dport @" + kSet4 + pass;
    s += "add rule inet " + name + " " + chain + " ip6 saddr . tcp sport . ip6 daddr . tcp dport @" + kSet6 + pass;
  }
  // Both directions of each; both ends of a connection inside the tree give
  // the same two 4-tuples, listed once.
  std::set<std::string> v4, v6;
  for (const LockedConnection& c : conns) {
    const InetEndpoint local = ParseInetEndpoint(c.local), peer = ParseInetEndpoint(c.peer);
    std::set<std::string>& set = local.ipv4 ? v4 : v6;
    set.insert(Element(local) + " . " + Element(peer));
    set.insert(Element(peer) + " . " + Element(local));
  }
  for (const auto& [set, elements] : {std::pair{kSet4, &v4}, std::pair{kSet6, &v6}}) {
    if (elements->empty()) continue;
    std::string list;
    for (const std::string& e : *elements) list += (list.empty() ? "" : ", ") + e;
    s += "add element inet " + name + " " + set + " { " + list + " }\n";
  }
  return s;
}

Status RunNft(const std::string& script) {
  std::string output;
  CRYO_ASSIGN_OR_RETURN(int rc, Nft({"-f", "-"}, script, &output));
  if (rc != 0) {
    while (!output.empty() && output.back() == '\n') output.pop_back();
    return Status::Error("nft failed (exit " + std::to_string(rc) + "): " + output);
  }
  return Status::Ok();
}

Status AddNetLock(const std::string& name, const std::vector<LockedConnection>& conns, bool create) {
  if (!IsNetLockName(name)) return Status::Error("\"" + name + "\" is no network lock of cryo's");
  std::string script = NetLockScript(name, conns);
  if (!create) {
    // The table, its chains, sets and rules exist: the elements only.
    std::string elements;
    size_t pos = 0;
    while (pos < script.size()) {
      const size_t end = script.find('\n', pos);
      const std::string line = script.substr(pos, end - pos + 1);
      if (line.rfind("add element", 0) == 0) elements += line;
      pos = end + 1;
    }
    if (elements.empty()) return Status::Ok();
    script = elements;
  }
  return RunNft(script).Prefixed("network lock " + name);
}

Result<bool> NetLockExists(const std::string& name) {
  if (!IsNetLockName(name)) return Status::Error("\"" + name + "\" is no network lock of cryo's");
  std::string output;
  CRYO_ASSIGN_OR_RETURN(int rc, Nft({"list", "tables", "inet"}, "", &output));
  if (rc != 0) return Status::Error("nft list tables failed: " + output);
  return output.find("table inet " + name + "\n") != std::string::npos;
}

Status MarkNetLockKept(const std::string& name) {
  if (!IsNetLockName(name)) return Status::Error("\"" + name + "\" is no network lock of cryo's");
  return RunNft("delete chain inet " + name + " dumping\n").Prefixed("network lock " + name);
}

Status RemoveStaleNetLocks(std::vector<std::string>* removed) {
  std::string output;
  CRYO_ASSIGN_OR_RETURN(int rc, Nft({"list", "tables", "inet"}, "", &output));
  if (rc != 0) return Status::Error("nft list tables failed: " + output);
  size_t pos = 0;
  while ((pos = output.find("table inet ", pos)) != std::string::npos) {
    pos += 11;
    const std::string name = output.substr(pos, output.find('\n', pos) - pos);
    if (!IsNetLockName(name) || !IsStaleTempName(kNetLockPrefix, name)) continue;
    std::string table;
    CRYO_ASSIGN_OR_RETURN(int lrc, Nft({"list", "table", "inet", name}, "", &table));
    if (lrc != 0 || table.find("chain dumping") == std::string::npos) continue;
    CRYO_RETURN_IF_ERROR(RunNft("delete table inet " + name + "\n").Prefixed("removing stale network lock " + name));
    removed->push_back(name);
  }
  return Status::Ok();
}

Status RemoveNetLock(const std::string& name) {
  if (!IsNetLockName(name)) return Status::Error("\"" + name + "\" is no network lock of cryo's");
  // One run whether the table exists or not: in one transaction, adding a
  // table that exists changes nothing, and the delete then removes it.
  // (The nft of Debian 12, 1.0.6, has no `destroy` command.)
  return RunNft("add table inet " + name + "\ndelete table inet " + name + "\n").Prefixed("removing network lock " + name);
}

}  // namespace cryo
