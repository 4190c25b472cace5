// image_mutate: edits the records of a real image field by field, the way a
// buggy or hostile writer would (checksums, inventory sizes and image id kept
// right), for tests/mutate/mutate_campaign.py.
//
//   image_mutate list DIR [--all-elements]   every mutation, one per line:
//                                            FILE <TAB> PATH <TAB> OP
//   image_mutate apply DIR FILE PATH OP      applies one, in place
//   image_mutate get DIR FILE PATH [--canonical]
//                                            prints a field's value (canonical:
//                                            without the ids each dump assigns
//                                            anew and device/inode numbers)
//   image_mutate keys DIR FILE PATH          the identity of each element of a
//                                            repeated field (fd number, VMA
//                                            range, timer id, ...), for lists
//                                            compared after a removal
//   image_mutate groups DIR FIELD            which fds/VMAs/ttys share a value
//                                            of id field FIELD (file_id, ...)
//
// PATH names a field of the file's record: "threads[0].regs.gpr[18]",
// "vmas[2].name", "fds[1]" (a whole element). OP is one of
//   set:V       a scalar (decimal; bytes in hex "x:..." ; bool 0/1)
//   clear       unset the field (or empty a repeated field)
//   del         remove the element PATH names
//   dup         append a copy of the element PATH names
//   from:FILE   the value the same PATH has in FILE (another process's record)
// A repeated field with more than three elements is mutated at its first two
// and its last element only, unless --all-elements.
#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>

#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <climits>
#include <cstdio>
#include <cstring>
#include <memory>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "cryo/image.pb.h"
#include "image/image_dir.h"

