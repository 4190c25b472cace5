// --join-ns checks (join_ns.h) and the PID namespace of a pid (tree_pidns.h),
// on this process's own namespaces: what is refused never reaches setns(2).
#include <unistd.h>

#include <gtest/gtest.h>

#include "ns/join_ns.h"
#include "ns/tree_pidns.h"

namespace cryo::ns {
namespace {

image::Inventory InventoryWith(const char* feature) {
  image::Inventory inv;
  if (feature) inv.add_features(feature);
  return inv;
}

TEST(JoinNs, ParsesKindAndPath) {
  EXPECT_TRUE(ParseJoinNs("net:/proc/self/ns/net").ok());
  EXPECT_TRUE(ParseJoinNs("mnt:/run/x").ok());
  EXPECT_NE(ParseJoinNs("net").message().find("expected KIND:PATH"), std::string::npos);
  EXPECT_NE(ParseJoinNs("net:").message().find("expected KIND:PATH"), std::string::npos);
  EXPECT_NE(ParseJoinNs("time:/proc/self/ns/time").message().find("unknown namespace kind \"time\""),
            std::string::npos);
}

TEST(JoinNs, RefusesAFileOfAnotherKind) {
  Status s = JoinNamespaces({"net:/proc/self/ns/uts"}, InventoryWith(nullptr), "/", false);
  EXPECT_NE(s.message().find("/proc/self/ns/uts is a uts namespace, not net"), std::string::npos) << s.ToString();
  s = JoinNamespaces({"ipc:/etc/hostname"}, InventoryWith(nullptr), "/", false);
  EXPECT_NE(s.message().find("is no namespace file"), std::string::npos) << s.ToString();
}

TEST(JoinNs, RefusesWhatTheTreeOwnedAndPid) {
  Status s = JoinNamespaces({"uts:/proc/self/ns/uts"}, InventoryWith("uts-ns"), "/", false);
  EXPECT_NE(s.message().find("owned its own UTS namespace"), std::string::npos) << s.ToString();
  s = JoinNamespaces({"mnt:/proc/self/ns/mnt"}, InventoryWith("pid-ns"), "/", false);
  EXPECT_NE(s.message().find("owned its own PID namespace"), std::string::npos) << s.ToString();
  s = JoinNamespaces({"pid:/proc/self/ns/pid"}, InventoryWith(nullptr), "/", false);
  EXPECT_NE(s.message().find("not supported yet"), std::string::npos) << s.ToString();
  s = JoinNamespaces({"mnt:/proc/self/ns/mnt"}, InventoryWith(nullptr), "/", true);
  EXPECT_NE(s.message().find("with --pidns new"), std::string::npos) << s.ToString();
  s = JoinNamespaces({"uts:/proc/self/ns/uts", "uts:/proc/self/ns/uts"}, InventoryWith(nullptr), "/", false);
  EXPECT_NE(s.message().find("a second uts namespace"), std::string::npos) << s.ToString();
}

TEST(JoinNs, JoinsItsOwnNamespaceAgain) {
  // setns(2) into the namespace it is in already: allowed, nothing changes.
  EXPECT_TRUE(JoinNamespaces({"uts:/proc/self/ns/uts"}, InventoryWith(nullptr), "/", false).ok());
}

TEST(TreePidns, APidOfCryosNamespace) {
  auto inner = PidInChildPidns(::getpid());
  ASSERT_TRUE(inner.ok()) << inner.status().ToString();
  EXPECT_EQ(*inner, 0);
  EXPECT_FALSE(DumpingInTreePidns());
}

}  // namespace
}  // namespace cryo::ns
