#include "tree/seccomp_bpf.h"

#include <linux/filter.h>
#include <linux/seccomp.h>

#include <cstring>

namespace cryo {

namespace {

constexpr uint32_t kDataSize = 64;  // sizeof(struct seccomp_data)

uint32_t DataWord(const SeccompCall& c, uint32_t off) {
  uint8_t data[kDataSize];
  std::memcpy(data, &c.nr, 4);
  std::memcpy(data + 4, &c.arch, 4);
  std::memcpy(data + 8, &c.ip, 8);
  std::memcpy(data + 16, c.args, 48);
  uint32_t w;
  std::memcpy(&w, data + off, 4);
  return w;
}

int32_t Precedence(uint32_t action) { return static_cast<int32_t>(action & SECCOMP_RET_ACTION_FULL); }

}  // namespace

Result<uint32_t> RunSeccompProgram(const std::string& program, const SeccompCall& call) {
  const size_t n = program.size() / sizeof(sock_filter);
  if (n == 0 || program.size() % sizeof(sock_filter) != 0 || n > BPF_MAXINSNS)
    return Status::Error("not a classic BPF program");
  uint32_t a = 0, x = 0, mem[BPF_MEMWORDS] = {};
  for (size_t pc = 0; pc < n; ++pc) {
    sock_filter f;
    std::memcpy(&f, program.data() + pc * sizeof(f), sizeof(f));
    const std::string at = " at instruction " + std::to_string(pc);
    auto jump = [&](bool taken) -> Status {
      const size_t to = pc + (taken ? f.jt : f.jf);
      if (to + 1 >= n) return Status::Error("a jump out of the program" + at);
      pc = to;
      return Status::Ok();
    };
    const uint32_t src = BPF_SRC(f.code) == BPF_X ? x : f.k;
    switch (f.code) {
      case BPF_LD | BPF_W | BPF_ABS:
        if (f.k >= kDataSize || f.k % 4) return Status::Error("a load out of seccomp_data" + at);
        a = DataWord(call, f.k);
        break;
      case BPF_LD | BPF_W | BPF_LEN: a = kDataSize; break;
      case BPF_LDX | BPF_W | BPF_LEN: x = kDataSize; break;
      case BPF_LD | BPF_IMM: a = f.k; break;
      case BPF_LDX | BPF_IMM: x = f.k; break;
      case BPF_LD | BPF_MEM:
      case BPF_LDX | BPF_MEM:
      case BPF_ST:
      case BPF_STX:
        if (f.k >= BPF_MEMWORDS) return Status::Error("scratch memory out of bounds" + at);
        if (f.code == (BPF_LD | BPF_MEM)) a = mem[f.k];
        if (f.code == (BPF_LDX | BPF_MEM)) x = mem[f.k];
        if (f.code == BPF_ST) mem[f.k] = a;
        if (f.code == BPF_STX) mem[f.k] = x;
        break;
      case BPF_MISC | BPF_TAX: x = a; break;
      case BPF_MISC | BPF_TXA: a = x; break;
      case BPF_RET | BPF_K: return f.k;
      case BPF_RET | BPF_A: return a;
      case BPF_JMP | BPF_JA:
        if (pc + 1 + f.k >= n) return Status::Error("a jump out of the program" + at);
        pc += f.k;
        break;
      case BPF_JMP | BPF_JEQ | BPF_K:
      case BPF_JMP | BPF_JEQ | BPF_X: CRYO_RETURN_IF_ERROR(jump(a == src)); break;
      case BPF_JMP | BPF_JGT | BPF_K:
      case BPF_JMP | BPF_JGT | BPF_X: CRYO_RETURN_IF_ERROR(jump(a > src)); break;
      case BPF_JMP | BPF_JGE | BPF_K:
      case BPF_JMP | BPF_JGE | BPF_X: CRYO_RETURN_IF_ERROR(jump(a >= src)); break;
      case BPF_JMP | BPF_JSET | BPF_K:
      case BPF_JMP | BPF_JSET | BPF_X: CRYO_RETURN_IF_ERROR(jump((a & src) != 0)); break;
      default:
        if (BPF_CLASS(f.code) != BPF_ALU) return Status::Error("an instruction seccomp does not allow" + at);
        switch (BPF_OP(f.code)) {
          case BPF_ADD: a += src; break;
          case BPF_SUB: a -= src; break;
          case BPF_MUL: a *= src; break;
          case BPF_DIV:
            if (src == 0) return 0;  // the kernel's BPF returns 0 (SECCOMP_RET_KILL_THREAD) on a division by zero
            a /= src;
            break;
          case BPF_MOD:
            if (src == 0) return 0;
            a %= src;
            break;
          case BPF_AND: a &= src; break;
          case BPF_OR: a |= src; break;
          case BPF_XOR: a ^= src; break;
          case BPF_LSH: a = src >= 32 ? 0 : a << src; break;
          case BPF_RSH: a = src >= 32 ? 0 : a >> src; break;
          case BPF_NEG: a = 0u - a; break;
          default: return Status::Error("an ALU operation seccomp does not allow" + at);
        }
    }
  }
  return Status::Error("the program runs off its end");
}

Result<uint32_t> RunSeccompChain(const std::vector<const std::string*>& chain, const SeccompCall& call) {
  uint32_t ret = SECCOMP_RET_ALLOW;
  // Newest first, as the kernel walks them; a later one wins only with a
  // strictly higher precedence.
  for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
    CRYO_ASSIGN_OR_RETURN(const uint32_t r, RunSeccompProgram(**it, call));
    if (Precedence(r) < Precedence(ret)) ret = r;
  }
  return ret;
}

std::string SeccompVerdict(uint32_t action, const std::string& call) {
  switch (action & SECCOMP_RET_ACTION_FULL) {
    case SECCOMP_RET_KILL_PROCESS: return "kill " + call + " (the process)";
    case SECCOMP_RET_KILL_THREAD: return "kill " + call + " (the thread)";
    case SECCOMP_RET_TRAP: return "trap " + call + " (SIGSYS)";
    case SECCOMP_RET_ERRNO: return "fail " + call + " with errno " + std::to_string(action & SECCOMP_RET_DATA);
    case SECCOMP_RET_USER_NOTIF: return "hand " + call + " to a supervisor";
    case SECCOMP_RET_TRACE: return "skip " + call + " (SECCOMP_RET_TRACE with no tracer: ENOSYS)";
    case SECCOMP_RET_LOG: return "log " + call;
    case SECCOMP_RET_ALLOW: return "allow " + call;
  }
  return "return an unknown action for " + call;
}

}  // namespace cryo
