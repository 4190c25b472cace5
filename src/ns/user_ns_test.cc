#include "ns/user_ns.h"
#include "ns/cgroup_ns.h"

#include <gtest/gtest.h>

#include <array>

namespace cryo::ns {
namespace {

google::protobuf::RepeatedPtrField<image::IdMapRange> Map(std::initializer_list<std::array<uint32_t, 3>> lines) {
  google::protobuf::RepeatedPtrField<image::IdMapRange> out;
  for (const auto& l : lines) {
    image::IdMapRange* r = out.Add();
    r->set_inside(l[0]);
    r->set_outside(l[1]);
    r->set_count(l[2]);
  }
  return out;
}

TEST(UserNs, MapsHostIdsInside) {
  const auto map = Map({{0, 100000, 1000}, {1000, 0, 1}, {4294967294u, 200000, 1}});
  uint32_t in = 7;
  EXPECT_TRUE(MapIdInside(map, 100000, &in));
  EXPECT_EQ(in, 0u);
  EXPECT_TRUE(MapIdInside(map, 100999, &in));
  EXPECT_EQ(in, 999u);
  EXPECT_FALSE(MapIdInside(map, 101000, &in));
  EXPECT_TRUE(MapIdInside(map, 0, &in));
  EXPECT_EQ(in, 1000u);
  EXPECT_FALSE(MapIdInside(map, 65534, &in));  // the overflow id
  EXPECT_TRUE(MapIdInside(map, 200000, &in));
  EXPECT_EQ(in, 4294967294u);
  EXPECT_FALSE(MapIdInside(Map({}), 0, &in));
}

TEST(UserNs, FormatsMapsAsTheKernelReadsThem) {
  EXPECT_EQ(FormatIdMap(Map({{0, 0, 1}})), "0 0 1\n");
  EXPECT_EQ(FormatIdMap(Map({{0, 100000, 65536}, {65536, 5, 2}})), "0 100000 65536\n65536 5 2\n");
}

// Without a tree user namespace, ids pass through and UnshareOwned of
// nothing does nothing.
TEST(UserNs, NothingWithoutATreeUserNamespace) {
  EXPECT_FALSE(HaveTreeUserNs());
  auto id = IdInTreeUserNs(1234, false);
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(*id, 1234u);
  EXPECT_TRUE(UnshareOwned(0, "nothing").ok());
  image::Inventory inv;
  EXPECT_TRUE(MakeTreeUserNs(inv, image::NamespaceTable()).ok());
  EXPECT_FALSE(HaveTreeUserNs());
}

// An image with a user namespace of the tree's own: a time namespace with
// it is restored (made in it), not together with a PID namespace too.
TEST(UserNs, TimeNamespaceFitsWithoutAPidNamespace) {
  image::LoadedImage img;
  for (const char* f : {"user-ns", "time-ns"}) img.inventory.add_features(f);
  *img.namespaces.mutable_user()->mutable_uid_map() = Map({{0, 0, 1}});
  *img.namespaces.mutable_user()->mutable_gid_map() = Map({{0, 0, 1}});
  EXPECT_TRUE(CheckTreeUserNsFit(img).ok());
  img.inventory.add_features("pid-ns");
  const Status st = CheckTreeUserNsFit(img);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("'time-ns' and feature 'pid-ns'"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace cryo::ns

namespace cryo::ns {
namespace {

// The root of a cgroup namespace: what cryo sees less what the process sees.
TEST(CgroupNs, RootIsCryosViewLessTheInsideView) {
  EXPECT_EQ(*CgroupNsRoot("/a/b/c", "/b/c"), "/a");
  EXPECT_EQ(*CgroupNsRoot("/a/b", "/"), "/a/b");
  EXPECT_EQ(*CgroupNsRoot("/a", "/a"), "/");
  EXPECT_EQ(*CgroupNsRoot("/", "/"), "/");
  EXPECT_FALSE(CgroupNsRoot("/a/xb/c", "/b/c").ok());  // whole components only
  EXPECT_FALSE(CgroupNsRoot("/a/b", "/../x").ok());    // outside its root
  EXPECT_FALSE(CgroupNsRoot("/a/b", "/c").ok());
}

}  // namespace
}  // namespace cryo::ns
