#include "bpf/tcp_options.h"

#include <linux/bpf.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cstring>

#include "base/kernel_features.h"
#include "base/unique_fd.h"
#include "base/clock.h"
#include "base/log.h"
#include "bpf/btf_cache.h"
#include "bpf/bpf_util.h"

namespace cryo::bpf {

namespace {

// Levels as the kernel numbers them (SOL_IP is IPPROTO_IP, ...).
constexpr int kSol = SOL_SOCKET, kTcp = IPPROTO_TCP, kIp = IPPROTO_IP, kIpv6 = IPPROTO_IPV6;

// The options bpf_getsockopt reads from an iterator (sol_socket_sockopt,
// sol_tcp_sockopt, sol_ip_sockopt, sol_ipv6_sockopt in net/core/filter.c)
// that socket_options.cc dumps for a connection. Not here:
// SO_MAX_PACING_RATE (the helper reads 4 bytes of it, getsockopt(2) 8),
// TCP_MAXSEG (a connection's is read in repair mode).
const std::vector<BulkOption> kOptions = {
    {kSol, SO_REUSEADDR, 4},   {kSol, SO_SNDBUF, 4},           {kSol, SO_RCVBUF, 4},
    {kSol, SO_KEEPALIVE, 4},   {kSol, SO_PRIORITY, 4},         {kSol, SO_REUSEPORT, 4},
    {kSol, SO_RCVLOWAT, 4},    {kSol, SO_MARK, 4},             {kSol, 74 /*SO_TXREHASH*/, 4},
    {kTcp, TCP_NODELAY, 4},    {kTcp, TCP_KEEPIDLE, 4},        {kTcp, TCP_KEEPINTVL, 4},
    {kTcp, TCP_KEEPCNT, 4},    {kTcp, TCP_SYNCNT, 4},          {kTcp, TCP_WINDOW_CLAMP, 4},
    {kTcp, TCP_THIN_LINEAR_TIMEOUTS, 4}, {kTcp, TCP_USER_TIMEOUT, 4}, {kTcp, TCP_NOTSENT_LOWAT, 4},
    {kTcp, TCP_SAVE_SYN, 4},   {kTcp, TCP_CONGESTION, 16},     {kIp, IP_TOS, 4},
    {kIpv6, IPV6_TCLASS, 4},   {kIpv6, IPV6_AUTOFLOWLABEL, 4},
};

// A record: the cookie (u64), then per option its slot: the helper's
// return value (s32) and the value. TCP_CONGESTION's slot has room for the
// name (TCP_CA_NAME_MAX, 16 bytes) and the terminating NUL the helper adds
// (sol_tcp_sockopt_congestion shortens the length it passes on by one).
constexpr uint32_t kCookieSize = 8;
uint32_t HelperLength(const BulkOption& o) { return o.size == 4 ? 4 : o.size + 1; }
uint32_t SlotSize(const BulkOption& o) { return 4 + ((HelperLength(o) + 3) & ~3u); }
uint32_t RecordSize() {
  uint32_t n = kCookieSize;
  for (const BulkOption& o : kOptions) n += SlotSize(o);
  return (n + 7) & ~7u;
}

struct Offsets {
  int16_t ctx_meta, ctx_sk_common;  // struct bpf_iter__tcp
  int16_t meta_seq;                 // struct bpf_iter_meta
  uint32_t iter_func_id = 0;        // the BTF id of bpf_iter_tcp, the attach point
};

// Only values a wrong cached copy of which the kernel refuses (btf_cache.h):
// the context's members and meta->seq are typed by the verifier (a load at
// another offset is refused or gives a pointer of another type, which
// bpf_get_socket_cookie and bpf_seq_write refuse), and the iterator's
// function id is checked against the link's target after the load.
Result<Offsets> LookUpOffsets(BtfLookups& lk) {
  Offsets o;
  CRYO_ASSIGN_OR_RETURN(o.iter_func_id,
                        lk.Function("bpf_iter_tcp", "the kernel has no TCP socket iterator (bpf_iter_tcp, Linux 5.9)"));
  CRYO_ASSIGN_OR_RETURN(o.ctx_meta, lk.Offset("bpf_iter__tcp", {"meta"}, 8));
  CRYO_ASSIGN_OR_RETURN(o.ctx_sk_common, lk.Offset("bpf_iter__tcp", {"sk_common"}, 8));
  CRYO_ASSIGN_OR_RETURN(o.meta_seq, lk.Offset("bpf_iter_meta", {"seq"}, 8));
  return o;
}

// The program: the record built on the stack (zeroed first: bpf_seq_write
// reads all of it, and the verifier refuses a read of stack never written),
// written with bpf_seq_write.
std::vector<bpf_insn> Instructions(const Offsets& o) {
  const int32_t rec = static_cast<int32_t>(RecordSize());
  std::vector<bpf_insn> p;
  p.push_back(MovReg(R6, R1));                         // r6 = ctx
  p.push_back(Load(BPF_DW, R7, R6, o.ctx_sk_common));  // r7 = ctx->sk_common
  const size_t null_check = p.size();
  p.push_back(Insn(BPF_JMP | BPF_JEQ | BPF_K, R7, 0, 0, 0));  // NULL: the end of the walk -> return 0 (patched)
  // Only full TCP sockets (what an fd holds): the walk also meets TIME_WAIT
  // and request sockets, often thousands on a busy machine, each of which
  // would cost a record and 23 refused helper calls. bpf_skc_to_tcp_sock
  // (Linux 5.9) is NULL for them.
  p.push_back(MovReg(R1, R7));
  p.push_back(Call(BPF_FUNC_skc_to_tcp_sock));
  const size_t full_check = p.size();
  p.push_back(Insn(BPF_JMP | BPF_JEQ | BPF_K, R0, 0, 0, 0));  // not a full socket -> return 0 (patched)
  for (int32_t at = -rec; at < 0; at += 8) p.push_back(Insn(BPF_ST | BPF_MEM | BPF_DW, R10, 0, static_cast<int16_t>(at), 0));
  p.push_back(MovReg(R1, R7));
  p.push_back(Call(BPF_FUNC_get_socket_cookie));  // also gives the socket its cookie if it had none
  p.push_back(Store(BPF_DW, R10, R0, static_cast<int16_t>(-rec)));
  int32_t at = -rec + static_cast<int32_t>(kCookieSize);
  for (const BulkOption& opt : kOptions) {
    p.push_back(MovReg(R1, R7));
    p.push_back(MovImm(R2, opt.level));
    p.push_back(MovImm(R3, opt.name));
    p.push_back(MovReg(R4, R10));
    p.push_back(AddImm(R4, at + 4));
    p.push_back(MovImm(R5, static_cast<int32_t>(HelperLength(opt))));
    p.push_back(Call(BPF_FUNC_getsockopt));
    p.push_back(Store(BPF_W, R10, R0, static_cast<int16_t>(at)));
    at += static_cast<int32_t>(SlotSize(opt));
  }
  p.push_back(Load(BPF_DW, R1, R6, o.ctx_meta));  // r1 = ctx->meta->seq
  p.push_back(Load(BPF_DW, R1, R1, o.meta_seq));
  p.push_back(MovReg(R2, R10));  // r2 = the record
  p.push_back(AddImm(R2, -rec));
  p.push_back(MovImm(R3, rec));
  p.push_back(Call(BPF_FUNC_seq_write));
  p[null_check].off = static_cast<int16_t>(p.size() - null_check - 1);
  p[full_check].off = static_cast<int16_t>(p.size() - full_check - 1);
  p.push_back(MovImm(R0, 0));
  p.push_back(Exit());
  return p;
}

// The program loaded with offsets from `lk`: its link, checked to walk TCP
// sockets.
Result<UniqueFd> LoadWith(BtfLookups& lk) {
  CRYO_ASSIGN_OR_RETURN(const Offsets o, LookUpOffsets(lk));
  CRYO_ASSIGN_OR_RETURN(UniqueFd link, LoadIterator(Instructions(o), o.iter_func_id, "cryo_tcp_opts"));
  CRYO_ASSIGN_OR_RETURN(const std::string target, IterLinkTarget(link.get()));
  if (target != "tcp") return Status::Error("the iterator program was attached to bpf_iter_" + target + ", not bpf_iter_tcp");
  return link;
}

const LoadedIterator& TheIterator() {
  static const LoadedIterator loaded = LoadTcpOptionsIterator(DefaultBtfCachePath()).iterator;
  return loaded;
}

}  // namespace

TcpIterLoad LoadTcpOptionsIterator(const std::string& cache_path) {
  TcpIterLoad out;
  if (RecordSize() > 512) {  // the BPF stack
    out.iterator = {Status::Error("internal: the TCP option record does not fit the BPF stack"), UniqueFd()};
    return out;
  }
  const double t0 = Now();
  std::string key;
  if (!cache_path.empty()) {
    Result<std::string> k = KernelCacheKey();
    if (k.ok())
      key = *k;
    else
      LOG_DEBUG("TCP iterator: BTF cache not used: %s", k.status().ToString().c_str());
  }
  BtfLookups lk(cache_path, key);
  Result<UniqueFd> link = LoadWith(lk);
  if (!link.ok() && lk.used_cache()) {
    out.cache_refused = link.status().ToString();
    LOG_DEBUG("TCP iterator: the BTF values cached in %s were refused (%s); looking them up again",
              cache_path.c_str(), out.cache_refused.c_str());
    lk.Distrust();
    link = LoadWith(lk);
  }
  out.from_cache = lk.used_cache() && !lk.parsed();
  if (!lk.cache_miss().empty()) LOG_DEBUG("TCP iterator: BTF cache not used: %s", lk.cache_miss().c_str());
  if (link.ok())
    if (Status st = lk.Save(); !st.ok()) LOG_DEBUG("TCP iterator: cannot write the BTF cache: %s", st.ToString().c_str());
  if (link.ok())
    LOG_DEBUG("TCP iterator loaded in %.1f ms (BTF values %s)", (Now() - t0) * 1e3,
              out.from_cache ? "from the cache" : "from the kernel's BTF");
  out.iterator = AsLoaded(std::move(link));
  return out;
}

const std::vector<BulkOption>& TcpBulkOptions() { return kOptions; }

Result<std::vector<TcpOptionValues>> ParseTcpOptionRecords(std::string_view bytes) {
  const size_t size = RecordSize();
  if (bytes.size() % size != 0)
    return Status::Error("the TCP iterator wrote " + std::to_string(bytes.size()) + " bytes, not a whole number of " +
                         std::to_string(size) + "-byte records");
  std::vector<TcpOptionValues> out(bytes.size() / size);
  for (size_t i = 0; i < out.size(); ++i) {
    const char* r = bytes.data() + i * size;
    std::memcpy(&out[i].cookie, r, 8);
    out[i].values.resize(kOptions.size());
    size_t at = kCookieSize;
    for (size_t k = 0; k < kOptions.size(); ++k) {
      int32_t ret;
      std::memcpy(&ret, r + at, 4);
      if (ret == 0) out[i].values[k] = std::string(r + at + 4, kOptions[k].size);
      at += SlotSize(kOptions[k]);
    }
  }
  return out;
}

Status TcpOptionsIterAvailable() {
  if (PretendMissing(kTcpIterFeature))
    return Status::Error(std::string("taken as missing (") + kPretendMissingEnv + ")");
  return TheIterator().status;
}

Result<std::unordered_map<uint64_t, TcpOptionValues>> ReadTcpOptions(int netns) {
  CRYO_RETURN_IF_ERROR(TcpOptionsIterAvailable());
  return ReadTcpOptionsOfKernel(netns);
}

Result<std::unordered_map<uint64_t, TcpOptionValues>> ReadTcpOptionsOfKernel(int netns) {
  CRYO_RETURN_IF_ERROR(TheIterator().status);
  return ReadTcpOptionsWith(TheIterator().link.get(), netns);
}

Result<std::unordered_map<uint64_t, TcpOptionValues>> ReadTcpOptionsWith(int link, int netns) {
  CRYO_ASSIGN_OR_RETURN(UniqueFd it, CreateIterator(link, netns));
  CRYO_ASSIGN_OR_RETURN(const std::string bytes, ReadIterator(it.get(), "the TCP iterator"));
  CRYO_ASSIGN_OR_RETURN(std::vector<TcpOptionValues> records, ParseTcpOptionRecords(bytes));
  std::unordered_map<uint64_t, TcpOptionValues> out;
  out.reserve(records.size());
  for (TcpOptionValues& r : records)
    if (r.cookie) out[r.cookie] = std::move(r);
  return out;
}

}  // namespace cryo::bpf
