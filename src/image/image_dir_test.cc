#include "image/image_dir.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <termios.h>
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <vector>

#include "base/file_util.h"
#include "image/test_image.h"

namespace cryo::image {
namespace {

using testing::MakeTestImage;
using testing::TempDir;
using testing::TestImage;
using testing::WriteTestImage;

// Writes a minimal valid one-process image into dir.
void WriteImage(const std::string& dir, uint32_t version = kFormatVersion, const std::string& extra_feature = "") {
  TestImage t = MakeTestImage();
  t.inv.set_format_version(version);
  if (!extra_feature.empty()) t.inv.add_features(extra_feature);
  Status s = WriteTestImage(dir, t);
  ASSERT_TRUE(s.ok()) << s.ToString();
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
  TestImage img = MakeTestImage();
  img.inv.add_features("tty");
  Tty* t = img.ttys.add_ttys();
  t->set_id(1);
  t->set_kind(TTY_PTY);
  t->set_index(7);
  t->set_rdev(makedev(136, 7));
  t->set_master_path("/dev/ptmx");
  t->mutable_termios()->set_cc(std::string(19, '\0'));
  t->mutable_termios()->set_lflag(ICANON);
  t->mutable_winsize()->set_rows(37);
  t->set_master_unread("out\r\n");
  TtyInput* in = t->add_slave_unread();
  in->set_data("partial");
  in->set_partial(true);
  Fd* f = img.procs[42].fds.add_fds();
  f->set_fd(3);
  f->set_kind(FD_TTY);
  f->set_flags(O_RDWR | 0x8000);
  f->mutable_tty()->set_tty_id(1);
  f->mutable_tty()->set_master(true);
  f->mutable_tty()->set_index(7);
  f->mutable_file()->set_path("/dev/ptmx");
  ASSERT_TRUE(WriteTestImage(d.path(), img).ok());
  auto loaded = LoadImage(d.path());
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  ASSERT_EQ(loaded->ttys.ttys_size(), 1);
  EXPECT_EQ(loaded->ttys.ttys(0).SerializeAsString(), t->SerializeAsString());
}

TEST(ImageDirTest, MissingTerminalTableNamesIt) {
  TempDir d;
  WriteImage(d.path(), kFormatVersion, "tty");
  ASSERT_EQ(::unlink((d.path() + "/" + TtysName()).c_str()), 0);
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

// Reads one record of an image, lets `edit` change it, and writes it back
// (same image id, its size updated in the inventory).
template <typename Msg>
void EditRecord(const std::string& dir, const std::string& name, FileKind kind, const std::function<void(Msg*)>& edit) {
  Msg msg;
  ASSERT_TRUE(ReadRecord(dir, name, kind, &msg).ok());
  edit(&msg);
  Status s = ReplaceRecord(dir, name, kind, msg);
  ASSERT_TRUE(s.ok()) << s.ToString();
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
  TestImage img = MakeTestImage();
  img.inv.add_features("memfd");
  ShmTable& t = img.shm;
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
  img.shm_pages = std::string(stored_pages * kPageSize, 's');
  Mm& mm = img.procs[42].mm;
  Vma* v = mm.mutable_vmas(0);
  v->set_kind(VMA_FILE_SHARED);
  v->set_flags(MAP_SHARED);
  v->add_vm_flags("sh");
  v->add_vm_flags("ms");
  v->set_shm_object(1);
  v->set_name("/memfd:a memfd");
  v->mutable_file()->set_path("/memfd:a memfd");
  v->mutable_file()->set_mode(S_IFREG | 0600);
  v->set_stored_pages(0);
  mm.clear_runs();
  mm.set_total_pages(0);
  img.pages[42].clear();
  Fd* f = img.procs[42].fds.add_fds();
  f->set_fd(3);
  f->set_kind(FD_MEMFD);
  f->set_flags(O_RDWR | 0x8000);
  f->set_shm_object(1);
  f->mutable_file()->set_path("/memfd:a memfd (deleted)");
  f->mutable_file()->set_mode(S_IFREG | 0600);
  ASSERT_TRUE(WriteTestImage(dir, img).ok());
}

TEST(ImageDirTest, ShmTableRoundTrip) {
  TempDir d;
  WriteShmImage(d.path());
  auto img = LoadImage(d.path());
  ASSERT_TRUE(img.ok()) << img.status().ToString();
  ASSERT_EQ(img->shm.objects_size(), 1);
  EXPECT_EQ(img->shm.objects(0).name(), "a memfd");
  EXPECT_TRUE(OpenShmPageFile(*img).ok());
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
  WriteShmImage(d.path(), [](ShmTable* t) {
    t->mutable_objects(0)->set_kind(SHM_SYSV);
    t->mutable_objects(0)->clear_name();
  });
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

// An image is one image: a file copied in from another one is refused, named.
TEST(ImageDirTest, FileOfAnotherImageIsRefused) {
  TempDir a, b;
  WriteImage(a.path());
  WriteImage(b.path());
  ASSERT_EQ(std::system(("cp " + b.path() + "/fds-42.img " + a.path() + "/fds-42.img").c_str()), 0);
  auto img = LoadImage(a.path());
  ASSERT_FALSE(img.ok());
  EXPECT_NE(img.status().message().find("fds-42.img belongs to another image"), std::string::npos)
      << img.status().ToString();
  // Page files too.
  WriteImage(a.path());
  ASSERT_EQ(std::system(("cp " + b.path() + "/pages-42.img " + a.path() + "/pages-42.img").c_str()), 0);
  img = LoadImage(a.path());
  ASSERT_FALSE(img.ok());
  EXPECT_NE(img.status().message().find("pages-42.img belongs to another image"), std::string::npos)
      << img.status().ToString();
}

// Writes `t` as a format 1 image: 32-byte headers without an id, no file list.
void WriteV1Image(const std::string& dir, TestImage t) {
  t.inv.set_format_version(1);
  ImageIdentity v1;
  v1.format_version = 1;
  auto w = ImageWriter::ForImage(Env::Default(), dir, v1);
  ASSERT_TRUE(w.ok());
  const ProcessImage& p = t.procs.at(42);
  ASSERT_TRUE((*w)->WriteRecord(CoreName(42), FileKind::kProcessCore, p.core).ok());
  ASSERT_TRUE((*w)->WriteRecord(MmName(42), FileKind::kMm, p.mm).ok());
  ASSERT_TRUE((*w)->WriteRecord(FdsName(42), FileKind::kFdTable, p.fds).ok());
  auto pf = (*w)->CreatePageFile(PagesName(42));
  ASSERT_TRUE(pf.ok());
  ASSERT_TRUE((*pf)->WriteAt(t.pages[42].data(), t.pages[42].size(), kPageDataOffset).ok());
  ASSERT_TRUE((*w)->FinishPageFile(std::move(*pf), t.pages[42].size()).ok());
  ASSERT_TRUE((*w)->WriteRecord(InventoryName(), FileKind::kInventory, t.inv).ok());
  ASSERT_TRUE((*w)->SyncFiles().ok());
}

TEST(ImageDirTest, FormatOneImagesWithoutIdStillLoad) {
  TempDir d;
  WriteV1Image(d.path(), MakeTestImage());
  auto img = LoadImage(d.path());
  ASSERT_TRUE(img.ok()) << img.status().ToString();
  EXPECT_EQ(img->identity.format_version, 1u);
  EXPECT_TRUE(img->identity.image_id.empty());
  uint8_t hdr[kHeaderSize];
  std::ifstream f(d.path() + "/" + CoreName(42), std::ios::binary);
  f.read(reinterpret_cast<char*>(hdr), kHeaderSize);
  FileHeader h;
  std::string why;
  ASSERT_TRUE(DecodeHeader(hdr, kHeaderSize, &h, &why)) << why;
  EXPECT_EQ(h.header_size, kHeaderSizeV1);
}

TEST(ImageDirTest, FormatOneFileInAFormatTwoImageIsRefused) {
  TempDir v1, v2;
  WriteV1Image(v1.path(), MakeTestImage());
  WriteImage(v2.path());
  ASSERT_EQ(std::system(("cp " + v1.path() + "/mm-42.img " + v2.path() + "/mm-42.img").c_str()), 0);
  auto img = LoadImage(v2.path());
  ASSERT_FALSE(img.ok());
  EXPECT_NE(img.status().message().find("mm-42.img"), std::string::npos) << img.status().ToString();
  // And the other way round: an id-less image takes no file with an id.
  WriteV1Image(v1.path(), MakeTestImage());
  WriteImage(v2.path());
  ASSERT_EQ(std::system(("cp " + v2.path() + "/mm-42.img " + v1.path() + "/mm-42.img").c_str()), 0);
  img = LoadImage(v1.path());
  ASSERT_FALSE(img.ok());
  EXPECT_NE(img.status().message().find("mm-42.img belongs to another image"), std::string::npos) << img.status().ToString();
}

// Only regular files are read: a FIFO would block, a device node could do
// anything when opened or give endless bytes, a symbolic link leads anywhere.
TEST(ImageDirTest, SpecialFilesAreRefusedWithoutBeingOpened) {
  struct Case {
    const char* name;
    std::function<int(const std::string&)> make;
    const char* says;
  } cases[] = {
      {"inventory.img", [](const std::string& p) { return ::mkfifo(p.c_str(), 0600); }, "is a FIFO"},
      {"core-42.img", [](const std::string& p) { return ::mknod(p.c_str(), S_IFCHR | 0600, makedev(1, 5)); },
       "is a character device"},
      {"mm-42.img", [](const std::string& p) { return ::symlink("/etc/passwd", p.c_str()); }, "is a symbolic link"},
      {"pages-42.img", [](const std::string& p) { return ::mkdir(p.c_str(), 0700); }, "is a directory"},
  };
  for (const Case& c : cases) {
    TempDir d;
    WriteImage(d.path());
    const std::string path = d.path() + "/" + c.name;
    ASSERT_EQ(::unlink(path.c_str()), 0);
    ASSERT_EQ(c.make(path), 0) << c.name;
    auto img = LoadImage(d.path());
    ASSERT_FALSE(img.ok()) << c.name;
    EXPECT_NE(img.status().message().find(c.says), std::string::npos) << img.status().ToString();
  }
}

// A record that grew (a sparse 2 GiB file) is refused by its size alone.
TEST(ImageDirTest, ReadsAreBoundedByTheInventory) {
  TempDir d;
  WriteImage(d.path());
  ASSERT_EQ(::truncate((d.path() + "/" + FdsName(42)).c_str(), 2ll << 30), 0);
  auto img = LoadImage(d.path());
  ASSERT_FALSE(img.ok());
  EXPECT_NE(img.status().message().find("the inventory says"), std::string::npos) << img.status().ToString();
  // A file the inventory does not list is not part of the image.
  WriteImage(d.path());
  EditRecord<Inventory>(d.path(), InventoryName(), FileKind::kInventory, [](Inventory* inv) {
    for (int i = 0; i < inv->files_size(); ++i)
      if (inv->files(i).name() == MmName(42)) inv->mutable_files()->DeleteSubrange(i, 1);
  });
  img = LoadImage(d.path());
  ASSERT_FALSE(img.ok());
  EXPECT_NE(img.status().message().find("does not list mm-42.img"), std::string::npos) << img.status().ToString();
}

TEST(ImageDirTest, InventorySizeIsCapped) {
  TempDir d;
  WriteImage(d.path());
  ASSERT_EQ(::truncate((d.path() + "/" + InventoryName()).c_str(), 1ll << 40), 0);
  auto img = LoadImage(d.path());
  ASSERT_FALSE(img.ok());
  EXPECT_NE(img.status().message().find("more than"), std::string::npos) << img.status().ToString();
}

TEST(ImageDirTest, InventoryListsEveryFileWithItsSize) {
  TempDir d;
  WriteImage(d.path());
  Inventory inv;
  ImageIdentity id;
  ASSERT_TRUE(ReadInventory(d.path(), &inv, &id).ok());
  EXPECT_EQ(id.image_id.size(), kImageIdSize);
  EXPECT_EQ(inv.image_id(), id.image_id);
  ASSERT_EQ(id.sizes.size(), 4u);
  for (const auto& [name, size] : id.sizes) {
    struct stat st;
    ASSERT_EQ(::stat((d.path() + "/" + name).c_str(), &st), 0) << name;
    EXPECT_EQ(static_cast<uint64_t>(st.st_size), size) << name;
  }
}

}  // namespace
}  // namespace cryo::image
