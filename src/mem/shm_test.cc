// Parsers of shared memory objects: /proc/sysvipc/shm, memfd names, SysV
// attach names, seals, and which VMAs are shared memory objects.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "mem/hugetlb.h"
#include "mem/memfd.h"
#include "mem/posix_shm.h"
#include "mem/shm_dump.h"
#include "mem/sysv_shm.h"

namespace cryo {
namespace {

constexpr char kSysvShm[] =
    "       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      "
    "dtime      ctime                   rss                  swap\n"
    " 305441741          0   640                 10000  9963  9964      3  1000  1001     0     0 1796110090          0 "
    "1796110090                  8192                     0\n"
    "         0          1  1600                  4096  9963  9963      1     0     0     0     0 1796110090          0 "
    "1796110090                     0                     0\n"
    "-559038737      32769  2666            4294967296     1     1      0     0     0     0     0          0          0 "
    "         0                     0                     0\n";

TEST(SysvShm, ParsesEveryColumnCryoUses) {
  auto segs = ParseSysvShm(kSysvShm);
  ASSERT_TRUE(segs.ok()) << segs.status().ToString();
  ASSERT_EQ(segs->size(), 3u);
  const SysvSegment& a = (*segs)[0];
  EXPECT_EQ(a.key, 0x1234abcd);
  EXPECT_EQ(a.id, 0);
  EXPECT_EQ(a.mode, 0640u);
  EXPECT_EQ(a.size, 10000u);
  EXPECT_EQ(a.cpid, 9963);
  EXPECT_EQ(a.lpid, 9964);
  EXPECT_EQ(a.nattch, 3u);
  EXPECT_EQ(a.uid, 1000u);
  EXPECT_EQ(a.gid, 1001u);
  EXPECT_EQ(a.ctime, 1796110090);
  // Removed while attached: SHM_DEST in the octal perms, the key gone.
  const SysvSegment& b = (*segs)[1];
  EXPECT_EQ(b.key, 0);
  EXPECT_EQ(b.mode, 01600u);
  EXPECT_TRUE(b.mode & 01000);
  // Keys above 2^31 print negative; SHM_LOCKED; sizes above 4 GiB.
  const SysvSegment& c = (*segs)[2];
  EXPECT_EQ(static_cast<uint32_t>(c.key), 0xdeadbeefu);
  EXPECT_EQ(c.id, 32769);
  EXPECT_EQ(c.mode, 02666u);
  EXPECT_EQ(c.size, 4294967296ull);
}

TEST(SysvShm, EmptyTableHasOnlyTheHeader) {
  auto segs = ParseSysvShm("       key      shmid perms       size  cpid  lpid nattch   uid   gid  cuid  cgid\n");
  ASSERT_TRUE(segs.ok());
  EXPECT_TRUE(segs->empty());
  segs = ParseSysvShm("");
  ASSERT_TRUE(segs.ok());
  EXPECT_TRUE(segs->empty());
}

TEST(SysvShm, CtimeIsOptional) {
  auto segs = ParseSysvShm("0 1 640 4096 7 7 0 0 0 0 0\n");
  ASSERT_TRUE(segs.ok()) << segs.status().ToString();
  EXPECT_EQ((*segs)[0].ctime, -1);
}

TEST(SysvShm, RejectsMalformedLines) {
  EXPECT_FALSE(ParseSysvShm("1 2 3\n").ok());
  EXPECT_FALSE(ParseSysvShm("x 0 640 4096 1 1 0 0 0 0 0 0 0 0 0 0\n").ok());
  EXPECT_FALSE(ParseSysvShm("0 0 999 4096 1 1 0 0 0 0 0 0 0 0 0 0\n").ok());  // perms are octal
  EXPECT_FALSE(ParseSysvShm("0 -1 640 4096 1 1 0 0 0 0 0 0 0 0 0 0\n").ok());
  EXPECT_FALSE(ParseSysvShm("0 1 640 4096 1 1 0 0 0 0 0 0 0 x 0 0\n").ok());  // ctime
}

TEST(SysvShm, KeyFromAttachName) {
  EXPECT_EQ(SysvKeyFromName("/SYSV1234abcd"), 0x1234abcd);
  EXPECT_EQ(SysvKeyFromName("/SYSV00000000"), 0);
  EXPECT_EQ(static_cast<uint32_t>(*SysvKeyFromName("/SYSVdeadbeef")), 0xdeadbeefu);
  EXPECT_FALSE(SysvKeyFromName("/SYSV1234"));
  EXPECT_FALSE(SysvKeyFromName("/SYSV1234abcd0"));
  EXPECT_FALSE(SysvKeyFromName("/SYSVxyzxyzxy"));
  EXPECT_FALSE(SysvKeyFromName("/tmp/SYSV1234abcd"));
}

TEST(Memfd, NameFromFdLink) {
  EXPECT_EQ(MemfdName("/memfd:cache (deleted)", true), "cache");
  EXPECT_EQ(MemfdName("/memfd:with spaces (deleted)", true), "with spaces");
  // A name that itself ends in " (deleted)": only the kernel's suffix goes.
  EXPECT_EQ(MemfdName("/memfd:x (deleted) (deleted)", true), "x (deleted)");
  EXPECT_EQ(MemfdName("/memfd: (deleted)", true), "");
  EXPECT_FALSE(MemfdName("/memfd:no suffix", true));
  EXPECT_FALSE(MemfdName("/tmp/memfd:x (deleted)", true));
  EXPECT_FALSE(MemfdName("anon_inode:[memfd]", true));
}

TEST(Memfd, NameFromMapsName) {
  // ParseMaps already removed one " (deleted)".
  EXPECT_EQ(MemfdName("/memfd:cache", false), "cache");
  EXPECT_EQ(MemfdName("/memfd:x (deleted)", false), "x (deleted)");
  EXPECT_FALSE(MemfdName("/dev/zero", false));
}

TEST(Memfd, Seals) {
  EXPECT_EQ(SealsString(0), "none");
  EXPECT_EQ(SealsString(F_SEAL_SHRINK | F_SEAL_GROW), "shrink|grow");
  EXPECT_EQ(SealsString(F_SEAL_SEAL | F_SEAL_WRITE), "seal|write");
  EXPECT_EQ(SealsString(0x10 | 0x20), "future-write|exec");
  EXPECT_EQ(SealsString(F_SEAL_GROW | 0x400), "grow|0x400");
  EXPECT_TRUE(KnownSeals(F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | 0x10 | 0x20));
  EXPECT_FALSE(KnownSeals(0x40));
}

TEST(Memfd, ReadsSealsOfARealMemfd) {
  int fd = memfd_create("shm_test", MFD_ALLOW_SEALING | MFD_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
  image::ShmObject o;
  ASSERT_TRUE(ReadMemfdState(fd, "test memfd", &o).ok());
  EXPECT_EQ(o.seals(), static_cast<uint32_t>(F_SEAL_SHRINK | F_SEAL_GROW));
  close(fd);
  // Without MFD_ALLOW_SEALING the kernel reports F_SEAL_SEAL.
  fd = memfd_create("shm_test", MFD_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(ReadMemfdState(fd, "test memfd", &o).ok());
  EXPECT_EQ(o.seals(), static_cast<uint32_t>(F_SEAL_SEAL));
  close(fd);
}

proc::Vma MakeVma(const std::string& name, bool deleted, bool shared, dev_t dev = 1) {
  proc::Vma v;
  v.start = 0x10000;
  v.end = 0x12000;
  v.name = name;
  v.deleted = deleted;
  v.shared = shared;
  v.inode = 7;
  v.dev_major = major(dev);
  v.dev_minor = minor(dev);
  return v;
}

TEST(ShmKind, OfVmas) {
  EXPECT_EQ(ShmKindOfVma(MakeVma("/memfd:x (deleted)", true, true)), image::SHM_MEMFD);
  EXPECT_EQ(ShmKindOfVma(MakeVma("/memfd:x", true, false)), image::SHM_MEMFD);
  EXPECT_EQ(ShmKindOfVma(MakeVma("/memfd:x", false, true)), image::SHM_UNKNOWN);  // a real file of that name
  EXPECT_EQ(ShmKindOfVma(MakeVma("/SYSV1234abcd", true, true)), image::SHM_SYSV);
  EXPECT_EQ(ShmKindOfVma(MakeVma("/SYSV1234abcd", true, false)), image::SHM_UNKNOWN);
  EXPECT_EQ(ShmKindOfVma(MakeVma("/dev/zero", true, true)), image::SHM_ANON);    // MAP_SHARED|MAP_ANONYMOUS
  EXPECT_EQ(ShmKindOfVma(MakeVma("/dev/zero", false, false)), image::SHM_UNKNOWN);  // MAP_PRIVATE of /dev/zero
  EXPECT_EQ(ShmKindOfVma(MakeVma("/dev/zero", true, false)), image::SHM_UNKNOWN);
  struct stat st;
  if (stat("/dev/shm", &st) == 0) {
    EXPECT_EQ(ShmKindOfVma(MakeVma("/dev/shm/x", false, true, st.st_dev)), image::SHM_POSIX);
    EXPECT_EQ(ShmKindOfVma(MakeVma("/dev/shm/x", true, true, st.st_dev)), image::SHM_POSIX);
    EXPECT_EQ(ShmKindOfVma(MakeVma("/dev/shm/x", false, true, st.st_dev + 1)), image::SHM_UNKNOWN);
    EXPECT_TRUE(IsPosixShm("/dev/shm/sub/x", st.st_dev));
    EXPECT_FALSE(IsPosixShm("/dev/shm/", st.st_dev));
    EXPECT_FALSE(IsPosixShm("/dev/shmx/y", st.st_dev));
  }
}

// Files of a hugetlbfs mount (VmFlags ht, a path that is none of the kernel's
// own hugetlbfs files) are kept like POSIX shared memory (mem/hugetlb.h).
TEST(ShmKind, HugetlbfsFiles) {
  auto ht = [](const std::string& name, bool deleted, bool shared) {
    proc::Vma v = MakeVma(name, deleted, shared);
    v.vm_flags = {"rd", "wr", "ht"};
    return v;
  };
  for (bool shared : {true, false})
    for (bool deleted : {true, false}) {
      EXPECT_EQ(ShmKindOfVma(ht("/mnt/huge/data", deleted, shared)), image::SHM_POSIX);
      EXPECT_TRUE(IsHugetlbfsFileVma(ht("/mnt/huge/data", deleted, shared)));
    }
  EXPECT_EQ(ShmKindOfVma(MakeVma("/mnt/huge/data", false, true)), image::SHM_UNKNOWN);  // no ht: another file system
  EXPECT_EQ(ShmKindOfVma(ht("/anon_hugepage", true, true)), image::SHM_ANON);
  EXPECT_EQ(ShmKindOfVma(ht("/anon_hugepage", true, false)), image::SHM_UNKNOWN);  // private anonymous hugetlb
  EXPECT_FALSE(IsHugetlbfsFileVma(ht("/anon_hugepage", true, false)));
  EXPECT_EQ(ShmKindOfVma(ht("/memfd:x", true, false)), image::SHM_MEMFD);
  EXPECT_FALSE(IsHugetlbfsFileVma(ht("/memfd:x", true, false)));
  EXPECT_EQ(ShmKindOfVma(ht("/SYSV1234abcd", true, true)), image::SHM_SYSV);
  EXPECT_FALSE(IsHugetlbfsFileVma(ht("/SYSV1234abcd", true, true)));
}

}  // namespace
}  // namespace cryo
