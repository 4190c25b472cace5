#include "image/test_image.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace cryo::image::testing {

namespace {

constexpr uint32_t kXsaveSize = 576;
constexpr uint64_t kXcr0 = 3;  // x87 | SSE

bool Lists(const Inventory& inv, const char* f) {
  return std::find(inv.features().begin(), inv.features().end(), f) != inv.features().end();
}

}  // namespace

TestImage MakeTestImage() {
  TestImage t;
  Inventory& inv = t.inv;
  inv.set_format_version(kFormatVersion);
  inv.set_cryo_version("test");
  inv.add_features("x86_64");
  inv.add_features("xsave");
  inv.set_xsave_size(kXsaveSize);
  inv.set_xsave_features(kXcr0);
  inv.set_root_pid(42);
  inv.add_pids(42);
  inv.set_dump_mode("kill");

  ProcessImage& p = t.procs[42];
  ProcessCore& core = p.core;
  core.set_pid(42);
  core.set_ppid(1);
  core.set_pgid(42);
  core.set_sid(42);
  core.set_cwd("/");
  core.set_root("/");
  for (uint32_t r = 0; r < 16; ++r) {
    Rlimit* l = core.add_rlimits();
    l->set_resource(r);
    l->set_soft(UINT64_MAX);
    l->set_hard(UINT64_MAX);
  }
  core.mutable_mm()->set_exe_path("/bin/true");
  for (int i = 0; i < 4; ++i) {
    core.mutable_creds()->add_uid(0);
    core.mutable_creds()->add_gid(0);
  }
  TaskCore* th = core.add_threads();
  th->set_tid(42);
  th->set_comm("test");
  th->set_altstack_flags(2);  // SS_DISABLE
  th->set_robust_list_len(24);
  th->set_timer_slack_ns(50000);
  for (int i = 0; i < 27; ++i) th->mutable_regs()->add_gpr(0);
  th->mutable_regs()->set_gpr(17, 0x33);   // cs
  th->mutable_regs()->set_gpr(18, 0x246);  // eflags
  th->mutable_regs()->set_gpr(20, 0x2b);   // ss
  std::string xsave(kXsaveSize, '\0');
  std::memcpy(&xsave[464], &kXcr0, 8);
  th->mutable_regs()->set_xsave(xsave);

  Vma* v = p.mm.add_vmas();
  v->set_start(0x10000);
  v->set_end(0x14000);
  v->set_prot(PROT_READ | PROT_WRITE);
  v->set_flags(MAP_PRIVATE | MAP_ANONYMOUS);
  v->set_kind(VMA_ANON_PRIVATE);
  for (const char* f : {"rd", "wr", "mr", "mw", "me", "ac"}) v->add_vm_flags(f);
  v->set_file_writable(true);
  v->set_stored_pages(2);
  PageRun* r = p.mm.add_runs();
  r->set_vaddr(0x11000);
  r->set_npages(2);
  r->set_offset(kPageDataOffset);
  std::string pages(2 * kPageSize, 'p');
  r->set_checksum(HashBytes(pages.data(), pages.size()));
  p.mm.set_total_pages(2);
  t.pages[42] = pages;
  return t;
}

void AddChild(TestImage* t, int pid, int ppid) {
  ProcessImage p = t->procs.at(42);
  p.core.set_pid(pid);
  p.core.set_ppid(ppid);
  p.core.set_pgid(t->procs.at(ppid).core.pgid());
  p.core.set_sid(t->procs.at(ppid).core.sid());
  p.core.mutable_threads(0)->set_tid(pid);
  t->procs[pid] = p;
  t->pages[pid] = t->pages.at(42);
  t->inv.add_pids(pid);
  if (!Lists(t->inv, "tree")) t->inv.add_features("tree");
}

Status WriteTestImage(const std::string& dir, const TestImage& t) {
  CRYO_ASSIGN_OR_RETURN(auto w, ImageWriter::Create(Env::Default(), dir));
  for (const auto& [pid, p] : t.procs) {
    CRYO_RETURN_IF_ERROR(w->WriteRecord(CoreName(pid), FileKind::kProcessCore, p.core));
    if (p.core.zombie()) continue;
    CRYO_RETURN_IF_ERROR(w->WriteRecord(MmName(pid), FileKind::kMm, p.mm));
    CRYO_RETURN_IF_ERROR(w->WriteRecord(FdsName(pid), FileKind::kFdTable, p.fds));
    CRYO_ASSIGN_OR_RETURN(auto pf, w->CreatePageFile(PagesName(pid)));
    const std::string& data = t.pages.count(pid) ? t.pages.at(pid) : std::string();
    if (!data.empty()) CRYO_RETURN_IF_ERROR(pf->WriteAt(data.data(), data.size(), kPageDataOffset));
    CRYO_RETURN_IF_ERROR(w->FinishPageFile(std::move(pf), data.size()));
  }
  if (Lists(t.inv, "pipes") || Lists(t.inv, "fifos"))
    CRYO_RETURN_IF_ERROR(w->WriteRecord(PipesName(), FileKind::kPipes, t.pipes));
  if (Lists(t.inv, "memfd") || Lists(t.inv, "posix-shm") || Lists(t.inv, "sysv-shm") || Lists(t.inv, "anon-shmem")) {
    CRYO_RETURN_IF_ERROR(w->WriteRecord(ShmName(), FileKind::kShm, t.shm));
    CRYO_ASSIGN_OR_RETURN(auto pf, w->CreatePageFile(ShmPagesName()));
    if (!t.shm_pages.empty()) CRYO_RETURN_IF_ERROR(pf->WriteAt(t.shm_pages.data(), t.shm_pages.size(), kPageDataOffset));
    CRYO_RETURN_IF_ERROR(w->FinishPageFile(std::move(pf), t.shm_pages.size()));
  }
  if (Lists(t.inv, "tty")) CRYO_RETURN_IF_ERROR(w->WriteRecord(TtysName(), FileKind::kTtys, t.ttys));
  if (Lists(t.inv, "time-ns") || Lists(t.inv, "user-ns") || Lists(t.inv, "cgroup-ns") ||
      Lists(t.inv, "cgroup-settings"))
    CRYO_RETURN_IF_ERROR(w->WriteRecord(NamespacesName(), FileKind::kNamespaces, t.ns));
  CRYO_RETURN_IF_ERROR(w->SyncFiles());
  CRYO_RETURN_IF_ERROR(w->WriteInventory(t.inv));
  CRYO_RETURN_IF_ERROR(w->SyncFiles());
  return w->SyncDir();
}

TempDir::TempDir() {
  char tmpl[] = "/tmp/cryo-image-test-XXXXXX";
  path_ = ::mkdtemp(tmpl);
}

TempDir::~TempDir() { (void)!std::system(("rm -rf " + path_).c_str()); }

}  // namespace cryo::image::testing
