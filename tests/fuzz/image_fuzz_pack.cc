// image_fuzz_pack: turns a real image into inputs of the image fuzzer
// (image_input.h), for its seed corpus (tests/fuzz/corpus):
//   image_fuzz_pack IMAGE_DIR OUT_PREFIX
// writes OUT_PREFIX-files (mode 0: the files as they are, page files cut to
// their first 4096 bytes but small compressed ones) and OUT_PREFIX-records (mode 1: record payloads).
#include <dirent.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "image_input.h"

namespace {

std::string Slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

}  // namespace

int main(int argc, char** argv) {
  using namespace cryo::image;
  if (argc != 3) {
    fprintf(stderr, "usage: image_fuzz_pack IMAGE_DIR OUT_PREFIX\n");
    return 2;
  }
  const std::string dir = argv[1], out = argv[2];
  std::vector<std::string> names;
  DIR* d = ::opendir(dir.c_str());
  if (!d) {
    perror(argv[1]);
    return 1;
  }
  while (struct dirent* e = ::readdir(d)) {
    const std::string n = e->d_name;
    if (n.size() > 4 && n.compare(n.size() - 4, 4, ".img") == 0 && fuzz::ValidName(n)) names.push_back(n);
  }
  ::closedir(d);
  std::vector<fuzz::InputFile> raw, records;
  for (const std::string& n : names) {
    std::string content = Slurp(dir + "/" + n);
    if (fuzz::IsPageFile(n)) {
      // A small compressed page file whole (its frame index ends it), others
      // cut to their header block.
      FileHeader ph;
      std::string why;
      const bool framed = DecodeHeader(reinterpret_cast<const uint8_t*>(content.data()), content.size(), &ph, &why) &&
                          ph.kind == FileKind::kCompressedPages && content.size() <= (256u << 10);
      raw.push_back({n, framed ? content : content.substr(0, kPageDataOffset)});
      records.push_back({n, ""});
      continue;
    }
    raw.push_back({n, content});
    FileHeader h;
    std::string why;
    if (!DecodeHeader(reinterpret_cast<const uint8_t*>(content.data()), content.size(), &h, &why) ||
        h.header_size > content.size()) {
      fprintf(stderr, "%s/%s: %s\n", dir.c_str(), n.c_str(), why.c_str());
      return 1;
    }
    records.push_back({n, content.substr(h.header_size)});
  }
  for (const auto& [suffix, mode, files] : {std::make_tuple("-files", 0, &raw), std::make_tuple("-records", 1, &records)}) {
    std::ofstream f(out + suffix, std::ios::binary);
    f << fuzz::Serialize(mode, *files);
    if (!f) {
      perror((out + suffix).c_str());
      return 1;
    }
  }
  return 0;
}
