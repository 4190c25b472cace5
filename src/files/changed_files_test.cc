#include "files/changed_files.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/sysmacros.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "base/size_format.h"
#include "files/file_facts.h"
#include "image/format.h"
#include "image/referenced_files.h"

namespace cryo {
namespace {

using image::FileCheck;

image::FileId Id(uint64_t dev, uint64_t ino, uint64_t size, int64_t mtime_ns, uint32_t mode = S_IFREG | 0644) {
  image::FileId id;
  id.set_path("/x");
  id.set_dev(dev);
  id.set_ino(ino);
  id.set_size(size);
  id.set_mtime_ns(mtime_ns);
  id.set_mode(mode);
  return id;
}

struct stat Stat(uint64_t dev, uint64_t ino, uint64_t size, int64_t mtime_ns, mode_t mode = S_IFREG | 0644) {
  struct stat st{};
  st.st_dev = dev;
  st.st_ino = ino;
  st.st_size = static_cast<off_t>(size);
  st.st_mtim.tv_sec = mtime_ns / 1000000000;
  st.st_mtim.tv_nsec = mtime_ns % 1000000000;
  st.st_mode = mode;
  return st;
}

TEST(FileChanges, SameFileIsUnchanged) {
  EXPECT_TRUE(FileChanges(Id(1, 2, 3, 4), Stat(1, 2, 3, 4), FileCheck::kContent).empty());
  EXPECT_TRUE(FileChanges(Id(1, 2, 3, 4), Stat(1, 2, 3, 4), FileCheck::kIdentity).empty());
}

TEST(FileChanges, SizeAndMtime) {
  const auto d = FileChanges(Id(1, 2, 10, 1000000000), Stat(1, 2, 20, 2000000001), FileCheck::kContent);
  ASSERT_EQ(d.size(), 2u);
  EXPECT_EQ(d[0], "size 10 -> 20 bytes");
  EXPECT_EQ(d[1], "mtime 1970-01-01 00:00:01.000000000 UTC -> 1970-01-01 00:00:02.000000001 UTC");
}

TEST(FileChanges, MtimeAloneIsAChange) {
  const auto d = FileChanges(Id(1, 2, 10, 5), Stat(1, 2, 10, 6), FileCheck::kContent);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_NE(d[0].find("mtime"), std::string::npos);
}

TEST(FileChanges, ReplacedNamesInodeAndDevice) {
  auto d = FileChanges(Id(1, 2, 3, 4), Stat(1, 7, 3, 4), FileCheck::kContent);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0], "replaced: another file (inode 2 -> 7)");
  d = FileChanges(Id(makedev(8, 1), 2, 3, 4), Stat(makedev(8, 2), 2, 3, 4), FileCheck::kContent);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0], "replaced: another file (inode 2 -> 2, device 8:1 -> 8:2)");
}

TEST(FileChanges, IdentityCheckIgnoresSizeAndMtime) {
  EXPECT_TRUE(FileChanges(Id(1, 2, 3, 4, S_IFDIR | 0755), Stat(1, 2, 4096, 99, S_IFDIR | 0755), FileCheck::kIdentity).empty());
  EXPECT_EQ(FileChanges(Id(1, 2, 3, 4), Stat(1, 3, 3, 4), FileCheck::kIdentity).size(), 1u);
}

TEST(FileChanges, TypeChange) {
  const auto d = FileChanges(Id(1, 2, 3, 4, S_IFDIR | 0755), Stat(1, 2, 3, 4, S_IFREG | 0644), FileCheck::kIdentity);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0], "no longer a directory");
}

TEST(FileChanges, ContentChangeText) {
  EXPECT_EQ(ContentChange(0x1, 0xabc),
            "content differs (XXH3-64 0000000000000001 -> 0000000000000abc) with the same size and mtime");
}

TEST(FormatTimeNs, UtcToTheNanosecond) { EXPECT_EQ(FormatTimeNs(1796589103123456789ll), "2026-12-06 20:31:43.123456789 UTC"); }

image::Fd RegularFd(int fd, const std::string& path, uint32_t flags, image::FdKind kind = image::FD_REGULAR) {
  image::Fd f;
  f.set_fd(fd);
  f.set_kind(kind);
  f.set_flags(flags);
  *f.mutable_file() = Id(1, 2, 3, 4);
  f.mutable_file()->set_path(path);
  return f;
}