namespace {

using cryo::Status;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;
namespace img = cryo::image;

struct RecordFile {
  std::string name;
  img::FileKind kind;
};

std::unique_ptr<Message> NewRecord(img::FileKind kind) {
  switch (kind) {
    case img::FileKind::kInventory: return std::make_unique<img::Inventory>();
    case img::FileKind::kProcessCore: return std::make_unique<img::ProcessCore>();
    case img::FileKind::kMm: return std::make_unique<img::Mm>();
    case img::FileKind::kFdTable: return std::make_unique<img::FdTable>();
    case img::FileKind::kPipes: return std::make_unique<img::PipeTable>();
    case img::FileKind::kShm: return std::make_unique<img::ShmTable>();
    case img::FileKind::kTtys: return std::make_unique<img::TtyTable>();
    default: return nullptr;
  }
}

std::optional<img::FileKind> KindOf(const std::string& name) {
  if (name == img::InventoryName()) return img::FileKind::kInventory;
  if (name.rfind("core-", 0) == 0) return img::FileKind::kProcessCore;
  if (name.rfind("mm-", 0) == 0) return img::FileKind::kMm;
  if (name.rfind("fds-", 0) == 0) return img::FileKind::kFdTable;
  if (name == img::PipesName()) return img::FileKind::kPipes;
  if (name == img::ShmName()) return img::FileKind::kShm;
  if (name == img::TtysName()) return img::FileKind::kTtys;
  return std::nullopt;
}

// The metadata files of the image, from its inventory.
std::vector<RecordFile> Records(const std::string& dir) {
  img::Inventory inv;
  if (!img::ReadRecord(dir, img::InventoryName(), img::FileKind::kInventory, &inv).ok()) return {};
  std::vector<RecordFile> out = {{img::InventoryName(), img::FileKind::kInventory}};
  for (int pid : inv.pids())
    for (const std::string& n : {img::CoreName(pid), img::MmName(pid), img::FdsName(pid)})
      if (::access((dir + "/" + n).c_str(), F_OK) == 0) out.push_back({n, *KindOf(n)});
  for (const std::string& n : {img::PipesName(), img::ShmName(), img::TtysName()})
    if (::access((dir + "/" + n).c_str(), F_OK) == 0) out.push_back({n, *KindOf(n)});
  return out;
}

std::unique_ptr<Message> Load(const std::string& dir, const std::string& name) {
  auto kind = KindOf(name);
  if (!kind) return nullptr;
  auto msg = NewRecord(*kind);
  Status s = img::ReadRecord(dir, name, *kind, msg.get());
  if (!s.ok()) {
    fprintf(stderr, "image_mutate: %s\n", s.ToString().c_str());
    return nullptr;
  }
  return msg;
}

std::string Hex(const std::string& s) {
  static const char k[] = "0123456789abcdef";
  std::string out = "x:";
  for (unsigned char c : s) {
    out += k[c >> 4];
    out += k[c & 15];
  }
  return out;
}

std::string Unhex(const std::string& s) {
  std::string out;
  for (size_t i = 2; i + 1 < s.size(); i += 2) out += static_cast<char>(std::stoi(s.substr(i, 2), nullptr, 16));
  return out;
}

// One step of a path: a field, and an element index if it is repeated.
struct Step {
  std::string field;
  int index = -1;
};

std::vector<Step> ParsePath(const std::string& path) {
  std::vector<Step> out;
  size_t i = 0;
  while (i < path.size()) {
    size_t j = path.find_first_of(".[", i);
    Step s;
    s.field = path.substr(i, j == std::string::npos ? std::string::npos : j - i);
    i = j == std::string::npos ? path.size() : j;
    if (i < path.size() && path[i] == '[') {
      const size_t close = path.find(']', i);
      s.index = std::stoi(path.substr(i + 1, close - i - 1));
      i = close + 1;
    }
    if (i < path.size() && path[i] == '.') ++i;
    out.push_back(s);
  }
  return out;
}

// Where a path leads: the message holding the last field, that field, and
// its element index (-1: the field as a whole).
struct Target {
  Message* msg = nullptr;
  const FieldDescriptor* field = nullptr;
  int index = -1;
};

std::optional<Target> Resolve(Message* root, const std::string& path, bool create) {
  std::vector<Step> steps = ParsePath(path);
  Message* m = root;
  for (size_t k = 0; k < steps.size(); ++k) {
    const FieldDescriptor* f = m->GetDescriptor()->FindFieldByName(steps[k].field);
    if (!f) return std::nullopt;
    const Reflection* r = m->GetReflection();
    if (k + 1 == steps.size()) {
      if (f->is_repeated() && steps[k].index >= r->FieldSize(*m, f)) return std::nullopt;
      return Target{m, f, steps[k].index};
    }
    if (f->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE) return std::nullopt;
    if (f->is_repeated()) {
      if (steps[k].index < 0 || steps[k].index >= r->FieldSize(*m, f)) return std::nullopt;
      m = r->MutableRepeatedMessage(m, f, steps[k].index);
    } else {
      if (!create && !r->HasField(*m, f)) return std::nullopt;
      m = r->MutableMessage(m, f);
    }
  }
  return std::nullopt;
}

std::string ScalarText(const Message& m, const FieldDescriptor* f, int i) {
  const Reflection* r = m.GetReflection();
  const bool rep = i >= 0;
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32: return std::to_string(rep ? r->GetRepeatedInt32(m, f, i) : r->GetInt32(m, f));
    case FieldDescriptor::CPPTYPE_INT64: return std::to_string(rep ? r->GetRepeatedInt64(m, f, i) : r->GetInt64(m, f));
    case FieldDescriptor::CPPTYPE_UINT32: return std::to_string(rep ? r->GetRepeatedUInt32(m, f, i) : r->GetUInt32(m, f));
    case FieldDescriptor::CPPTYPE_UINT64: return std::to_string(rep ? r->GetRepeatedUInt64(m, f, i) : r->GetUInt64(m, f));
    case FieldDescriptor::CPPTYPE_BOOL: return (rep ? r->GetRepeatedBool(m, f, i) : r->GetBool(m, f)) ? "1" : "0";
    case FieldDescriptor::CPPTYPE_ENUM: return std::to_string(rep ? r->GetRepeatedEnumValue(m, f, i) : r->GetEnumValue(m, f));
    case FieldDescriptor::CPPTYPE_STRING: return Hex(rep ? r->GetRepeatedString(m, f, i) : r->GetString(m, f));
    case FieldDescriptor::CPPTYPE_MESSAGE: {
      if (!rep && !r->HasField(m, f)) return "<unset>";
      return Hex((rep ? r->GetRepeatedMessage(m, f, i) : r->GetMessage(m, f)).SerializeAsString());
    }
    default: return "?";
  }
}

