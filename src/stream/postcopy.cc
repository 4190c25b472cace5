#include "stream/postcopy.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "base/clock.h"
#include "base/log.h"
#include "base/unique_fd.h"
#include "mem/existing_pages.h"
#include "stream/protocol.h"

namespace cryo::stream {
namespace {

constexpr uint64_t kPage = 4096;

std::string Hex(uint64_t v) {
  char buf[24];
  snprintf(buf, sizeof(buf), "%#" PRIx64, v);
  return buf;
}

// A PAGE_REQ payload: u32 pid, u32 0, u64 vaddr, u64 length.
std::string PageReq(pid_t pid, uint64_t vaddr, uint64_t len) {
  std::string p;
  PutU32(&p, static_cast<uint32_t>(pid));
  PutU32(&p, 0);
  PutU64(&p, vaddr);
  PutU64(&p, len);
  return p;
}

uint32_t U32At(std::string_view p, size_t at) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[at + static_cast<size_t>(i)]);
  return v;
}

// Whether [vaddr, vaddr + len) lies in one remote run of `pid`: the receiver
// asks for nothing else (it is authenticated, but reads no other memory).
bool InRemoteRun(const RemoteRuns& runs, pid_t pid, uint64_t vaddr, uint64_t len) {
  auto it = runs.find(pid);
  if (it == runs.end()) return false;
  for (const auto& [start, bytes] : it->second)
    if (vaddr >= start && vaddr - start <= bytes && len <= bytes - (vaddr - start)) return true;
  return false;
}

}  // namespace

