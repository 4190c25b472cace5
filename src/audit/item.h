// The audit's item model. Everything the kernel shows about a process of the
// tree is one item (a status line, a stat field, a VMA flag, an fdinfo line,
// a namespace, a cgroup, a lock, ...), and each item gets a verdict: cryo
// restores it, the restored process inherits it from cryo, it is not state
// at all, or the dump is refused. An item no table knows is refused.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace cryo::audit {

enum class Verdict {
  kRestored,   // cryo saves and restores it; `why` names where
  kInherited,  // equal to cryo's own: the restored process, a fork of cryo, has it too
  kNotState,   // informational (counters, sizes, values derived from other items)
  kRefused,    // cryo would lose it: the dump is refused; `why` says what and what to do
};
const char* VerdictName(Verdict v);

struct Item {
  std::string subject;  // "pid 42", "pid 42 thread 43", "pid 42 fd 3", "pid 42 VMA 7f..-7f.. (name)"
  std::string source;   // "status", "stat", "smaps", "VmFlags", "fdinfo", "ns", "cgroup", "locks", ...
  std::string key;      // the line's key, the field's name, the flag
  std::string value;
  Verdict verdict = Verdict::kRefused;
  std::string why;      // refused: a phrase completing "<subject> ...", e.g. "is stopped by SIGSTOP; ..."
};

class Report {
 public:
  void Add(Item item) { items_.push_back(std::move(item)); }
  // Appends another report's items and counts.
  void Merge(Report&& other);
  void Add(std::string subject, std::string source, std::string key, std::string value, Verdict v, std::string why);
  // An item whose verdict does not depend on its value (the same for every
  // VMA, fd or thread): only counted, under its process ("pid N").
  void Tally(const std::string& subject, std::string_view source, std::string_view key, Verdict v);
  // A refusal found outside the tables (a VMA or fd kind the dump refused);
  // `why` may start with the subject (then it is not repeated).
  void Refuse(std::string subject, std::string source, std::string why);
  const std::vector<Item>& items() const { return items_; }
  size_t refusals() const;
  // Refused items of one process ("pid N"): its own, its threads', fds' and VMAs'.
  size_t RefusalsOf(const std::string& process) const;
  // One line per refusal: "<subject> <why>".
  std::vector<std::string> RefusalLines() const;
  // Ok if nothing is refused; otherwise an error listing every refusal.
  Status ToStatus() const;
  // For the debug log and `cryo check -t`: per subject prefix ("pid N"), the
  // number of items of each verdict, then each distinct source/key/verdict.
  std::vector<std::string> Summary() const;
  // Every item, one a line: "<subject>: <source> <key>=<value>: <verdict> (<why>)",
  // then the counted ones: "<process>: <source> <key>: <verdict> xN".
  std::vector<std::string> AllLines() const;

 private:
  struct Count {
    Verdict verdict;
    size_t n = 0;
  };
  using Counts = std::map<std::string_view, std::map<std::string_view, Count>>;  // source -> key -> count
  std::vector<Item> items_;
  // process -> counts (keys and sources are the rule tables' own strings)
  std::map<std::string, Counts> tally_;
  std::string last_process_;  // Tally()'s last process and its counts, looked up once
  Counts* last_counts_ = nullptr;
};

}  // namespace cryo::audit