TEST(ReferencedFiles, ChecksPerHolderKindAndMergesByPath) {
  image::LoadedImage img;
  image::ProcessImage& p = img.processes[12];
  p.core.set_pid(12);
  *p.fds.add_fds() = RegularFd(3, "/log", O_WRONLY | O_APPEND);  // appended to only
  *p.fds.add_fds() = RegularFd(4, "/db", O_RDWR);
  *p.fds.add_fds() = RegularFd(5, "/dir", O_RDONLY | O_DIRECTORY, image::FD_DIRECTORY);
  *p.fds.add_fds() = RegularFd(6, "/proc/meminfo", O_RDONLY);  // made by the kernel
  *p.fds.add_fds() = RegularFd(7, "/lib.so", O_RDONLY);
  *p.fds.add_fds() = RegularFd(8, "/gone (deleted)", O_RDONLY);
  image::Vma* v = p.mm.add_vmas();
  v->set_kind(image::VMA_FILE_PRIVATE);
  *v->mutable_file() = Id(1, 2, 3, 4);
  v->mutable_file()->set_path("/lib.so");
  v->mutable_file()->set_content_xxh3(77);
  image::Vma* shm = p.mm.add_vmas();
  shm->set_kind(image::VMA_FILE_SHARED);
  shm->set_shm_object(1);
  *shm->mutable_file() = Id(1, 9, 3, 4);
  shm->mutable_file()->set_path("/dev/shm/x");
  *p.core.mutable_cwd_file() = Id(1, 5, 4096, 4, S_IFDIR | 0755);
  p.core.mutable_cwd_file()->set_path("/dir");

  const auto files = image::ReferencedFiles(img);
  ASSERT_EQ(files.size(), 4u);
  EXPECT_EQ(files[0].path, "/db");
  EXPECT_EQ(files[0].check, FileCheck::kContent);
  EXPECT_EQ(files[1].path, "/dir");
  EXPECT_EQ(files[1].check, FileCheck::kIdentity);
  EXPECT_EQ(image::HoldersText(files[1]), "working directory of pid 12, fd 5 of pid 12");
  EXPECT_EQ(files[2].path, "/lib.so");
  EXPECT_EQ(files[2].check, FileCheck::kContent);
  ASSERT_TRUE(files[2].recorded.has_content_xxh3());  // the mapping's record, with its hash
  EXPECT_EQ(files[2].recorded.content_xxh3(), 77u);
  EXPECT_EQ(image::HoldersText(files[2]), "fd 7 of pid 12, mapped by pid 12");
  EXPECT_EQ(files[3].path, "/log");
  EXPECT_EQ(files[3].check, FileCheck::kIdentity);
}

TEST(ReferencedFiles, HoldersTextShortens) {
  image::ReferencedFile f;
  f.holders = {"a", "b", "c", "d", "e"};
  EXPECT_EQ(image::HoldersText(f), "a, b, c and 2 more");
}

TEST(HashFileContent, EqualsHashOfTheBytes) {
  char name[] = "/tmp/cryo-hash-XXXXXX";
  const int fd = ::mkstemp(name);
  ASSERT_GE(fd, 0);
  std::string data(3 << 20, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 7 + (i >> 12));
  ASSERT_EQ(::write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
  uint64_t n = 0;
  auto h = HashFileContent(fd, name, &n);
  ::close(fd);
  ::unlink(name);
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  EXPECT_EQ(n, data.size());
  EXPECT_EQ(*h, image::HashBytes(data.data(), data.size()));
}

// A real file on disk, referenced by one fd and one executable mapping.
class CheckChangedFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/cryo-changed-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
    path_ = dir_ + "/lib.so";
    Write("0123456789");
    struct stat st;
    ASSERT_EQ(::stat(path_.c_str(), &st), 0);
    image::ProcessImage& p = img_.processes[12];
    p.core.set_pid(12);
    image::Vma* v = p.mm.add_vmas();
    v->set_kind(image::VMA_FILE_PRIVATE);
    v->set_prot(PROT_READ | PROT_EXEC);
    FileIdFromStat(path_, st, v->mutable_file());
    v->mutable_file()->set_content_xxh3(image::HashBytes("0123456789", 10));
    mtime_ = st.st_mtim;
  }
  void TearDown() override {
    ::unlink(path_.c_str());
    ::unlink((path_ + ".new").c_str());
    ::rmdir(dir_.c_str());
  }
  void Write(const std::string& s, std::ios::openmode mode = std::ios::trunc) {
    std::ofstream(path_, std::ios::binary | mode) << s;
  }
  void PutMtimeBack() {
    const struct timespec times[2] = {mtime_, mtime_};
    ASSERT_EQ(::utimensat(AT_FDCWD, path_.c_str(), times, 0), 0);
  }
  std::string Check(const ChangedFilesPolicy& policy = {}) {
    Status s = CheckChangedFiles(&img_, policy);
    return s.ok() ? "" : s.message();
  }

  std::string dir_, path_;
  struct timespec mtime_;
  image::LoadedImage img_;
};

