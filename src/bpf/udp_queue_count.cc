#include "bpf/udp_queue_count.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <linux/sockios.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <mutex>
#include <string>
#include <thread>

#include "base/kernel_features.h"
#include "base/unique_fd.h"

namespace cryo::bpf {

namespace {

constexpr size_t kRecordSize = 16;  // u64 cookie, u32 receive_queue, u32 reader_queue

// ---------------------------------------------------------------------------
// Offsets in the running kernel's types, from its BTF.

struct Offsets {
  int16_t ctx_meta, ctx_udp_sk;  // struct bpf_iter__udp
  int16_t meta_seq;              // struct bpf_iter_meta
  int16_t cookie;                // in struct udp_sock: inet.sk.__sk_common.skc_cookie (sk_cookie before 6.x)
  int16_t receive_qlen;          // inet.sk.sk_receive_queue.qlen
  int16_t reader_qlen;           // reader_queue.qlen
  uint32_t iter_func_id = 0;     // the BTF id of bpf_iter_udp, the attach point
};

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

// The offset of a member path ("inet.sk.sk_receive_queue.qlen") in struct
// `type`, checked to be `size` bytes wide and to fit an instruction's offset.
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

Result<Offsets> LookUpOffsets() {
  btf* b = btf__load_vmlinux_btf();
  if (b == nullptr) return Status::FromErrno("no kernel BTF (/sys/kernel/btf/vmlinux, CONFIG_DEBUG_INFO_BTF)");
  struct Free {
    btf* b;
    ~Free() { btf__free(b); }
  } free_btf{b};
  Offsets o;
  const int func = btf__find_by_name_kind(b, "bpf_iter_udp", BTF_KIND_FUNC);
  if (func < 0) return Status::Error("the kernel has no UDP socket iterator (bpf_iter_udp, Linux 5.9)");
  o.iter_func_id = static_cast<uint32_t>(func);
  CRYO_ASSIGN_OR_RETURN(o.ctx_meta, PathOffset(b, "bpf_iter__udp", {"meta"}, 8));
  CRYO_ASSIGN_OR_RETURN(o.ctx_udp_sk, PathOffset(b, "bpf_iter__udp", {"udp_sk"}, 8));
  CRYO_ASSIGN_OR_RETURN(o.meta_seq, PathOffset(b, "bpf_iter_meta", {"seq"}, 8));
  Result<int16_t> cookie = PathOffset(b, "udp_sock", {"inet", "sk", "__sk_common", "skc_cookie"}, 8);
  if (!cookie.ok()) cookie = PathOffset(b, "udp_sock", {"inet", "sk", "sk_cookie"}, 8);
  CRYO_ASSIGN_OR_RETURN(o.cookie, std::move(cookie));
  CRYO_ASSIGN_OR_RETURN(o.receive_qlen, PathOffset(b, "udp_sock", {"inet", "sk", "sk_receive_queue", "qlen"}, 4));
  CRYO_ASSIGN_OR_RETURN(o.reader_qlen, PathOffset(b, "udp_sock", {"reader_queue", "qlen"}, 4));
  return o;
}

// ---------------------------------------------------------------------------
// The program, instruction by instruction (linux/bpf.h encoding).

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

std::vector<bpf_insn> Instructions(const Offsets& o) {
  enum : uint8_t { R0, R1, R2, R3, R6 = 6, R7, R10 = 10 };
  return {
      Insn(BPF_ALU64 | BPF_MOV | BPF_X, R6, R1, 0, 0),   // r6 = ctx
      Load(BPF_DW, R7, R6, o.ctx_udp_sk),                 // r7 = ctx->udp_sk
      Insn(BPF_JMP | BPF_JEQ | BPF_K, R7, 0, 12, 0),      // NULL: the end of the walk -> return 0
      Load(BPF_DW, R1, R7, o.cookie),                     // the record on the stack, r10-16 .. r10-1
      Store(BPF_DW, R10, R1, -16),
      Load(BPF_W, R1, R7, o.receive_qlen),
      Store(BPF_W, R10, R1, -8),
      Load(BPF_W, R1, R7, o.reader_qlen),
      Store(BPF_W, R10, R1, -4),
      Load(BPF_DW, R1, R6, o.ctx_meta),                   // r1 = ctx->meta->seq
      Load(BPF_DW, R1, R1, o.meta_seq),
      Insn(BPF_ALU64 | BPF_MOV | BPF_X, R2, R10, 0, 0),   // r2 = the record
      Insn(BPF_ALU64 | BPF_ADD | BPF_K, R2, 0, 0, -16),
      Insn(BPF_ALU64 | BPF_MOV | BPF_K, R3, 0, 0, static_cast<int32_t>(kRecordSize)),
      Insn(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_seq_write),
      Insn(BPF_ALU64 | BPF_MOV | BPF_K, R0, 0, 0, 0),
      Insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
  };
}

int QuietLibbpf(libbpf_print_level, const char*, va_list) { return 0; }

// The iterator's link, made once for the process (the link holds the program).
struct Loaded {
  Status status;
  UniqueFd link;
};

Loaded Load() {
  Loaded l;
  libbpf_set_print(QuietLibbpf);  // errors come back as Status, with the verifier's last words
  Result<Offsets> o = LookUpOffsets();
  if (!o.ok()) {
    l.status = o.status();
    return l;
  }
  const std::vector<bpf_insn> insns = Instructions(*o);
  std::string log(16384, '\0');
  LIBBPF_OPTS(bpf_prog_load_opts, opts, .expected_attach_type = BPF_TRACE_ITER, .attach_btf_id = o->iter_func_id,
              .log_size = static_cast<uint32_t>(log.size()), .log_buf = log.data());
  // bpf_seq_write is for GPL programs only (kernel/bpf/helpers.c).
  UniqueFd prog(bpf_prog_load(BPF_PROG_TYPE_TRACING, "cryo_udp_count", "GPL", insns.data(), insns.size(), &opts));
  if (!prog.valid()) {
    const int err = errno;
    log.resize(std::strlen(log.c_str()));
    while (!log.empty() && log.back() == '\n') log.pop_back();
    const size_t last = log.rfind('\n');
    std::string why = log.empty() ? "" : ": " + log.substr(last == std::string::npos ? 0 : last + 1);
    l.status = Status::Errno(err, "loading the UDP iterator program (BPF_PROG_TYPE_TRACING needs CAP_BPF and CAP_PERFMON)" + why);
    return l;
  }
  l.link.reset(bpf_link_create(prog.get(), 0, BPF_TRACE_ITER, nullptr));
  if (!l.link.valid()) l.status = Status::FromErrno("attaching the UDP iterator program (BPF_LINK_CREATE)");
  return l;
}

const Loaded& TheIterator() {
  static const Loaded loaded = Load();
  return loaded;
}

// An iterator that walks the network namespace `netns` (an fd of it), made on
// a thread that joined it when it is not the caller's (setns(2) changes only
// the calling thread).
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

}  // namespace

Result<std::vector<UdpQueueLengths>> ParseUdpQueueRecords(std::string_view bytes) {
  if (bytes.size() % kRecordSize != 0)
    return Status::Error("the UDP iterator wrote " + std::to_string(bytes.size()) + " bytes, not a whole number of " +
                         std::to_string(kRecordSize) + "-byte records");
  std::vector<UdpQueueLengths> out(bytes.size() / kRecordSize);
  for (size_t i = 0; i < out.size(); ++i) {
    const char* r = bytes.data() + i * kRecordSize;
    std::memcpy(&out[i].cookie, r, 8);
    std::memcpy(&out[i].receive_queue, r + 8, 4);
    std::memcpy(&out[i].reader_queue, r + 12, 4);
  }
  return out;
}

Status UdpQueueCountAvailable() {
  if (PretendMissing(kUdpIterFeature))
    return Status::Error(std::string("taken as missing (") + kPretendMissingEnv + ")");
  return TheIterator().status;
}

Result<uint32_t> CountUdpDatagrams(int fd) {
  CRYO_RETURN_IF_ERROR(UdpQueueCountAvailable());
  return CountUdpDatagramsOfKernel(fd);
}

Result<uint32_t> CountUdpDatagramsOfKernel(int fd) {
  CRYO_RETURN_IF_ERROR(TheIterator().status);
  uint64_t cookie = 0;  // also makes the kernel give the socket its cookie (sock_gen_cookie)
  socklen_t len = sizeof(cookie);
  if (::getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &len) != 0) return Status::FromErrno("SO_COOKIE");
  UniqueFd netns(::ioctl(fd, SIOCGSKNS));
  if (!netns.valid()) return Status::FromErrno("SIOCGSKNS (the socket's network namespace)");
  CRYO_ASSIGN_OR_RETURN(UniqueFd it, CreateIterator(TheIterator().link.get(), netns.get()));
  std::string bytes;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(it.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::FromErrno("reading the UDP iterator");
    if (n == 0) break;
    bytes.append(buf, static_cast<size_t>(n));
  }
  CRYO_ASSIGN_OR_RETURN(std::vector<UdpQueueLengths> records, ParseUdpQueueRecords(bytes));
  for (const UdpQueueLengths& r : records)
    if (r.cookie == cookie) return r.receive_queue + r.reader_queue;
  return Status::Error("the UDP iterator did not meet the socket (cookie " + std::to_string(cookie) +
                       "): it walks only the sockets bound to a port");
}

}  // namespace cryo::bpf
