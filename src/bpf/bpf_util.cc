#include "bpf/bpf_util.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstring>
#include <thread>

namespace cryo::bpf {

namespace {

// The byte offset of member `name` in the struct or union `type_id`, looking
// into anonymous members too; its type in *member_type. -1: no such member.
long MemberOffset(const btf* b, uint32_t type_id, std::string_view name, uint32_t* member_type) {
  const int resolved = btf__resolve_type(b, type_id);
  if (resolved < 0) return -1;
  const btf_type* t = btf__type_by_id(b, static_cast<uint32_t>(resolved));
  if (t == nullptr || !btf_is_composite(t)) return -1;
  const btf_member* m = btf_members(t);
  for (int i = 0; i < btf_vlen(t); ++i) {
    const long at = btf_member_bit_offset(t, static_cast<uint32_t>(i)) / 8;
    const char* mname = btf__name_by_offset(b, m[i].name_off);
    if (mname != nullptr && name == mname) {
      *member_type = m[i].type;
      return at;
    }
    if (mname == nullptr || *mname == '\0') {
      const long inner = MemberOffset(b, m[i].type, name, member_type);
      if (inner >= 0) return at + inner;
    }
  }
  return -1;
}

int QuietLibbpf(libbpf_print_level, const char*, va_list) { return 0; }

}  // namespace

void BtfDeleter::operator()(btf* b) const { btf__free(b); }

Result<KernelBtf> LoadKernelBtf() {
  libbpf_set_print(QuietLibbpf);  // errors come back as Status, with the verifier's last words
  btf* b = btf__load_vmlinux_btf();
  if (b == nullptr) return Status::FromErrno("no kernel BTF (/sys/kernel/btf/vmlinux, CONFIG_DEBUG_INFO_BTF)");
  return KernelBtf(b);
}

Result<int16_t> PathOffset(const btf* b, const char* type, std::initializer_list<std::string_view> path, size_t size) {
  const int id = btf__find_by_name_kind(b, type, BTF_KIND_STRUCT);
  if (id < 0) return Status::Error(std::string("the kernel's BTF has no struct ") + type);
  uint32_t at_type = static_cast<uint32_t>(id);
  long total = 0;
  std::string dotted = type;
  for (std::string_view name : path) {
    dotted += "." + std::string(name);
    const long off = MemberOffset(b, at_type, name, &at_type);
    if (off < 0) return Status::Error("the kernel's BTF has no " + dotted);
    total += off;
  }
  const long long width = btf__resolve_size(b, at_type);
  if (width != static_cast<long long>(size) || total > INT16_MAX)
    return Status::Error(dotted + " is not the " + std::to_string(size) + "-byte field cryo reads");
  return static_cast<int16_t>(total);
}

Result<uint32_t> FunctionId(const btf* b, const char* name, const std::string& missing) {
  const int func = btf__find_by_name_kind(b, name, BTF_KIND_FUNC);
  if (func < 0) return Status::Error(missing);
  return static_cast<uint32_t>(func);
}

bpf_insn Insn(uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm) {
  bpf_insn i{};
  i.code = code;
  i.dst_reg = dst & 0xf;
  i.src_reg = src & 0xf;
  i.off = off;
  i.imm = imm;
  return i;
}
bpf_insn Load(uint8_t size, uint8_t dst, uint8_t src, int16_t off) { return Insn(BPF_LDX | BPF_MEM | size, dst, src, off, 0); }
bpf_insn Store(uint8_t size, uint8_t dst, uint8_t src, int16_t off) { return Insn(BPF_STX | BPF_MEM | size, dst, src, off, 0); }
bpf_insn MovImm(uint8_t dst, int32_t imm) { return Insn(BPF_ALU64 | BPF_MOV | BPF_K, dst, 0, 0, imm); }
bpf_insn MovReg(uint8_t dst, uint8_t src) { return Insn(BPF_ALU64 | BPF_MOV | BPF_X, dst, src, 0, 0); }
bpf_insn AddImm(uint8_t dst, int32_t imm) { return Insn(BPF_ALU64 | BPF_ADD | BPF_K, dst, 0, 0, imm); }
bpf_insn Call(int32_t helper) { return Insn(BPF_JMP | BPF_CALL, 0, 0, 0, helper); }
bpf_insn Exit() { return Insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0); }