Status ServePostCopy(Connection& conn, const RemoteRuns& runs, double timeout_s, const std::function<Status()>& commit,
                     bool* committed) {
  conn.EndSenderChecks();
  // /proc/PID/mem rather than process_vm_readv(2): it reads whatever the
  // protection (FOLL_FORCE) and does not pin, so pages the tree still shares
  // copy-on-write stay shared; the tracer (cryo) may read it while the tree
  // is stopped under ptrace.
  std::map<pid_t, UniqueFd> mem;
  std::string buf(kMaxChunk, '\0');
  uint64_t served = 0, requests = 0;
  for (;;) {
    Result<Frame> f = conn.Receive(timeout_s);
    if (!f.ok()) return f.status().Prefixed(*committed ? "the target, once the tree ran there" : "the target, before "
                                                         "the tree ran there");
    switch (f->type()) {
      case FrameType::kPageReq: {
        if (f->payload.size() != 24) return Status::Error("PAGE_REQ of " + std::to_string(f->payload.size()) + " bytes");
        const pid_t pid = static_cast<pid_t>(U32At(f->payload, 0));
        const uint64_t vaddr = GetU64(std::string_view(f->payload).substr(8));
        const uint64_t len = GetU64(std::string_view(f->payload).substr(16));
        if (len == 0 || len > kMaxPageReq || vaddr % kPage || len % kPage || !InRemoteRun(runs, pid, vaddr, len)) {
          const Status s = Status::Error("PAGE_REQ for pid " + std::to_string(pid) + " at " + Hex(vaddr) + " (" +
                                         std::to_string(len) + " bytes): not pages the image left here");
          (void)conn.Send(FrameType::kAbort, 0, s.ToString());
          return s;
        }
        UniqueFd& fd = mem[pid];
        if (!fd.valid()) {
          fd.reset(::open(("/proc/" + std::to_string(pid) + "/mem").c_str(), O_RDONLY | O_CLOEXEC));
          if (!fd.valid()) return Status::FromErrno("open /proc/" + std::to_string(pid) + "/mem");
        }
        for (uint64_t done = 0; done < len;) {
          const uint64_t n = std::min<uint64_t>(len - done, kMaxChunk);
          uint64_t got = 0;
          while (got < n) {
            const ssize_t r = ::pread(fd.get(), buf.data() + got, n - got, static_cast<off_t>(vaddr + done + got));
            if (r < 0 && errno == EINTR) continue;
            if (r < 0)
              return Status::FromErrno("pid " + std::to_string(pid) + ": reading its pages at " + Hex(vaddr + done + got));
            // 0: the memory file of a process whose address space is gone
            // (it exited; a zombie's reads as empty), no errno set.
            if (r == 0)
              return Status::Error("pid " + std::to_string(pid) + ": reading its pages at " + Hex(vaddr + done + got) +
                                   ": /proc/" + std::to_string(pid) + "/mem read nothing (its address space is gone: "
                                   "did it exit?)");
            got += static_cast<uint64_t>(r);
          }
          std::string head;
          PutU64(&head, vaddr + done);
          CRYO_RETURN_IF_ERROR(conn.Send(FrameType::kPages, 0, head, std::string_view(buf.data(), n)));
          done += n;
        }
        served += len;
        ++requests;
        break;
      }
      case FrameType::kMapReq: {
        // Which pages of an unplanned VMA exist (feature "remote-vmas"):
        // looked for now, in the frozen process, rather than in the freeze.
        if (f->payload.size() != 24) return Status::Error("MAP_REQ of " + std::to_string(f->payload.size()) + " bytes");
        const pid_t pid = static_cast<pid_t>(U32At(f->payload, 0));
        const uint64_t start = GetU64(std::string_view(f->payload).substr(8));
        const uint64_t end = GetU64(std::string_view(f->payload).substr(16));
        if (end <= start || start % kPage || end % kPage || !InRemoteRun(runs, pid, start, end - start)) {
          const Status s = Status::Error("MAP_REQ for pid " + std::to_string(pid) + " at " + Hex(start) + "-" +
                                         Hex(end) + ": not a VMA the image left here");
          (void)conn.Send(FrameType::kAbort, 0, s.ToString());
          return s;
        }
        Result<std::vector<std::pair<uint64_t, uint64_t>>> found = ExistingAnonPages(pid, start, end);
        if (!found.ok()) {
          (void)conn.Send(FrameType::kAbort, 0, found.status().ToString().substr(0, 4096));
          return found.status();
        }
        size_t i = 0;
        do {
          const size_t n = std::min(found->size() - i, kMaxMapPairs);
          std::string p;
          PutU32(&p, i + n < found->size() ? 1 : 0);
          PutU32(&p, 0);
          for (size_t k = i; k < i + n; ++k) {
            PutU64(&p, (*found)[k].first);
            PutU64(&p, (*found)[k].second);
          }
          CRYO_RETURN_IF_ERROR(conn.Send(FrameType::kMap, 0, p));
          i += n;
        } while (i < found->size());
        break;
      }
      case FrameType::kReady:
        // From here on the original never resumes: the target releases its
        // tree once it reads GO (if the link dies now, both are lost).
        if (Status s = commit(); !s.ok()) {
          (void)conn.Send(FrameType::kAbort, 0, s.ToString().substr(0, 4096));
          return s;
        }
        *committed = true;
        CRYO_RETURN_IF_ERROR(conn.Send(FrameType::kGo, 0, {}));
        break;
      case FrameType::kAllIn:
        LOG_INFO("post-copy: %" PRIu64 " bytes served in %" PRIu64 " requests", served, requests);
        return Status::Ok();
      case FrameType::kError:
        return Status::Error("the target " + conn.peer() + ": " + f->payload);
      default:
        return Status::Error(std::string("unexpected ") + FrameTypeName(f->header.type) + " from the target");
    }
  }
}

uint64_t StreamPages::Outstanding() const {
  std::lock_guard<std::mutex> lock(mu_);
  return outstanding_;
}

std::string StreamPages::WhereLocked() const {
  const std::string src = "the migration source " + conn_->peer();
  if (asked_.empty()) return src;
  const Asked& a = asked_.front();
  return "pid " + std::to_string(a.pid) + ": the pages at " + Hex(a.vaddr + a.got) + " (" +
         std::to_string(a.len - a.got) + " bytes, post-copy): " + src;
}

