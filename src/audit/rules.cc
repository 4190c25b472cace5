#include "audit/rules.h"

#include "audit/classify.h"

#include <sys/syscall.h>
#include <unistd.h>

#include "base/file_util.h"
#include "ns/ns_thread.h"

namespace cryo::audit {

const Rule* FindRule(std::span<const Rule> table, std::string_view key) {
  for (const Rule& r : table)
    if (r.key == key) return &r;
  return nullptr;
}

Decision Decide(const Rule* rule, std::string_view source, const Line& line) {
  if (!rule)
    return {Verdict::kRefused, "shows " + std::string(source) + " \"" + std::string(line.key) + ": " +
                                   std::string(line.value) +
                                   "\", which cryo does not know (a newer kernel?); cryo refuses what it cannot "
                                   "classify as restored"};
  if (rule->decide) return rule->decide(line);
  if (rule->against == Against::kCryoStatus) return SameAsCryo(line, line.cryo->status, rule->why);
  if (rule->against == Against::kCryoFile) return SameAsCryo(line, line.cryo->files, rule->why);
  return {rule->verdict, std::string(rule->why)};
}

void ClassifyLine(std::span<const Rule> table, std::string_view source, const std::string& subject, const Line& line,
                  Report* report) {
  const Rule* rule = FindRule(table, line.key);
  if (rule && !rule->decide && rule->against == Against::kNothing && rule->verdict != Verdict::kRefused) {
    report->Tally(subject, source, rule->key, rule->verdict);
    return;
  }
  Decision d = Decide(rule, source, line);
  report->Add(subject, std::string(source), std::string(line.key), std::string(line.value), d.verdict,
              std::move(d.why));
}

void ClassifyThreadAware(std::span<const Rule> table, std::string_view source, const std::string& subject,
                         const Line& line, const LeaderValues* leader, Report* report) {
  const Rule* rule = FindRule(table, line.key);
  if (!leader || !rule || rule->scope == Scope::kPerThread) return ClassifyLine(table, source, subject, line, report);
  if (rule->scope == Scope::kProcess) return report->Tally(subject, source, rule->key, Verdict::kNotState);
  // A value the rule itself refuses says so in the rule's words.
  if (rule->decide || rule->against != Against::kNothing) {
    Decision d = Decide(rule, source, line);
    if (d.verdict == Verdict::kRefused)
      return report->Add(subject, std::string(source), std::string(line.key), std::string(line.value), d.verdict,
                         std::move(d.why));
  }
  auto it = leader->find(line.key);
  if (it != leader->end() && it->second == line.value)
    return report->Tally(subject, source, rule->key, Verdict::kRestored);
  report->Add(subject, std::string(source), std::string(line.key), std::string(line.value), Verdict::kRefused,
              "has " + std::string(source) + " " + std::string(line.key) + " \"" + std::string(line.value) +
                  "\" where its process leader has \"" + (it == leader->end() ? "" : it->second) +
                  "\"; cryo gives every thread its leader's value, so this is not restored yet");
}

Decision SameAsCryo(const Line& line, const std::map<std::string, std::string>& cryo_values, std::string_view why) {
  auto it = cryo_values.find(std::string(line.key));
  if (it != cryo_values.end() && it->second == line.value)
    return {Verdict::kInherited, "the same as cryo's; inherited by the restored process"};
  const std::string mine = it == cryo_values.end() ? "none" : it->second;
  return {Verdict::kRefused, std::string(why) + " (" + std::string(line.key) + " " + std::string(line.value) +
                                 "; cryo's: " + mine + ")"};
}

std::vector<std::pair<std::string_view, std::string_view>> KeyValueLines(std::string_view text) {
  std::vector<std::pair<std::string_view, std::string_view>> out;
  for (std::string_view line : SplitLines(text)) {
    if (Trim(line).empty()) continue;
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) {
      out.emplace_back(Trim(line), std::string_view());
      continue;
    }
    out.emplace_back(Trim(line.substr(0, colon)), Trim(line.substr(colon + 1)));
  }
  return out;
}

Result<Baseline> Baseline::OfCryo() {
  Baseline b;
  b.pid = ::getpid();
  CRYO_ASSIGN_OR_RETURN(std::string status, ReadFileToString("/proc/self/status"));
  for (const auto& [k, v] : KeyValueLines(status)) b.status[std::string(k)] = std::string(v);
  for (const char* ns : {"cgroup", "ipc", "mnt", "net", "pid", "pid_for_children", "time", "time_for_children",
                         "user", "uts"}) {
    auto link = ReadLink(std::string("/proc/self/ns/") + ns);
    if (link.ok()) b.ns[ns] = *link;
    // Its main thread visiting the tree's network namespace (ns/netns.h).
    if (std::string_view(ns) == "net" && ns::HomeNetInode()) b.ns[ns] = "net:[" + std::to_string(ns::HomeNetInode()) + "]";
  }
  auto cg = ReadFileToString("/proc/self/cgroup");
  if (cg.ok())
    for (std::string_view l : SplitLines(*cg))
      if (!Trim(l).empty()) b.cgroup.emplace_back(l);
  for (const char* f : {"loginuid", "oom_score_adj", "coredump_filter", "attr/current", "cpu_resctrl_groups"}) {
    auto text = ReadFileToString(std::string("/proc/self/") + f);
    if (text.ok()) b.files[f] = std::string(Trim(*text));
  }
  b.ioprio = static_cast<int>(::syscall(SYS_ioprio_get, 1 /*IOPRIO_WHO_PROCESS*/, 0));
  return b;
}

}  // namespace cryo::audit
