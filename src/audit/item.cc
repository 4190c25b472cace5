#include "audit/item.h"

#include <set>

namespace cryo::audit {

const char* VerdictName(Verdict v) {
  switch (v) {
    case Verdict::kRestored:
      return "restored";
    case Verdict::kInherited:
      return "inherited";
    case Verdict::kNotState:
      return "not-state";
    case Verdict::kRefused:
      return "REFUSED";
  }
  return "?";
}

void Report::Add(std::string subject, std::string source, std::string key, std::string value, Verdict v,
                 std::string why) {
  items_.push_back({std::move(subject), std::move(source), std::move(key), std::move(value), v, std::move(why)});
}

namespace {

// "pid 42" of "pid 42 fd 3" (the process an item belongs to).
std::string ProcessOf(const std::string& subject) {
  size_t sp = subject.find(' ');
  if (sp == std::string::npos) return subject;
  size_t end = subject.find(' ', sp + 1);
  return subject.substr(0, end);
}

}  // namespace

void Report::Tally(const std::string& subject, std::string_view source, std::string_view key, Verdict v) {
  // Items come process by process: most share the last one's prefix.
  const bool same = last_counts_ && subject.starts_with(last_process_) &&
                    (subject.size() == last_process_.size() || subject[last_process_.size()] == ' ');
  if (!same) {
    last_process_ = ProcessOf(subject);
    last_counts_ = &tally_[last_process_];
  }
  Count& c = (*last_counts_)[source][key];
  c.verdict = v;
  ++c.n;
}

void Report::Merge(Report&& other) {
  for (Item& i : other.items_) items_.push_back(std::move(i));
  for (auto& [p, sources] : other.tally_)
    for (auto& [source, keys] : sources)
      for (auto& [key, c] : keys) {
        Count& mine = tally_[p][source][key];
        mine.verdict = c.verdict;
        mine.n += c.n;
      }
  other = Report();
}

void Report::Refuse(std::string subject, std::string source, std::string why) {
  Add(std::move(subject), std::move(source), "", "", Verdict::kRefused, std::move(why));
}

size_t Report::refusals() const {
  size_t n = 0;
  for (const Item& i : items_) n += i.verdict == Verdict::kRefused;
  return n;
}

size_t Report::RefusalsOf(const std::string& process) const {
  size_t n = 0;
  for (const Item& i : items_) n += i.verdict == Verdict::kRefused && ProcessOf(i.subject) == process;
  return n;
}

std::vector<std::string> Report::RefusalLines() const {
  std::vector<std::string> out;
  std::set<std::string> seen;  // the same refusal for several threads or lines is said once
  for (const Item& i : items_) {
    if (i.verdict != Verdict::kRefused) continue;
    // A refusal found outside the tables names its subject itself.
    const bool named = i.why.starts_with(i.subject + " ") || i.why.starts_with(i.subject + ":");
    std::string line = i.subject.empty() || named ? i.why : i.subject + " " + i.why;
    if (seen.insert(line).second) out.push_back(std::move(line));
  }
  return out;
}

Status Report::ToStatus() const {
  std::vector<std::string> lines = RefusalLines();
  if (lines.empty()) return Status::Ok();
  std::string msg = std::to_string(lines.size()) +
                    (lines.size() == 1 ? " thing" : " things") +
                    " of the tree cannot be restored; nothing was written and the tree runs on untouched:";
  for (const std::string& l : lines) msg += "\n  " + l;
  return Status::Error(msg);
}

std::vector<std::string> Report::Summary() const {
  // Ordered by process, then source; keys listed once with their verdicts.
  std::map<std::string, std::map<Verdict, size_t>> counts;
  std::map<std::string, std::map<std::string, std::set<std::string>>> keys;
  for (const Item& i : items_) {
    const std::string p = ProcessOf(i.subject);
    ++counts[p][i.verdict];
    keys[p][i.source].insert((i.key.empty() ? std::string("-") : i.key) + "=" + VerdictName(i.verdict));
  }
  for (const auto& [p, sources] : tally_)
    for (const auto& [source, ks] : sources)
      for (const auto& [key, c] : ks) {
        counts[p][c.verdict] += c.n;
        keys[p][std::string(source)].insert(std::string(key) + "=" + VerdictName(c.verdict));
      }
  std::vector<std::string> out;
  for (const auto& [p, by_verdict] : counts) {
    std::string line = p + ": ";
    size_t total = 0;
    for (const auto& [v, n] : by_verdict) total += n;
    line += std::to_string(total) + " items classified:";
    for (const auto& [v, n] : by_verdict) line += " " + std::to_string(n) + " " + VerdictName(v);
    out.push_back(line);
    for (const auto& [source, ks] : keys[p]) {
      std::string l = "  " + p + " " + source + ":";
      for (const std::string& k : ks) l += " " + k;
      out.push_back(l);
    }
  }
  return out;
}

std::vector<std::string> Report::AllLines() const {
  std::vector<std::string> out;
  for (const Item& i : items_) {
    std::string l = i.subject + ": " + i.source;
    if (!i.key.empty()) l += " " + i.key;
    if (!i.value.empty()) l += "=" + i.value;
    l += ": " + std::string(VerdictName(i.verdict));
    if (!i.why.empty()) l += " (" + i.why + ")";
    out.push_back(std::move(l));
  }
  for (const auto& [p, sources] : tally_)
    for (const auto& [source, ks] : sources)
      for (const auto& [key, c] : ks)
        out.push_back(p + ": " + std::string(source) + " " + std::string(key) + ": " + VerdictName(c.verdict) + " x" +
                      std::to_string(c.n));
  return out;
}

}  // namespace cryo::audit