std::string ValueText(const Target& t) {
  const Reflection* r = t.msg->GetReflection();
  if (t.field->is_repeated() && t.index < 0) {
    std::string out = "[";
    for (int i = 0; i < r->FieldSize(*t.msg, t.field); ++i) out += (i ? "," : "") + ScalarText(*t.msg, t.field, i);
    return out + "]";
  }
  return ScalarText(*t.msg, t.field, t.index);
}

bool SetScalar(const Target& t, const std::string& v) {
  Message* m = t.msg;
  const FieldDescriptor* f = t.field;
  const Reflection* r = m->GetReflection();
  const int i = t.index;
  const bool rep = f->is_repeated();
  if (rep && i < 0) return false;
  try {
    switch (f->cpp_type()) {
      case FieldDescriptor::CPPTYPE_INT32: {
        const int32_t x = static_cast<int32_t>(std::stoll(v));
        rep ? r->SetRepeatedInt32(m, f, i, x) : r->SetInt32(m, f, x);
        return true;
      }
      case FieldDescriptor::CPPTYPE_INT64: {
        const int64_t x = std::stoll(v);
        rep ? r->SetRepeatedInt64(m, f, i, x) : r->SetInt64(m, f, x);
        return true;
      }
      case FieldDescriptor::CPPTYPE_UINT32: {
        const uint32_t x = static_cast<uint32_t>(std::stoull(v));
        rep ? r->SetRepeatedUInt32(m, f, i, x) : r->SetUInt32(m, f, x);
        return true;
      }
      case FieldDescriptor::CPPTYPE_UINT64: {
        const uint64_t x = std::stoull(v);
        rep ? r->SetRepeatedUInt64(m, f, i, x) : r->SetUInt64(m, f, x);
        return true;
      }
      case FieldDescriptor::CPPTYPE_BOOL: {
        const bool x = v == "1";
        rep ? r->SetRepeatedBool(m, f, i, x) : r->SetBool(m, f, x);
        return true;
      }
      case FieldDescriptor::CPPTYPE_ENUM: {
        const int x = std::stoi(v);
        rep ? r->SetRepeatedEnumValue(m, f, i, x) : r->SetEnumValue(m, f, x);
        return true;
      }
      case FieldDescriptor::CPPTYPE_STRING: {
        const std::string x = Unhex(v);
        rep ? r->SetRepeatedString(m, f, i, x) : r->SetString(m, f, x);
        return true;
      }
      case FieldDescriptor::CPPTYPE_MESSAGE: {
        Message* sub = rep ? r->MutableRepeatedMessage(m, f, i) : r->MutableMessage(m, f);
        return sub->ParseFromString(Unhex(v));
      }
      default: return false;
    }
  } catch (const std::exception&) {
    return false;
  }
}

// The mutations of one scalar value.
std::vector<std::string> ScalarOps(const FieldDescriptor* f, const std::string& cur) {
  std::vector<std::string> vals;
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
    case FieldDescriptor::CPPTYPE_INT64: {
      const bool wide = f->cpp_type() == FieldDescriptor::CPPTYPE_INT64;
      const long long v = std::stoll(cur);
      vals = {"0", "1", "-1", std::to_string(wide ? LLONG_MIN : INT_MIN), std::to_string(wide ? LLONG_MAX : INT_MAX),
              std::to_string(v + 1)};
      break;
    }
    case FieldDescriptor::CPPTYPE_UINT32:
    case FieldDescriptor::CPPTYPE_UINT64: {
      const bool wide = f->cpp_type() == FieldDescriptor::CPPTYPE_UINT64;
      const unsigned long long v = std::stoull(cur);
      vals = {"0", "1", std::to_string(wide ? ULLONG_MAX : UINT_MAX), std::to_string(v + 1),
              std::to_string(wide ? (1ull << 63) : (1u << 31))};
      if (wide) vals.push_back(std::to_string(v + (1ull << 40)));
      break;
    }
    case FieldDescriptor::CPPTYPE_BOOL: vals = {cur == "1" ? "0" : "1"}; break;
    case FieldDescriptor::CPPTYPE_ENUM: vals = {"0", std::to_string(std::stoi(cur) + 1), "99"}; break;
    case FieldDescriptor::CPPTYPE_STRING: {
      const std::string v = Unhex(cur);
      vals = {Hex(""), Hex(v + std::string(4097, 'A')), Hex(v.substr(0, v.size() / 2) + '\0' + v.substr(v.size() / 2)),
              Hex(v.substr(0, v.size() / 2))};
      break;
    }
    default: break;
  }
  std::vector<std::string> out;
  for (const std::string& v : vals)
    if (v != cur && std::find(out.begin(), out.end(), "set:" + v) == out.end()) out.push_back("set:" + v);
  return out;
}

