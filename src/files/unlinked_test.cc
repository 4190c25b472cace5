#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "base/env.h"
#include "files/unlinked_dump.h"
#include "files/unlinked_restore.h"
#include "image/format.h"

namespace cryo {
namespace {

std::string TempDir() {
  char tmpl[] = "/tmp/cryo-unlinked-test-XXXXXX";
  const char* d = ::mkdtemp(tmpl);
  EXPECT_NE(d, nullptr);
  return d ? d : "";
}

std::string Bytes(size_t n, char seed) {
  std::string s(n, 0);
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(seed + i * 7);
  return s;
}

void WriteAt(int fd, const std::string& data, off_t at) {
  ASSERT_EQ(::pwrite(fd, data.data(), data.size(), at), static_cast<ssize_t>(data.size()));
}

// A sparse file is stored as its data runs only, each cut to the largest
// extent, and written back with its holes still holes.
TEST(UnlinkedFiles, SparseContentRoundTripsWithItsHoles) {
  const std::string dir = TempDir();
  const std::string src = dir + "/src", data_path = dir + "/data";
  const int fd = ::open(src.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  const uint64_t size = 64ull << 20;
  ASSERT_EQ(::ftruncate(fd, static_cast<off_t>(size)), 0);
  const std::string a = Bytes(3 * 4096, 'a'), b = Bytes(4096, 'b');
  WriteAt(fd, a, 0);
  WriteAt(fd, b, 32 << 20);
  auto out = Env::Default()->NewWritableFile(data_path, 0600);
  ASSERT_TRUE(out.ok()) << out.status().message();
  image::UnlinkedFile file;
  file.set_id(1);
  file.set_kind(image::UNLINKED_REGULAR);
  file.set_path(src);
  file.set_size(size);
  uint64_t off = image::kPageDataOffset;
  Status st = StreamFileData(fd, size, "test file", out->get(), &off, file.mutable_extents(), 8192);
  ASSERT_TRUE(st.ok()) << st.message();
  ASSERT_TRUE((*out)->Close().ok());
  // 12 KiB at 0 in runs of at most 8 KiB, then 4 KiB at 32 MiB.
  ASSERT_EQ(file.extents_size(), 3);
  EXPECT_EQ(file.extents(0).offset(), 0u);
  EXPECT_EQ(file.extents(0).length(), 8192u);
  EXPECT_EQ(file.extents(1).offset(), 8192u);
  EXPECT_EQ(file.extents(1).length(), 4096u);
  EXPECT_EQ(file.extents(2).offset(), 32u << 20);
  EXPECT_EQ(file.extents(2).data_offset(), image::kPageDataOffset + 12288);
  EXPECT_EQ(off, image::kPageDataOffset + 16384);

  const int data = ::open(data_path.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(data, 0);
  const std::string dst = dir + "/dst";
  const int to = ::open(dst.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  ASSERT_GE(to, 0);
  st = FillUnlinkedFile(file, data, to);
  ASSERT_TRUE(st.ok()) << st.message();
  struct stat s;
  ASSERT_EQ(::fstat(to, &s), 0);
  EXPECT_EQ(static_cast<uint64_t>(s.st_size), size);
  EXPECT_LT(s.st_blocks * 512, 1 << 20) << "the holes were filled";
  EXPECT_EQ(::lseek(to, 0, SEEK_HOLE), 12288);
  std::string got(a.size(), 0);
  ASSERT_EQ(::pread(to, got.data(), got.size(), 0), static_cast<ssize_t>(got.size()));
  EXPECT_EQ(got, a);
  got.assign(b.size(), 0);
  ASSERT_EQ(::pread(to, got.data(), got.size(), 32 << 20), static_cast<ssize_t>(got.size()));
  EXPECT_EQ(got, b);

  // A byte changed in the image: refused by its checksum, naming the file.
  file.mutable_extents(2)->set_checksum(file.extents(2).checksum() ^ 1);
  st = FillUnlinkedFile(file, data, to);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("checksum mismatch"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find(src), std::string::npos) << st.message();
  ::close(data);
  ::close(to);
  ::close(fd);
  for (const std::string& p : {src, data_path, dst}) ::unlink(p.c_str());
  ::rmdir(dir.c_str());
}

// An empty file stores no extent.
TEST(UnlinkedFiles, AnEmptyFileHasNoExtent) {
  const std::string dir = TempDir();
  const int fd = ::open((dir + "/e").c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  auto out = Env::Default()->NewWritableFile(dir + "/data", 0600);
  ASSERT_TRUE(out.ok());
  image::UnlinkedFile file;
  uint64_t off = image::kPageDataOffset;
  ASSERT_TRUE(StreamFileData(fd, 0, "empty", out->get(), &off, file.mutable_extents()).ok());
  EXPECT_EQ(file.extents_size(), 0);
  EXPECT_EQ(off, image::kPageDataOffset);
  ::close(fd);
  ::unlink((dir + "/e").c_str());
  ::unlink((dir + "/data").c_str());
  ::rmdir(dir.c_str());
}

// An unlinked FIFO is made under its former name and unlinked at once; a
// name taken meanwhile gives a temporary one in the same directory.
TEST(UnlinkedFiles, AFifoIsMadeAgainUnlinked) {
  const std::string dir = TempDir();
  const std::string path = dir + "/fifo";
  auto fd = MakeUnlinkedFifo(path, 0640, 7);
  ASSERT_TRUE(fd.ok()) << fd.status().message();
  struct stat st;
  ASSERT_EQ(::fstat(*fd, &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
  EXPECT_EQ(st.st_nlink, 0u);
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  char link[256] = {};
  ASSERT_GT(::readlink(("/proc/self/fd/" + std::to_string(*fd)).c_str(), link, sizeof(link) - 1), 0);
  EXPECT_EQ(std::string(link), path + " (deleted)");
  ::close(*fd);
  ASSERT_EQ(::mkfifo(path.c_str(), 0600), 0);  // the name is taken
  fd = MakeUnlinkedFifo(path, 0600, 8);
  ASSERT_TRUE(fd.ok()) << fd.status().message();
  std::string shown(256, 0);
  shown.resize(::readlink(("/proc/self/fd/" + std::to_string(*fd)).c_str(), shown.data(), shown.size()));
  EXPECT_EQ(shown.rfind(dir + "/.cryo-unlinked-", 0), 0u) << shown;
  ::close(*fd);
  ::unlink(path.c_str());
  ::rmdir(dir.c_str());  // fails if the restore left a name behind
  EXPECT_NE(::access(dir.c_str(), F_OK), 0);
}

}  // namespace
}  // namespace cryo