Status StreamPages::FailLocked(const Status& s) {
  if (failed_.ok()) failed_ = s;
  return failed_;
}

Status StreamPages::RequestLocked(pid_t pid, uint64_t vaddr, uint64_t len, uint64_t tag) {
  if (!failed_.ok()) return failed_;
  if (asked_.empty()) last_progress_ = Now();
  asked_.push_back({tag, pid, vaddr, len, 0});
  outstanding_ += len;
  if (Status s = conn_->Send(FrameType::kPageReq, 0, PageReq(pid, vaddr, len)); !s.ok())
    return FailLocked(s.Prefixed(WhereLocked()));
  return Status::Ok();
}

Status StreamPages::ReadOneLocked(Frame* other, bool* got_other) {
  *got_other = false;
  Result<Frame> f = conn_->Receive(timeout_s_);
  if (!f.ok()) return FailLocked(f.status().Prefixed(WhereLocked()));
  if (f->type() == FrameType::kAbort || f->type() == FrameType::kError)
    return FailLocked(Status::Error(WhereLocked() + ": " + f->payload));
  if (f->type() != FrameType::kPages) {
    *other = std::move(*f);
    *got_other = true;
    return Status::Ok();
  }
  if (asked_.empty()) return FailLocked(Status::Error(WhereLocked() + ": PAGES nobody asked for"));
  Asked& a = asked_.front();
  if (f->payload.size() <= 8) return FailLocked(Status::Error(WhereLocked() + ": an empty PAGES"));
  const uint64_t at = GetU64(f->payload);
  const uint64_t n = f->payload.size() - 8;
  if (at != a.vaddr + a.got || n > a.len - a.got)
    return FailLocked(Status::Error(WhereLocked() + ": PAGES for other pages than asked"));
  arrived_.push_back({a.tag, a.pid, at, std::move(f->payload), 8});
  a.got += n;
  outstanding_ -= n;
  last_progress_ = Now();
  if (a.got == a.len) asked_.pop_front();
  return Status::Ok();
}

Status StreamPages::Request(pid_t pid, uint64_t vaddr, uint64_t len, uint64_t tag) {
  std::lock_guard<std::mutex> lock(mu_);
  return RequestLocked(pid, vaddr, len, tag);
}

Status StreamPages::Collect(std::vector<Arrival>* out) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!failed_.ok()) return failed_;
  // Nothing asked, nothing read: a source gone meanwhile is found by the
  // next request, which names the pages that cannot come.
  while (!asked_.empty()) {
    Result<bool> readable = conn_->Readable();
    if (!readable.ok()) return FailLocked(readable.status().Prefixed(WhereLocked()));
    if (!*readable) break;
    Frame other;
    bool got_other = false;
    CRYO_RETURN_IF_ERROR(ReadOneLocked(&other, &got_other));
    if (got_other)
      return FailLocked(Status::Error(WhereLocked() + ": " + FrameTypeName(other.header.type) + " where PAGES was due"));
  }
  for (Arrival& a : arrived_) out->push_back(std::move(a));
  arrived_.clear();
  if (!asked_.empty() && Now() - last_progress_ > timeout_s_)
    return FailLocked(Status::Errno(ETIMEDOUT, WhereLocked() + ": no answer for " +
                                                   std::to_string(static_cast<int>(timeout_s_)) + " s"));
  return Status::Ok();
}