struct Lister {
  std::string file;
  bool all_elements;
  const std::vector<std::pair<std::string, const Message*>>* others;  // same-kind records of other processes

  void Emit(const std::string& path, const std::string& op) { printf("%s\t%s\t%s\n", file.c_str(), path.c_str(), op.c_str()); }

  std::vector<int> Indexes(int n) const {
    std::vector<int> out;
    for (int i = 0; i < n; ++i)
      if (all_elements || n <= 3 || i < 2 || i == n - 1) out.push_back(i);
    return out;
  }

  // The value PATH has in another process's record, if it differs.
  void EmitSwaps(const std::string& path, const std::string& cur) {
    for (const auto& [name, other] : *others) {
      std::unique_ptr<Message> copy(other->New());
      copy->CopyFrom(*other);
      auto t = Resolve(copy.get(), path, false);
      if (t && ValueText(*t) != cur) {
        Emit(path, "from:" + name);
        return;
      }
    }
  }

  void Walk(const Message& m, const std::string& prefix) {
    const google::protobuf::Descriptor* d = m.GetDescriptor();
    const Reflection* r = m.GetReflection();
    for (int fi = 0; fi < d->field_count(); ++fi) {
      const FieldDescriptor* f = d->field(fi);
      const std::string path = prefix + f->name();
      const bool msg = f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE;
      if (f->is_repeated()) {
        const int n = r->FieldSize(m, f);
        if (n) Emit(path, "clear");
        for (int i : Indexes(n)) {
          const std::string ep = path + "[" + std::to_string(i) + "]";
          Emit(ep, "del");
          Emit(ep, "dup");
          if (msg) {
            Walk(r->GetRepeatedMessage(m, f, i), ep + ".");
          } else {
            const std::string cur = ScalarText(m, f, i);
            for (const std::string& op : ScalarOps(f, cur)) Emit(ep, op);
            EmitSwaps(ep, cur);
          }
        }
      } else if (msg) {
        if (!r->HasField(m, f)) continue;
        Emit(path, "clear");
        Walk(r->GetMessage(m, f), path + ".");
      } else {
        const std::string cur = ScalarText(m, f, -1);
        for (const std::string& op : ScalarOps(f, cur)) Emit(path, op);
        EmitSwaps(path, cur);
      }
    }
  }
};

int List(const std::string& dir, bool all) {
  std::vector<RecordFile> files = Records(dir);
  if (files.empty()) {
    fprintf(stderr, "image_mutate: %s has no readable inventory\n", dir.c_str());
    return 1;
  }
  std::vector<std::unique_ptr<Message>> msgs;
  for (const RecordFile& rf : files) msgs.push_back(Load(dir, rf.name));
  for (size_t i = 0; i < files.size(); ++i) {
    if (!msgs[i]) return 1;
    std::vector<std::pair<std::string, const Message*>> others;
    for (size_t j = 0; j < files.size(); ++j)
      if (j != i && files[j].kind == files[i].kind && files[i].kind != img::FileKind::kInventory)
        others.emplace_back(files[j].name, msgs[j].get());
    Lister l{files[i].name, all, &others};
    l.Walk(*msgs[i], "");
  }
  return 0;
}

