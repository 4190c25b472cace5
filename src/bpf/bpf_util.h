// What cryo's hand-written BPF iterators share (udp_queue_count.h,
// tcp_options.h): offsets from the running kernel's BTF, the instruction
// encoding (linux/bpf.h), loading and attaching an iterator program, and
// reading an iterator's output. No BPF compiler in the build: each program is
// a few dozen instructions written in C++, its offsets looked up at load, so
// it follows the kernel's layout or is not loaded at all.
#pragma once

#include <linux/bpf.h>

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "base/unique_fd.h"

struct btf;

namespace cryo::bpf {

// The kernel's BTF (/sys/kernel/btf/vmlinux).
struct BtfDeleter {
  void operator()(btf* b) const;
};
using KernelBtf = std::unique_ptr<btf, BtfDeleter>;
Result<KernelBtf> LoadKernelBtf();

// The offset of a member path ("inet.sk.sk_receive_queue.qlen", looking into
// anonymous members too) in struct `type`, checked to be `size` bytes wide
// and to fit an instruction's offset.
Result<int16_t> PathOffset(const btf* b, const char* type, std::initializer_list<std::string_view> path, size_t size);

// The BTF id of function `name` (an iterator's attach point,
// "bpf_iter_udp"); `missing` says what its absence means.
Result<uint32_t> FunctionId(const btf* b, const char* name, const std::string& missing);

// Instructions (linux/bpf.h encoding).
bpf_insn Insn(uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm);
bpf_insn Load(uint8_t size, uint8_t dst, uint8_t src, int16_t off);   // dst = *(size *)(src + off)
bpf_insn Store(uint8_t size, uint8_t dst, uint8_t src, int16_t off);  // *(size *)(dst + off) = src
bpf_insn MovImm(uint8_t dst, int32_t imm);                            // dst = imm
bpf_insn MovReg(uint8_t dst, uint8_t src);                            // dst = src
bpf_insn AddImm(uint8_t dst, int32_t imm);                            // dst += imm
bpf_insn Call(int32_t helper);
bpf_insn Exit();
enum : uint8_t { R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10 };

// Loads `insns` as an iterator program (BPF_PROG_TYPE_TRACING,
// BPF_TRACE_ITER) attached to the BTF function `attach_btf_id` and returns
// its link (which holds the program). Errors carry the verifier's last line.
// `name`: the program's name (at most 15 characters).
Result<UniqueFd> LoadIterator(const std::vector<bpf_insn>& insns, uint32_t attach_btf_id, const char* name);

// The target an iterator link is attached to ("tcp", "udp"; the
// bpf_iter_<target> function the program's attach_btf_id names), from the
// link's info (BPF_OBJ_GET_INFO_BY_FD, Linux 5.10).
Result<std::string> IterLinkTarget(int link);

// An iterator program loaded once for the process: its link (which holds the
// program), or why it could not be loaded.
struct LoadedIterator {
  Status status;
  UniqueFd link;
};
LoadedIterator AsLoaded(Result<UniqueFd> link);

// An iterator of `link` that walks the network namespace `netns` (an fd of
// it; bpf_iter_init_seq_net takes the creating thread's), made on a thread
// that joined it when it is not the caller's (setns(2) changes only the
// calling thread).
Result<UniqueFd> CreateIterator(int link, int netns);

// Everything iterator `it` writes (read to its end).
Result<std::string> ReadIterator(int it, const std::string& what);

}  // namespace cryo::bpf