Status StreamPages::Fetch(pid_t pid, uint64_t vaddr, uint64_t len, void* out) {
  // A tag of its own: what arrives for earlier requests stays for Collect.
  constexpr uint64_t kFetchTag = ~uint64_t{0};
  std::lock_guard<std::mutex> lock(mu_);
  CRYO_RETURN_IF_ERROR(RequestLocked(pid, vaddr, len, kFetchTag));
  char* dst = static_cast<char*>(out);
  uint64_t done = 0;
  while (done < len) {
    Frame other;
    bool got_other = false;
    CRYO_RETURN_IF_ERROR(ReadOneLocked(&other, &got_other));
    if (got_other)
      return FailLocked(Status::Error(WhereLocked() + ": " + FrameTypeName(other.header.type) + " where PAGES was due"));
    for (auto it = arrived_.begin(); it != arrived_.end();) {
      if (it->tag != kFetchTag) {
        ++it;
        continue;
      }
      std::memcpy(dst + (it->vaddr - vaddr), it->bytes(), it->len());
      done += it->len();
      it = arrived_.erase(it);
    }
  }
  return Status::Ok();
}

Status StreamPages::Commit() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!failed_.ok()) return failed_;
  const std::string src = "the migration source " + conn_->peer();
  if (Status s = conn_->Send(FrameType::kReady, 0, {}); !s.ok()) return FailLocked(s.Prefixed(src));
  // The answers to requests sent before READY come first (the source
  // serves in order): kept for Collect.
  for (;;) {
    Frame other;
    bool got_other = false;
    if (Status s = ReadOneLocked(&other, &got_other); !s.ok()) return s.Prefixed("waiting for GO (the commit)");
    if (!got_other) continue;
    if (other.type() != FrameType::kGo)
      return FailLocked(Status::Error(src + ": " + FrameTypeName(other.header.type) + " where GO was due"));
    return Status::Ok();
  }
}

Status StreamPages::Map(pid_t pid, const std::vector<std::pair<uint64_t, uint64_t>>& vmas,
                        std::vector<std::pair<uint64_t, uint64_t>>* present) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!failed_.ok()) return failed_;
  const std::string src = "the migration source " + conn_->peer();
  if (!asked_.empty()) return Status::Error("internal: MAP_REQ with pages outstanding");
  // All asked at once, answered in order.
  for (const auto& [start, end] : vmas) {
    std::string p;
    PutU32(&p, static_cast<uint32_t>(pid));
    PutU32(&p, 0);
    PutU64(&p, start);
    PutU64(&p, end);
    if (Status s = conn_->Send(FrameType::kMapReq, 0, p); !s.ok()) return FailLocked(s.Prefixed(src));
  }
  for (const auto& [start, end] : vmas) {
    const std::string what = src + ": the pages of the VMA at " + Hex(start) + "-" + Hex(end);
    for (bool more = true; more;) {
      Result<Frame> f = conn_->Receive(timeout_s_);
      if (!f.ok()) return FailLocked(f.status().Prefixed(what));
      if (f->type() == FrameType::kAbort || f->type() == FrameType::kError)
        return FailLocked(Status::Error(what + ": " + f->payload));
      if (f->type() != FrameType::kMap)
        return FailLocked(Status::Error(what + ": " + FrameTypeName(f->header.type) + " where MAP was due"));
      const std::string_view p = f->payload;
      if (p.size() < 8 || (p.size() - 8) % 16) return FailLocked(Status::Error(what + ": a MAP of " + std::to_string(p.size()) + " bytes"));
      more = U32At(p, 0) != 0;
      for (size_t at = 8; at < p.size(); at += 16) {
        const uint64_t v = GetU64(p.substr(at)), n = GetU64(p.substr(at + 8));
        if (v < start || v >= end || n == 0 || n > end - v || v % kPage || n % kPage ||
            (!present->empty() && present->back().first + present->back().second > v))
          return FailLocked(Status::Error(what + ": MAP names pages at " + Hex(v) + " (" + std::to_string(n) +
                                          " bytes), not in order inside it"));
        present->emplace_back(v, n);
      }
    }
  }
  return Status::Ok();
}

Status StreamPages::AllIn() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!failed_.ok()) return failed_;
  return conn_->Send(FrameType::kAllIn, 0, {});
}

}  // namespace cryo::stream
