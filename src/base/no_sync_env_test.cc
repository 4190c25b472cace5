#include "base/no_sync_env.h"

#include <gtest/gtest.h>

namespace cryo {
namespace {

// Counts what reaches the Env below NoSyncEnv.
struct Calls {
  int writes = 0, syncs = 0, writebacks = 0, dir_syncs = 0, closes = 0;
};

class RecordingFile final : public WritableFile {
 public:
  RecordingFile(std::string path, Calls* calls) : path_(std::move(path)), calls_(calls) {}
  Status Append(const void*, size_t) override { return ++calls_->writes, Status::Ok(); }
  Status WriteAt(const void*, size_t, off_t) override { return ++calls_->writes, Status::Ok(); }
  Status StartWriteback(off_t, size_t) override { return ++calls_->writebacks, Status::Ok(); }
  Status Sync() override { return ++calls_->syncs, Status::Ok(); }
  Status Close() override { return ++calls_->closes, Status::Ok(); }
  const std::string& path() const override { return path_; }

 private:
  std::string path_;
  Calls* calls_;
};

class RecordingEnv final : public Env {
 public:
  Result<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path, mode_t) override {
    return std::unique_ptr<WritableFile>(new RecordingFile(path, &calls));
  }
  Status CreateDir(const std::string&, mode_t) override { return Status::Ok(); }
  Status SyncDir(const std::string&) override { return ++calls.dir_syncs, Status::Ok(); }
  Calls calls;
};

TEST(NoSyncEnv, WritesGoThroughNothingIsMadeDurable) {
  RecordingEnv base;
  NoSyncEnv env(&base);
  auto f = env.NewWritableFile("/img/pages-1.img", 0600);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ((*f)->path(), "/img/pages-1.img");
  char buf[8] = {};
  EXPECT_TRUE((*f)->Append(buf, sizeof(buf)).ok());
  EXPECT_TRUE((*f)->WriteAt(buf, sizeof(buf), 4096).ok());
  EXPECT_TRUE((*f)->StartWriteback(0, 8192).ok());
  EXPECT_TRUE((*f)->Sync().ok());
  EXPECT_TRUE((*f)->Close().ok());
  EXPECT_TRUE(env.SyncDir("/img").ok());
  EXPECT_EQ(base.calls.writes, 2);
  EXPECT_EQ(base.calls.closes, 1);
  EXPECT_EQ(base.calls.syncs, 0);
  EXPECT_EQ(base.calls.writebacks, 0);
  EXPECT_EQ(base.calls.dir_syncs, 0);
}

}  // namespace
}  // namespace cryo
