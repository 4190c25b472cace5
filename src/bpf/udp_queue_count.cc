#include "bpf/udp_queue_count.h"

#include <linux/bpf.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cstring>
#include <string>

#include "base/kernel_features.h"
#include "base/unique_fd.h"
#include "bpf/bpf_util.h"

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

Result<Offsets> LookUpOffsets() {
  CRYO_ASSIGN_OR_RETURN(const KernelBtf kernel, LoadKernelBtf());
  const btf* b = kernel.get();
  Offsets o;
  CRYO_ASSIGN_OR_RETURN(o.iter_func_id,
                        FunctionId(b, "bpf_iter_udp", "the kernel has no UDP socket iterator (bpf_iter_udp, Linux 5.9)"));
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

std::vector<bpf_insn> Instructions(const Offsets& o) {
  return {
      MovReg(R6, R1),                                     // r6 = ctx
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
      MovReg(R2, R10),                                    // r2 = the record
      AddImm(R2, -16),
      MovImm(R3, static_cast<int32_t>(kRecordSize)),
      Call(BPF_FUNC_seq_write),
      MovImm(R0, 0),
      Exit(),
  };
}

LoadedIterator Load() {
  Result<Offsets> o = LookUpOffsets();
  if (!o.ok()) return {o.status(), UniqueFd()};
  return AsLoaded(LoadIterator(Instructions(*o), o->iter_func_id, "cryo_udp_count"));
}

const LoadedIterator& TheIterator() {
  static const LoadedIterator loaded = Load();
  return loaded;
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
  CRYO_ASSIGN_OR_RETURN(const std::string bytes, ReadIterator(it.get(), "the UDP iterator"));
  CRYO_ASSIGN_OR_RETURN(std::vector<UdpQueueLengths> records, ParseUdpQueueRecords(bytes));
  for (const UdpQueueLengths& r : records)
    if (r.cookie == cookie) return r.receive_queue + r.reader_queue;
  return Status::Error("the UDP iterator did not meet the socket (cookie " + std::to_string(cookie) +
                       "): it walks only the sockets bound to a port");
}

}  // namespace cryo::bpf