int Apply(const std::string& dir, const std::string& file, const std::string& path, const std::string& op) {
  auto kind = KindOf(file);
  auto msg = Load(dir, file);
  if (!kind || !msg) return 1;
  auto t = Resolve(msg.get(), path, true);
  if (!t) {
    fprintf(stderr, "image_mutate: %s has no field %s\n", file.c_str(), path.c_str());
    return 1;
  }
  const Reflection* r = t->msg->GetReflection();
  bool ok = true;
  if (op == "clear") {
    r->ClearField(t->msg, t->field);
  } else if (op == "del" || op == "dup") {
    if (t->index < 0) return 1;
    const int n = r->FieldSize(*t->msg, t->field);
    if (op == "dup") {
      const std::string v = ScalarText(*t->msg, t->field, t->index);
      if (t->field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
        r->AddMessage(t->msg, t->field)->ParseFromString(Unhex(v));
      } else {
        // Append a default element, then give it the value.
        switch (t->field->cpp_type()) {
          case FieldDescriptor::CPPTYPE_INT32: r->AddInt32(t->msg, t->field, 0); break;
          case FieldDescriptor::CPPTYPE_INT64: r->AddInt64(t->msg, t->field, 0); break;
          case FieldDescriptor::CPPTYPE_UINT32: r->AddUInt32(t->msg, t->field, 0); break;
          case FieldDescriptor::CPPTYPE_UINT64: r->AddUInt64(t->msg, t->field, 0); break;
          case FieldDescriptor::CPPTYPE_BOOL: r->AddBool(t->msg, t->field, false); break;
          case FieldDescriptor::CPPTYPE_ENUM: r->AddEnumValue(t->msg, t->field, 0); break;
          case FieldDescriptor::CPPTYPE_STRING: r->AddString(t->msg, t->field, ""); break;
          default: return 1;
        }
        ok = SetScalar(Target{t->msg, t->field, n}, v);
      }
    } else {
      for (int i = t->index; i + 1 < n; ++i) r->SwapElements(t->msg, t->field, i, i + 1);
      r->RemoveLast(t->msg, t->field);
    }
  } else if (op.rfind("set:", 0) == 0) {
    ok = SetScalar(*t, op.substr(4));
  } else if (op.rfind("from:", 0) == 0) {
    auto other = Load(dir, op.substr(5));
    if (!other) return 1;
    auto src = Resolve(other.get(), path, false);
    if (!src) return 1;
    ok = SetScalar(*t, ScalarText(*src->msg, src->field, src->index));
  } else {
    fprintf(stderr, "image_mutate: unknown op %s\n", op.c_str());
    return 1;
  }
  if (!ok) {
    fprintf(stderr, "image_mutate: cannot apply %s to %s\n", op.c_str(), path.c_str());
    return 1;
  }
  Status s = img::ReplaceRecord(dir, file, *kind, *msg);
  if (!s.ok()) {
    fprintf(stderr, "image_mutate: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}

// Ids a dump hands out anew (which objects share one is what counts, see
// Groups), and numbers of the objects the restore made.
bool Relabeled(const std::string& field) {
  static const std::set<std::string> kIds = {"file_id", "shmem_id", "pipe_id", "tty_id", "shm_object", "dev", "ino"};
  return kIds.count(field) > 0;
}

void StripRelabeled(Message* m) {
  const Reflection* r = m->GetReflection();
  std::vector<const FieldDescriptor*> set;
  r->ListFields(*m, &set);
  for (const FieldDescriptor* f : set) {
    if (Relabeled(f->name())) {
      r->ClearField(m, f);
    } else if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      if (f->is_repeated()) {
        for (int i = 0; i < r->FieldSize(*m, f); ++i) StripRelabeled(r->MutableRepeatedMessage(m, f, i));
      } else {
        StripRelabeled(r->MutableMessage(m, f));
      }
    }
  }
}

int Get(const std::string& dir, const std::string& file, const std::string& path, bool canonical) {
  auto msg = Load(dir, file);
  if (!msg) {
    printf("<no record>\n");
    return 0;
  }
  if (canonical) StripRelabeled(msg.get());
  auto t = Resolve(msg.get(), path, false);
  printf("%s\n", t ? ValueText(*t).c_str() : "<absent>");
  return 0;
}

// One line per element of the repeated field at PATH: the fields that name
// it (fd, start-end, id, tid, sig, which, resource, wd), or its canonical bytes.
int Keys(const std::string& dir, const std::string& file, const std::string& path) {
  auto msg = Load(dir, file);
  if (!msg) return 0;
  StripRelabeled(msg.get());
  auto t = Resolve(msg.get(), path, false);
  if (!t || !t->field->is_repeated()) return 0;
  const Reflection* r = t->msg->GetReflection();
  for (int i = 0; i < r->FieldSize(*t->msg, t->field); ++i) {
    if (t->field->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE) {
      printf("%s\n", ScalarText(*t->msg, t->field, i).c_str());
      continue;
    }
    const Message& e = r->GetRepeatedMessage(*t->msg, t->field, i);
    std::string key;
    for (const char* name : {"fd", "start", "end", "id", "tid", "sig", "which", "resource", "wd", "vaddr"}) {
      const FieldDescriptor* f = e.GetDescriptor()->FindFieldByName(name);
      if (f && !f->is_repeated() && f->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE)
        key += std::string(name) + "=" + ScalarText(e, f, -1) + " ";
    }
    printf("%s\n", key.empty() ? Hex(e.SerializeAsString()).c_str() : key.c_str());
  }
  return 0;
}

// The owners of each value of id field `field` in the image, as sets of
// "pid:fd=N", "pid:vma=START", "pid:ctty": equal output, equal sharing.
int Groups(const std::string& dir, const std::string& field) {
  std::map<std::string, std::set<std::string>> by_value;
  int lonely = 0;
  auto note = [&](const std::string& owner, uint64_t v) {
    // 0: not shared with anything.
    by_value[v ? std::to_string(v) : "0/" + std::to_string(lonely++)].insert(owner);
  };
  for (const RecordFile& rf : Records(dir)) {
    auto msg = Load(dir, rf.name);
    if (!msg) continue;
    const std::string pid = rf.name.substr(rf.name.find('-') + 1, rf.name.find('.') - rf.name.find('-') - 1);
    if (rf.kind == img::FileKind::kFdTable)
      for (const img::Fd& f : static_cast<img::FdTable&>(*msg).fds()) {
        const std::string owner = pid + ":fd=" + std::to_string(f.fd());
        if (field == "file_id") note(owner, f.file_id());
        if (field == "pipe_id" && f.has_pipe()) note(owner, f.pipe().pipe_id());
        if (field == "tty_id" && f.has_tty()) note(owner, f.tty().tty_id());
        if (field == "shm_object" && f.shm_object()) note(owner, f.shm_object());
      }
    if (rf.kind == img::FileKind::kMm)
      for (const img::Vma& v : static_cast<img::Mm&>(*msg).vmas()) {
        const std::string owner = pid + ":vma=" + std::to_string(v.start());
        if (field == "shmem_id" && v.shmem_id()) note(owner, v.shmem_id());
        if (field == "shm_object" && v.shm_object()) note(owner, v.shm_object());
      }
    if (rf.kind == img::FileKind::kProcessCore) {
      const auto& c = static_cast<img::ProcessCore&>(*msg);
      if (field == "tty_id" && c.has_ctty()) note(pid + ":ctty", c.ctty().tty_id());
    }
  }
  std::set<std::string> groups;
  for (const auto& [v, owners] : by_value) {
    std::string g;
    for (const std::string& o : owners) g += (g.empty() ? "" : " ") + o;
    groups.insert("{" + g + "}");
  }
  for (const std::string& g : groups) printf("%s\n", g.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> a(argv + 1, argv + argc);
  if (a.size() >= 2 && a[0] == "list") return List(a[1], a.size() > 2 && a[2] == "--all-elements");
  if (a.size() == 5 && a[0] == "apply") return Apply(a[1], a[2], a[3], a[4]);
  if ((a.size() == 4 || a.size() == 5) && a[0] == "get") return Get(a[1], a[2], a[3], a.size() == 5 && a[4] == "--canonical");
  if (a.size() == 3 && a[0] == "groups") return Groups(a[1], a[2]);
  if (a.size() == 4 && a[0] == "keys") return Keys(a[1], a[2], a[3]);
  fprintf(stderr,
          "usage: image_mutate list DIR [--all-elements] | apply DIR FILE PATH OP | get DIR FILE PATH [--canonical] | "
          "groups DIR FIELD\n");
  return 2;
}
