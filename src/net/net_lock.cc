#include "net/net_lock.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <atomic>
#include <cstring>

#include "base/janitor.h"
#include "base/nft.h"

namespace cryo {

namespace {

// "ip saddr 1.2.3.4 tcp sport 5" for one end of a connection.
std::string Match(const std::string& addr, const char* dir) {
  const InetEndpoint e = ParseInetEndpoint(addr);
  return std::string(e.ipv4 ? "ip " : "ip6 ") + dir + "addr " + e.ip + " tcp " + dir + "port " + std::to_string(e.port);
}

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
  const std::string pass = "meta mark != " + std::to_string(kNetLockPassMark);
  for (const LockedConnection& c : conns) {
    const std::string out = Match(c.local, "s") + " " + Match(c.peer, "d");
    const std::string in = Match(c.peer, "s") + " " + Match(c.local, "d");
    // Both directions in both hooks: over loopback the two ends' packets
    // pass both hooks.
    for (const char* chain : {"input", "output"}) {
      s += "add rule inet " + name + " " + chain + " " + out + " " + pass + " drop\n";
      s += "add rule inet " + name + " " + chain + " " + in + " " + pass + " drop\n";
    }
  }
  return s;
}

Status RunNft(const std::string& script) {
  std::string output;
  CRYO_ASSIGN_OR_RETURN(int rc, RunNftCommand({"-f", "-"}, script, &output));
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
    // The table and its chains exist: the rules only.
    std::string rules;
    size_t pos = 0;
    while (pos < script.size()) {
      const size_t end = script.find('\n', pos);
      const std::string line = script.substr(pos, end - pos + 1);
      if (line.rfind("add rule", 0) == 0) rules += line;
      pos = end + 1;
    }
    script = rules;
  }
  return RunNft(script).Prefixed("network lock " + name);
}

Result<bool> NetLockExists(const std::string& name) {
  if (!IsNetLockName(name)) return Status::Error("\"" + name + "\" is no network lock of cryo's");
  std::string output;
  CRYO_ASSIGN_OR_RETURN(int rc, RunNftCommand({"list", "tables", "inet"}, "", &output));
  if (rc != 0) return Status::Error("nft list tables failed: " + output);
  return output.find("table inet " + name + "\n") != std::string::npos;
}

Status MarkNetLockKept(const std::string& name) {
  if (!IsNetLockName(name)) return Status::Error("\"" + name + "\" is no network lock of cryo's");
  return RunNft("delete chain inet " + name + " dumping\n").Prefixed("network lock " + name);
}

Status RemoveStaleNetLocks(std::vector<std::string>* removed) {
  std::string output;
  CRYO_ASSIGN_OR_RETURN(int rc, RunNftCommand({"list", "tables", "inet"}, "", &output));
  if (rc != 0) return Status::Error("nft list tables failed: " + output);
  size_t pos = 0;
  while ((pos = output.find("table inet ", pos)) != std::string::npos) {
    pos += 11;
    const std::string name = output.substr(pos, output.find('\n', pos) - pos);
    if (!IsNetLockName(name) || !IsStaleTempName(kNetLockPrefix, name)) continue;
    std::string table;
    CRYO_ASSIGN_OR_RETURN(int lrc, RunNftCommand({"list", "table", "inet", name}, "", &table));
    if (lrc != 0 || table.find("chain dumping") == std::string::npos) continue;
    CRYO_RETURN_IF_ERROR(RunNft("delete table inet " + name + "\n").Prefixed("removing stale network lock " + name));
    removed->push_back(name);
  }
  return Status::Ok();
}

Status RemoveNetLock(const std::string& name) {
  CRYO_ASSIGN_OR_RETURN(bool exists, NetLockExists(name));
  if (!exists) return Status::Ok();
  return RunNft("delete table inet " + name + "\n").Prefixed("removing network lock " + name);
}

}  // namespace cryo
