#include "mem/incremental.h"

#include <algorithm>
#include <cinttypes>
#include <filesystem>

#include "base/log.h"
#include "image/format.h"
#include "image/image_dir.h"
#include "image/parent_chain.h"
#include "mem/dirty_tracker.h"

namespace cryo {

namespace {

constexpr uint64_t kPage = image::kPageSize;

// The run [start, end) lies in VMA `a` here and in `b` in the parent, of the
// same kind, protection, flags and file at the same file offset: the same
// memory, whatever else of the VMA changed (the kernel merges and splits
// VMAs as neighbours come and go, which changes no page).
bool SameMemory(const image::Vma& a, const image::Vma& b, uint64_t start, uint64_t end) {
  const bool file = a.kind() == image::VMA_FILE_PRIVATE || a.kind() == image::VMA_FILE_SHARED;
  return b.start() <= start && end <= b.end() && a.kind() == b.kind() && a.prot() == b.prot() &&
         a.flags() == b.flags() && (!file || a.pgoff() - a.start() == b.pgoff() - b.start()) &&
         a.file().dev() == b.file().dev() && a.file().ino() == b.file().ino() && a.shm_object() == b.shm_object() &&
         a.shmem_id() == b.shmem_id();
}

}  // namespace

Result<ParentForDump> LoadParentForDump(const std::string& parent_dir, const std::string& images_dir, pid_t root,
                                        const std::string& boot_id) {
  auto loaded = image::LoadImage(parent_dir);
  if (!loaded.ok()) return loaded.status().Prefixed("the parent image " + parent_dir);
  const image::LoadedImage& img = *loaded;
  if (img.inventory.dump_mode() != "leave-running")
    return Status::Error("the parent image " + parent_dir + " was dumped in " + img.inventory.dump_mode() +
                         " mode: a parent must be a --leave-running dump of the same tree (its pages are then "
                         "still the tree's)");
  if (img.inventory.root_pid() != root)
    return Status::Error("the parent image " + parent_dir + " is of the tree of pid " +
                         std::to_string(img.inventory.root_pid()) + ", not of pid " + std::to_string(root));
  if (img.ancestors.size() >= image::kMaxParentDepth)
    return Status::Error("the parent image " + parent_dir + " ends a chain of " +
                         std::to_string(img.ancestors.size() + 1) + " images, the most a chain may have; dump in full");
  // The new image must not be written over one it reads from.
  std::error_code ec;
  for (size_t i = 0; i <= img.ancestors.size(); ++i) {
    const std::string& dir = i == 0 ? parent_dir : img.ancestors[i - 1].dir;
    if (std::filesystem::equivalent(dir, images_dir, ec))
      return Status::Error("the images directory " + images_dir + " is the parent image " + dir +
                           " (or one of its parents): dump into another directory");
  }
  ParentForDump out;
  // The child names its parent relative to itself when it was given so.
  std::filesystem::path p(parent_dir);
  std::string recorded = parent_dir;
  if (p.is_relative()) {
    const auto abs_parent = std::filesystem::weakly_canonical(p, ec);
    const auto abs_child = ec ? std::filesystem::path() : std::filesystem::weakly_canonical(images_dir, ec);
    if (ec) return Status::Errno(ec.value(), "resolving the parent image " + parent_dir);
    recorded = abs_parent.lexically_normal().lexically_relative(abs_child.lexically_normal()).string();
    if (recorded.empty()) return Status::Error("the parent image " + parent_dir + " cannot be the image directory itself");
  }
  out.link.set_dir(recorded);
  out.link.set_image_id(img.identity.image_id);
  out.same_boot = !boot_id.empty() && img.inventory.boot_id() == boot_id;
  out.snapshot = img.snapshot;  // files compare by content hash, whatever the boot
  if (!out.same_boot)
    LOG_WARN("the parent image %s is from another boot (or an older cryo): every page is stored again", parent_dir.c_str());
  for (const auto& [pid, proc] : img.processes)
    if (out.same_boot) AddParentProcess(proc.core, proc.mm, &out);
  return out;
}

void AddParentProcess(const image::ProcessCore& core, const image::Mm& mm, ParentForDump* parent) {
  if (core.zombie()) return;
  ParentProcessPages& pp = parent->processes[core.pid()];
  pp.start_ticks = core.start_ticks();
  pp.vmas.assign(mm.vmas().begin(), mm.vmas().end());
  for (image::PageRun r : mm.runs()) {
    r.set_depth(1);
    pp.runs[r.vaddr()] = r;
  }
  for (image::PageRun r : mm.parent_runs()) {
    r.set_depth(r.depth() + 1);
    pp.runs[r.vaddr()] = r;
  }
}

std::vector<PagePiece> Relayout(const std::vector<PagePiece>& pieces, const std::vector<const image::PageRun*>& keep,
                                std::vector<image::PageRun>* kept) {
  std::vector<PagePiece> out;
  size_t k = 0;
  uint64_t off = image::kPageDataOffset;
  for (const image::PageRun* r : keep) {
    const uint64_t s = r->offset(), e = s + r->npages() * kPage;
    while (k < pieces.size() && pieces[k].file_off + pieces[k].len <= s) ++k;
    for (size_t j = k; j < pieces.size() && pieces[j].file_off < e; ++j) {
      const PagePiece& p = pieces[j];
      const uint64_t a = std::max(s, p.file_off), b = std::min(e, p.file_off + p.len);
      const PagePiece q{p.vaddr + (a - p.file_off), b - a, off + (a - s), p.readable};
      PagePiece* last = out.empty() ? nullptr : &out.back();
      if (last && last->vaddr + last->len == q.vaddr && last->file_off + last->len == q.file_off &&
          last->readable == q.readable)
        last->len += q.len;
      else
        out.push_back(q);
    }
    image::PageRun n = *r;
    n.set_offset(off);
    kept->push_back(std::move(n));
    off += r->npages() * kPage;
  }
  return out;
}

Status TakeUnchangedFromParent(pid_t pid, const ParentProcessPages& parent, image::Mm* mm,
                               std::vector<PagePiece>* pieces, IncrementalCounts* counts, const DirtyPages* dirty,
                               bool compare) {
  // The parent's bytes there are zeros it could not read, not the pages'.
  auto unread = [&parent](uint64_t start, uint64_t end) {
    auto it = std::lower_bound(parent.unread.begin(), parent.unread.end(), start,
                               [](const std::pair<uint64_t, uint64_t>& r, uint64_t a) { return r.second <= a; });
    return it != parent.unread.end() && it->first < end;
  };
  // Candidates: runs the parent has at the same address and size, in the same VMA.
  std::vector<const image::PageRun*> candidates;
  std::vector<const image::PageRun*> parent_of;
  std::vector<bool> tracked;  // known unchanged by the dirty tracking: not read
  int vi = 0;
  for (const image::PageRun& r : mm->runs()) {
    while (vi < mm->vmas_size() && mm->vmas(vi).end() <= r.vaddr()) ++vi;
    if (vi == mm->vmas_size()) break;
    auto it = parent.runs.find(r.vaddr());
    if (it == parent.runs.end() || it->second.npages() != r.npages()) continue;
    const image::Vma& v = mm->vmas(vi);
    const uint64_t end = r.vaddr() + r.npages() * kPage;
    if (std::none_of(parent.vmas.begin(), parent.vmas.end(),
                     [&](const image::Vma& pv) { return SameMemory(v, pv, r.vaddr(), end); }))
      continue;
    const bool vouched = dirty && dirty->Unchanged(r.vaddr(), end) && !unread(r.vaddr(), end);
    if (!vouched && !compare) continue;  // stored
    candidates.push_back(&r);
    parent_of.push_back(&it->second);
    tracked.push_back(vouched);
  }
  if (candidates.empty()) return Status::Ok();
  // The bytes of the others now, hashed (read, not written).
  std::vector<const image::PageRun*> to_compare;
  for (size_t i = 0; i < candidates.size(); ++i)
    if (!tracked[i]) to_compare.push_back(candidates[i]);
  image::Mm compared;
  if (!to_compare.empty()) {
    std::vector<image::PageRun> laid;
    std::vector<PagePiece> compare_pieces = Relayout(*pieces, to_compare, &laid);
    for (image::PageRun& r : laid) *compared.add_runs() = std::move(r);
    CRYO_ASSIGN_OR_RETURN(auto source, ProcessPageSource::Open(pid));
    NullWritableFile discard("(compared, not written)");
    CRYO_RETURN_IF_ERROR(CopyPages(*source, compare_pieces, &compared, &discard, nullptr));
  }
  // The runs whose bytes are the parent's go to parent_runs; the rest stay.
  std::vector<const image::PageRun*> keep;
  std::vector<image::PageRun> from_parent;
  size_t c = 0, k = 0;
  for (const image::PageRun& r : mm->runs()) {
    if (c < candidates.size() && candidates[c] == &r) {
      bool same = tracked[c];
      if (same)
        counts->tracked_pages += r.npages();
      else
        same = compared.runs(static_cast<int>(k++)).checksum() == parent_of[c]->checksum();
      counts->compared_pages += tracked[c] ? 0 : r.npages();
      if (same) {
        from_parent.push_back(*parent_of[c]);
        counts->parent_pages += r.npages();
      }
      ++c;
      if (same) continue;
    }
    keep.push_back(&r);
  }
  std::vector<image::PageRun> kept;
  std::vector<PagePiece> new_pieces = Relayout(*pieces, keep, &kept);
  *pieces = std::move(new_pieces);
  mm->clear_runs();
  uint64_t total = 0;
  for (image::PageRun& r : kept) {
    total += r.npages();
    *mm->add_runs() = std::move(r);
  }
  for (image::PageRun& r : from_parent) *mm->add_parent_runs() = std::move(r);
  mm->set_total_pages(total);
  // Stored pages per VMA: this image's runs only.
  int ri = 0;
  for (image::Vma& v : *mm->mutable_vmas()) {
    uint64_t stored = 0;
    while (ri < mm->runs_size() && mm->runs(ri).vaddr() < v.end()) stored += mm->runs(ri++).npages();
    v.set_stored_pages(stored);
  }
  LOG_INFO("pid %d: %" PRIu64 " pages unchanged since the parent image (%" PRIu64 " known by dirty tracking, %" PRIu64
           " compared); storing %" PRIu64,
           pid, counts->parent_pages, counts->tracked_pages, counts->compared_pages, total);
  return Status::Ok();
}

}  // namespace cryo
