#include "image/image_dir.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <vector>

#include "base/file_util.h"

namespace cryo::image {
namespace {

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/cryo-image-test-XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() { (void)!std::system(("rm -rf " + path_).c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Writes a minimal valid one-process image into dir.
void WriteImage(const std::string& dir, uint32_t version = kFormatVersion, const std::string& extra_feature = "") {
  auto w = ImageWriter::Create(Env::Default(), dir);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  Inventory inv;
  inv.set_format_version(version);
  inv.add_features("x86_64");
  if (!extra_feature.empty()) inv.add_features(extra_feature);
  inv.set_xsave_size(16);
  inv.set_root_pid(42);
  inv.add_pids(42);
  ASSERT_TRUE((*w)->WriteRecord(InventoryName(), FileKind::kInventory, inv).ok());
  ProcessCore core;
  core.set_pid(42);
  TaskCore* t = core.add_threads();
  t->set_tid(42);
  for (int i = 0; i < 27; ++i) t->mutable_regs()->add_gpr(i);
  t->mutable_regs()->set_xsave(std::string(16, 'x'));
  ASSERT_TRUE((*w)->WriteRecord(CoreName(42), FileKind::kProcessCore, core).ok());
  Mm mm;
  Vma* v = mm.add_vmas();
  v->set_start(0x10000);
  v->set_end(0x14000);
  PageRun* r = mm.add_runs();
  r->set_vaddr(0x11000);
  r->set_npages(2);
  r->set_offset(kPageDataOffset);
  mm.set_total_pages(2);
  ASSERT_TRUE((*w)->WriteRecord(MmName(42), FileKind::kMm, mm).ok());
  ASSERT_TRUE((*w)->WriteRecord(FdsName(42), FileKind::kFdTable, FdTable()).ok());
  auto pf = (*w)->CreatePageFile(PagesName(42));
  ASSERT_TRUE(pf.ok());
  std::string pages(2 * kPageSize, 'p');
  ASSERT_TRUE((*pf)->WriteAt(pages.data(), pages.size(), kPageDataOffset).ok());
  ASSERT_TRUE((*w)->FinishPageFile(std::move(*pf), pages.size()).ok());
  ASSERT_TRUE((*w)->SyncFiles().ok());
  ASSERT_TRUE((*w)->SyncDir().ok());
}

void FlipByte(const std::string& path, off_t off) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(off);
  char c;
  f.get(c);
  f.seekp(off);
  f.put(static_cast<char>(c ^ 0x40));
}

TEST(ImageDirTest, RoundTrip) {
  TempDir d;
  WriteImage(d.path());
  auto img = LoadImage(d.path());
  ASSERT_TRUE(img.ok()) << img.status().ToString();
  EXPECT_EQ(img->inventory.root_pid(), 42);
  ASSERT_EQ(img->processes.count(42), 1u);
  EXPECT_EQ(img->processes[42].mm.runs(0).npages(), 2u);
}

TEST(ImageDirTest, TerminalsRoundTrip) {
  TempDir d;
  WriteImage(d.path(), kFormatVersion, "tty");
  TtyTable ttys;
  Tty* t = ttys.add_ttys();
  t->set_id(1);
  t->set_kind(TTY_PTY);
  t->set_index(7);
  t->mutable_winsize()->set_rows(37);
  t->set_master_unread("out\r\n");
  TtyInput* in = t->add_slave_unread();
  in->set_data("partial");
  in->set_partial(true);
  auto w = ImageWriter::Create(Env::Default(), d.path());
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->WriteRecord(TtysName(), FileKind::kTtys, ttys).ok());
  auto img = LoadImage(d.path());
  ASSERT_TRUE(img.ok()) << img.status().ToString();
  ASSERT_EQ(img->ttys.ttys_size(), 1);
  EXPECT_EQ(img->ttys.ttys(0).SerializeAsString(), t->SerializeAsString());
}

TEST(ImageDirTest, MissingTerminalTableNamesIt) {
  TempDir d;
  WriteImage(d.path(), kFormatVersion, "tty");
  auto img = LoadImage(d.path());
  ASSERT_FALSE(img.ok());
  EXPECT_NE(img.status().ToString().find("ttys.img"), std::string::npos) << img.status().ToString();
}

TEST(ImageDirTest, FilesArePrivate) {
  TempDir d;
  WriteImage(d.path());
  struct stat st;
  ASSERT_EQ(::stat(d.path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ASSERT_EQ(::stat((d.path() + "/" + CoreName(42)).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST(ImageDirTest, CorruptedPayloadIsRefused) {
  TempDir d;
  WriteImage(d.path());
  FlipByte(d.path() + "/" + CoreName(42), kHeaderSize + 3);
  auto img = LoadImage(d.path());
  ASSERT_FALSE(img.ok());
  EXPECT_NE(img.status().ToString().find("checksum mismatch"), std::string::npos) << img.status().ToString();
}

TEST(ImageDirTest, CorruptedMagicIsRefused) {
  TempDir d;
  WriteImage(d.path());
  FlipByte(d.path() + "/" + MmName(42), 1);
  auto img = LoadImage(d.path());
  ASSERT_FALSE(img.ok());
  EXPECT_NE(img.status().ToString().find("bad magic"), std::string::npos);
}

TEST(ImageDirTest, TruncatedRecordIsRefused) {
  TempDir d;
  WriteImage(d.path());
  const std::string p = d.path() + "/" + InventoryName();
  struct stat st;
  ASSERT_EQ(::stat(p.c_str(), &st), 0);
  ASSERT_EQ(::truncate(p.c_str(), st.st_size - 1), 0);
  auto img = LoadImage(d.path());
  ASSERT_FALSE(img.ok());
  EXPECT_NE(img.status().ToString().find("truncated"), std::string::npos);
}

TEST(ImageDirTest, TruncatedPageFileIsRefused) {
  TempDir d;
  WriteImage(d.path());
  ASSERT_EQ(::truncate((d.path() + "/" + PagesName(42)).c_str(), kPageDataOffset + kPageSize), 0);
  auto img = LoadImage(d.path());
  ASSERT_FALSE(img.ok());
  EXPECT_NE(img.status().ToString().find("pages-42.img"), std::string::npos);
}

TEST(ImageDirTest, MissingFileNamesIt) {
  TempDir d;
  WriteImage(d.path());
  ASSERT_EQ(::unlink((d.path() + "/" + FdsName(42)).c_str()), 0);
  auto img = LoadImage(d.path());
  ASSERT_FALSE(img.ok());
  EXPECT_NE(img.status().ToString().find("fds-42.img"), std::string::npos);
}

TEST(ImageDirTest, FutureFormatVersionIsRefused) {
  TempDir d;
  WriteImage(d.path());
  // Patch the version field of the inventory header (bytes 4..7) to 99.
  const std::string p = d.path() + "/" + InventoryName();
  std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(4);
  const char v[4] = {99, 0, 0, 0};
  f.write(v, 4);
  f.close();
  auto img = LoadImage(d.path());
  ASSERT_FALSE(img.ok());
  EXPECT_NE(img.status().ToString().find("newer than this cryo supports"), std::string::npos);
}

TEST(ImageDirTest, UnknownFeatureIsRefusedByName) {
  TempDir d;
  WriteImage(d.path(), kFormatVersion, "teleportation");
  auto img = LoadImage(d.path());
  ASSERT_FALSE(img.ok());
  EXPECT_NE(img.status().ToString().find("'teleportation'"), std::string::npos);
}

// Reads one record of an image, lets `edit` change it, and writes it back.
template <typename Msg>
void EditRecord(const std::string& dir, const std::string& name, FileKind kind, const std::function<void(Msg*)>& edit) {
  Msg msg;
  ASSERT_TRUE(ReadRecord(dir, name, kind, &msg).ok());
  edit(&msg);
  auto w = ImageWriter::Create(Env::Default(), dir);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->WriteRecord(name, kind, msg).ok());
  ASSERT_TRUE((*w)->SyncFiles().ok());
}

TEST(ImageDirTest, InventoryVersionZeroIsRefused) {
  TempDir d;
  WriteImage(d.path(), 0);
  auto img = LoadImage(d.path());
  ASSERT_FALSE(img.ok());
  EXPECT_NE(img.status().ToString().find("format version 0"), std::string::npos) << img.status().ToString();
}

TEST(ImageDirTest, PidListedTwiceIsRefused) {
  TempDir d;
  WriteImage(d.path());
  EditRecord<Inventory>(d.path(), InventoryName(), FileKind::kInventory, [](Inventory* inv) { inv->add_pids(42); });
  auto img = LoadImage(d.path());
  ASSERT_FALSE(img.ok());
  EXPECT_NE(img.status().ToString().find("pid 42 twice"), std::string::npos) << img.status().ToString();
}

TEST(ImageDirTest, NonUtf8NamesRoundTrip) {
  TempDir d;
  WriteImage(d.path());
  const char raw[] = "/tmp/\xff\xfe-not-utf8";
  const std::string name(raw, sizeof(raw) - 1);
  EditRecord<Mm>(d.path(), MmName(42), FileKind::kMm, [&](Mm* mm) { mm->mutable_vmas(0)->set_name(name); });
  auto img = LoadImage(d.path());
  ASSERT_TRUE(img.ok()) << img.status().ToString();
  EXPECT_EQ(img->processes.at(42).mm.vmas(0).name(), name);
}

// An Env whose files fail to write after a byte budget: a full disk.
class FullDiskEnv : public Env {
 public:
  explicit FullDiskEnv(size_t budget) : budget_(budget) {}
  class File : public WritableFile {
   public:
    File(std::unique_ptr<WritableFile> f, size_t* budget) : f_(std::move(f)), budget_(budget) {}
    Status Append(const void* d, size_t n) override { return Charge(n) ? f_->Append(d, n) : Full(); }
    Status WriteAt(const void* d, size_t n, off_t o) override { return Charge(n) ? f_->WriteAt(d, n, o) : Full(); }
    Status StartWriteback(off_t o, size_t n) override { return f_->StartWriteback(o, n); }
    Status Sync() override { return f_->Sync(); }
    Status Close() override { return f_->Close(); }
    const std::string& path() const override { return f_->path(); }

   private:
    bool Charge(size_t n) {
      if (n > *budget_) return false;
      *budget_ -= n;
      return true;
    }
    Status Full() { return Status::Errno(ENOSPC, "write to " + f_->path()); }
    std::unique_ptr<WritableFile> f_;
    size_t* budget_;
  };
  Result<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& p, mode_t m) override {
    CRYO_ASSIGN_OR_RETURN(auto f, Env::Default()->NewWritableFile(p, m));
    return std::unique_ptr<WritableFile>(new File(std::move(f), &budget_));
  }
  Status CreateDir(const std::string& p, mode_t m) override { return Env::Default()->CreateDir(p, m); }
  Status SyncDir(const std::string& p) override { return Env::Default()->SyncDir(p); }

 private:
  size_t budget_;
};

// The image of WriteImage plus one memfd of 2 pages (content in shm-pages.img)
// mapped by the VMA and held as fd 3.
void WriteShmImage(const std::string& dir, const std::function<void(ShmTable*)>& edit = nullptr,
                   uint64_t stored_pages = 2) {
  WriteImage(dir, kFormatVersion, "memfd");
  auto w = ImageWriter::Create(Env::Default(), dir);
  ASSERT_TRUE(w.ok());
  ShmTable t;
  ShmObject* o = t.add_objects();
  o->set_id(1);
  o->set_kind(SHM_MEMFD);
  o->set_name("a memfd");
  o->set_size(2 * kPageSize - 100);
  ShmExtent* e = o->add_extents();
  e->set_offset(0);
  e->set_npages(2);
  e->set_file_offset(kPageDataOffset);
  t.set_total_pages(2);
  if (edit) edit(&t);
  ASSERT_TRUE((*w)->WriteRecord(ShmName(), FileKind::kShm, t).ok());
  auto pf = (*w)->CreatePageFile(ShmPagesName());
  ASSERT_TRUE(pf.ok());
  std::string pages(stored_pages * kPageSize, 's');
  ASSERT_TRUE((*pf)->WriteAt(pages.data(), pages.size(), kPageDataOffset).ok());
  ASSERT_TRUE((*w)->FinishPageFile(std::move(*pf), pages.size()).ok());
  Mm mm;
  ASSERT_TRUE(ReadRecord(dir, MmName(42), FileKind::kMm, &mm).ok());
  mm.mutable_vmas(0)->set_kind(VMA_FILE_SHARED);
  mm.mutable_vmas(0)->set_shm_object(1);
  ASSERT_TRUE((*w)->WriteRecord(MmName(42), FileKind::kMm, mm).ok());
  FdTable fds;
  Fd* f = fds.add_fds();
  f->set_fd(3);
  f->set_kind(FD_MEMFD);
  f->set_shm_object(1);
  ASSERT_TRUE((*w)->WriteRecord(FdsName(42), FileKind::kFdTable, fds).ok());
}

TEST(ImageDirTest, ShmTableRoundTrip) {
  TempDir d;
  WriteShmImage(d.path());
  auto img = LoadImage(d.path());
  ASSERT_TRUE(img.ok()) << img.status().ToString();
  ASSERT_EQ(img->shm.objects_size(), 1);
  EXPECT_EQ(img->shm.objects(0).name(), "a memfd");
  EXPECT_TRUE(OpenShmPageFile(d.path(), img->shm).ok());
}

TEST(ImageDirTest, ShmExtentsMustBeWellFormed) {
  struct Case {
    const char* what;
    std::function<void(ShmTable*)> edit;
  } cases[] = {
      {"past the object's end", [](ShmTable* t) { t->mutable_objects(0)->set_size(kPageSize); }},
      {"not page-aligned", [](ShmTable* t) { t->mutable_objects(0)->mutable_extents(0)->set_offset(100); }},
      {"not where the file has it",
       [](ShmTable* t) { t->mutable_objects(0)->mutable_extents(0)->set_file_offset(2 * kPageDataOffset); }},
      {"page count", [](ShmTable* t) { t->set_total_pages(3); }},
      {"id 0", [](ShmTable* t) { t->mutable_objects(0)->set_id(0); }},
      {"a POSIX path outside /dev/shm",
       [](ShmTable* t) {
         t->mutable_objects(0)->set_kind(SHM_POSIX);
         t->mutable_objects(0)->set_name("/etc/passwd");
       }},
  };
  for (const Case& c : cases) {
    TempDir d;
    WriteShmImage(d.path(), c.edit);
    auto img = LoadImage(d.path());
    EXPECT_FALSE(img.ok()) << c.what;
    if (!img.ok()) {
      EXPECT_NE(img.status().message().find(ShmName()), std::string::npos) << img.status().ToString();
    }
  }
}

TEST(ImageDirTest, ShmHoldersMustNameAnObjectOfTheirKind) {
  TempDir d;
  // The fd is a memfd, the object a SysV segment.
  WriteShmImage(d.path(), [](ShmTable* t) { t->mutable_objects(0)->set_kind(SHM_SYSV); });
  auto img = LoadImage(d.path());
  ASSERT_FALSE(img.ok());
  EXPECT_NE(img.status().message().find("fd 3"), std::string::npos) << img.status().ToString();
}

TEST(ImageDirTest, TruncatedShmPagesAreRefused) {
  TempDir d;
  WriteShmImage(d.path(), nullptr, 1);
  auto img = LoadImage(d.path());
  ASSERT_FALSE(img.ok());
  EXPECT_NE(img.status().message().find(ShmPagesName()), std::string::npos) << img.status().ToString();
}

TEST(ImageDirTest, FullDiskIsReportedWithThePath) {
  TempDir d;
  FullDiskEnv env(10);
  auto w = ImageWriter::Create(&env, d.path());
  ASSERT_TRUE(w.ok());
  Inventory inv;
  inv.set_cryo_version("x");
  Status s = (*w)->WriteRecord(InventoryName(), FileKind::kInventory, inv);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.err(), ENOSPC);
  EXPECT_NE(s.ToString().find("inventory.img"), std::string::npos);
}

TEST(ImageDirTest, AsyncJobsRunInOrderAndFlushReportsTheFirstError) {
  TempDir d;
  auto w = ImageWriter::Create(Env::Default(), d.path());
  ASSERT_TRUE(w.ok());
  std::vector<int> ran;
  for (int i = 0; i < 100; ++i)
    (*w)->Async([&ran, i] {
      ran.push_back(i);
      return i == 60 ? Status::Errno(ENOSPC, "job 60") : Status::Ok();
    }, 1 << 20);
  Status s = (*w)->Flush();
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.err(), ENOSPC);
  EXPECT_NE(s.ToString().find("job 60"), std::string::npos);
  // Jobs after the failed one are skipped; those before ran in order.
  ASSERT_EQ(ran.size(), 61u);
  for (int i = 0; i <= 60; ++i) EXPECT_EQ(ran[i], i);
  EXPECT_FALSE((*w)->SyncFiles().ok());
}

TEST(ImageDirTest, AsyncRecordsAreReadableAfterSyncFiles) {
  TempDir d;
  auto w = ImageWriter::Create(Env::Default(), d.path());
  ASSERT_TRUE(w.ok());
  for (int pid = 1; pid <= 100; ++pid) {
    ProcessCore core;
    core.set_pid(pid);
    (*w)->AsyncWriteRecord(CoreName(pid), FileKind::kProcessCore, core);
  }
  ASSERT_TRUE((*w)->SyncFiles().ok());
  for (int pid = 1; pid <= 100; ++pid) {
    ProcessCore core;
    ASSERT_TRUE(ReadRecord(d.path(), CoreName(pid), FileKind::kProcessCore, &core).ok()) << pid;
    EXPECT_EQ(core.pid(), pid);
  }
}

TEST(ImageDirTest, AsyncFullDiskIsReportedWithThePath) {
  TempDir d;
  FullDiskEnv env(10);
  auto w = ImageWriter::Create(&env, d.path());
  ASSERT_TRUE(w.ok());
  Inventory inv;
  inv.set_cryo_version("x");
  (*w)->AsyncWriteRecord(InventoryName(), FileKind::kInventory, inv);
  Status s = (*w)->SyncFiles();
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.err(), ENOSPC);
  EXPECT_NE(s.ToString().find("inventory.img"), std::string::npos);
}

TEST(ImageDirTest, WriterWithQueuedJobsCanBeDestroyed) {
  TempDir d;
  std::atomic<int> ran{0};
  {
    auto w = ImageWriter::Create(Env::Default(), d.path());
    ASSERT_TRUE(w.ok());
    for (int i = 0; i < 20; ++i)
      (*w)->Async([&ran] {
        usleep(1000);
        ++ran;
        return Status::Ok();
      });
  }
  EXPECT_LE(ran.load(), 20);
}

TEST(ImageDirTest, UnwritableDirIsRefused) {
  auto w = ImageWriter::Create(Env::Default(), "/proc/version/images");
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.status().ToString().find("/proc/version/images"), std::string::npos);
}

}  // namespace
}  // namespace cryo::image