Result<UniqueFd> LoadIterator(const std::vector<bpf_insn>& insns, uint32_t attach_btf_id, const char* name) {
  libbpf_set_print(QuietLibbpf);
  std::string log(16384, '\0');
  LIBBPF_OPTS(bpf_prog_load_opts, opts, .expected_attach_type = BPF_TRACE_ITER, .attach_btf_id = attach_btf_id,
              .log_size = static_cast<uint32_t>(log.size()), .log_buf = log.data());
  // bpf_seq_write is for GPL programs only (kernel/bpf/helpers.c).
  UniqueFd prog(bpf_prog_load(BPF_PROG_TYPE_TRACING, name, "GPL", insns.data(), insns.size(), &opts));
  if (!prog.valid()) {
    const int err = errno;
    log.resize(std::strlen(log.c_str()));
    while (!log.empty() && log.back() == '\n') log.pop_back();
    const size_t last = log.rfind('\n');
    std::string why = log.empty() ? "" : ": " + log.substr(last == std::string::npos ? 0 : last + 1);
    return Status::Errno(err, std::string("loading the BPF iterator program ") + name +
                                  " (BPF_PROG_TYPE_TRACING needs CAP_BPF and CAP_PERFMON)" + why);
  }
  UniqueFd link(bpf_link_create(prog.get(), 0, BPF_TRACE_ITER, nullptr));
  if (!link.valid()) return Status::FromErrno(std::string("attaching the BPF iterator program ") + name + " (BPF_LINK_CREATE)");
  return link;
}

Result<UniqueFd> CreateIterator(int link, int netns) {
  struct stat here, there;
  if (::fstat(netns, &there) != 0) return Status::FromErrno("fstat of the socket's network namespace");
  if (::stat("/proc/thread-self/ns/net", &here) != 0) return Status::FromErrno("stat /proc/thread-self/ns/net");
  if (here.st_ino == there.st_ino && here.st_dev == there.st_dev) {
    UniqueFd it(bpf_iter_create(link));
    if (!it.valid()) return Status::FromErrno("BPF_ITER_CREATE");
    return it;
  }
  Status st;
  UniqueFd it;
  std::thread t([&] {
    if (::setns(netns, CLONE_NEWNET) != 0) {
      st = Status::FromErrno("setns into the socket's network namespace");
      return;
    }
    it.reset(bpf_iter_create(link));
    if (!it.valid()) st = Status::FromErrno("BPF_ITER_CREATE in the socket's network namespace");
  });
  t.join();
  if (!st.ok()) return st;
  return it;
}

Result<std::string> ReadIterator(int it, const std::string& what) {
  std::string bytes;
  char buf[16384];
  for (;;) {
    const ssize_t n = ::read(it, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::FromErrno("reading " + what);
    if (n == 0) break;
    bytes.append(buf, static_cast<size_t>(n));
  }
  return bytes;
}

Result<std::string> IterLinkTarget(int link) {
  char name[64] = {};
  bpf_link_info info{};
  info.iter.target_name = reinterpret_cast<uint64_t>(name);
  info.iter.target_name_len = sizeof(name);
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(link, &info, &len) != 0) return Status::FromErrno("BPF_OBJ_GET_INFO_BY_FD of an iterator link");
  if (info.type != BPF_LINK_TYPE_ITER) return Status::Error("the link is not an iterator's");
  name[sizeof(name) - 1] = '\0';
  return std::string(name);
}

LoadedIterator AsLoaded(Result<UniqueFd> link) {
  LoadedIterator l;
  if (!link.ok())
    l.status = link.status();
  else
    l.link = std::move(*link);
  return l;
}

}  // namespace cryo::bpf