TEST_F(CheckChangedFilesTest, UnchangedGoesOn) { EXPECT_EQ(Check(), ""); }

TEST_F(CheckChangedFilesTest, AppendIsRefusedByName) {
  Write("more", std::ios::app);
  const std::string m = Check();
  EXPECT_NE(m.find(path_ + " (mapped by pid 12): size 10 -> 14 bytes"), std::string::npos) << m;
  EXPECT_NE(m.find("--allow-changed " + path_), std::string::npos) << m;
  EXPECT_NE(m.find("--ignore-changed-files"), std::string::npos) << m;
}

TEST_F(CheckChangedFilesTest, SameSizeAndMtimeOtherContentIsRefused) {
  Write("9876543210");
  PutMtimeBack();
  const std::string m = Check();
  EXPECT_NE(m.find("content differs (XXH3-64"), std::string::npos) << m;
}

TEST_F(CheckChangedFilesTest, ReplacedIsRefused) {
  std::ofstream(path_ + ".new", std::ios::binary) << "0123456789";
  ASSERT_EQ(::rename((path_ + ".new").c_str(), path_.c_str()), 0);
  PutMtimeBack();
  const std::string m = Check();
  EXPECT_NE(m.find("replaced: another file"), std::string::npos) << m;
}

TEST_F(CheckChangedFilesTest, MissingIsRefusedWhateverTheOptions) {
  ASSERT_EQ(::unlink(path_.c_str()), 0);
  const std::string m = Check({true, {}, {}});
  EXPECT_NE(m.find(path_ + " (mapped by pid 12) is missing (No such file or directory)"), std::string::npos) << m;
}

// A file the image carries (--snapshot-path) was put back: not checked.
TEST_F(CheckChangedFilesTest, CarriedFilesAreNotChecked) {
  Write("0123456789abc");
  EXPECT_NE(Check(), "");
  EXPECT_EQ(Check({false, {}, {path_}}), "");
}

TEST_F(CheckChangedFilesTest, EveryHolderRecordIsCompared) {
  // A second mapping of the same file whose record says other content (an
  // edited image, or a file that changed while the dump read it).
  image::Vma* v = img_.processes[12].mm.add_vmas();
  *v = img_.processes[12].mm.vmas(0);
  v->mutable_file()->set_content_xxh3(1);
  const std::string m = Check();
  EXPECT_NE(m.find("content differs (XXH3-64 0000000000000001 -> "), std::string::npos) << m;
}

TEST_F(CheckChangedFilesTest, AllowedByPathOrAllGoesOnAndAcceptsTheNewFacts) {
  Write("0123456789abc");
  EXPECT_NE(Check({false, {dir_ + "/other"}, {}}), "");
  EXPECT_EQ(Check({false, {dir_ + "/./lib.so"}, {}}), "");  // resolved like the kernel shows it
  EXPECT_EQ(img_.processes[12].mm.vmas(0).file().size(), 13u);
  Write("0123456789abcdef");
  EXPECT_EQ(Check({true, {}, {}}), "");
  EXPECT_EQ(img_.processes[12].mm.vmas(0).file().size(), 16u);
}

}  // namespace
}  // namespace cryo
