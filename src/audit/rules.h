// The rule tables' common shape. Each source of facts (status, stat, smaps,
// fdinfo, ...) has one table: every key the kernel is known to show maps to a
// verdict and a phrase, or to a small predicate that decides on the value.
// To flip an item to "restored" once cryo restores it, change its entry.
#pragma once

#include <sys/types.h>

#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "audit/item.h"
#include "base/status.h"

namespace cryo::audit {

// What the rules compare with: cryo's own values. A restored process is a
// fork of cryo (clone3 in `cryo restore`), so whatever it inherits across
// fork and cryo does not change comes back as cryo's.
struct Baseline {
  pid_t pid = 0;                              // cryo's
  std::map<std::string, std::string> status;  // /proc/self/status: key -> value
  std::map<std::string, std::string> ns;      // /proc/self/ns: name -> link
  std::vector<std::string> cgroup;            // /proc/self/cgroup lines
  std::map<std::string, std::string> files;   // small /proc/self files: name -> content (trimmed)
  int ioprio = 0;                             // ioprio_get(2) of cryo
  static Result<Baseline> OfCryo();
};

// How a status or stat line relates to threads.
enum class Scope {
  kProcess,     // one value for the process (thread files repeat the leader's): classified once
  kPerThread,   // each thread its own, restored per thread
  kLikeLeader,  // each thread its own, but cryo restores the leader's in every thread:
                // a thread whose value differs from its leader's is refused
};

// One line to classify, with what its rule may compare it with.
struct Line {
  std::string_view key;
  std::string_view value;
  const Baseline* cryo = nullptr;
  std::string_view vma_name;  // VmFlags and smaps: the VMA's name ("[vdso]", a path, "")
  pid_t pid = 0;                          // VmFlags: the process
  uint64_t vma_start = 0, vma_end = 0;    // VmFlags: the VMA
  bool hugetlb = false;                   // VmFlags: the VMA's flags have "ht"
};

struct Decision {
  Verdict verdict;
  std::string why;
};
using Predicate = Decision (*)(const Line& line);

// What a value is compared with: a rule with `against` set says "inherited
// if equal to cryo's value of the same key, refused (with `why`) if not".
enum class Against {
  kNothing,
  kCryoStatus,  // Baseline::status
  kCryoFile,    // Baseline::files
};

struct Rule {
  std::string_view key;
  Verdict verdict;
  std::string_view why;  // kRefused: completes "<subject> ..." and says what to do
  Predicate decide = nullptr;  // if set: decides instead of verdict/why
  Scope scope = Scope::kProcess;
  Against against = Against::kNothing;
};

const Rule* FindRule(std::span<const Rule> table, std::string_view key);
// The rule's decision for `line` (an unknown key, `rule` null, is refused).
Decision Decide(const Rule* rule, std::string_view source, const Line& line);
// Adds the item of one line to `report`.
void ClassifyLine(std::span<const Rule> table, std::string_view source, const std::string& subject, const Line& line,
                  Report* report);

// kInherited if `line.value` equals cryo's value of the same key in
// `cryo_values`, else refused with "<why> (<key> <value>; cryo's: <value>)".
Decision SameAsCryo(const Line& line, const std::map<std::string, std::string>& cryo_values, std::string_view why);

// "key: value" lines (status, smaps bodies, ksm_stat): key and trimmed value.
std::vector<std::pair<std::string_view, std::string_view>> KeyValueLines(std::string_view text);

// What the tables say about classes of state nobody restores yet.
inline constexpr std::string_view kNotYet = "is not restored yet";

}  // namespace cryo::audit
