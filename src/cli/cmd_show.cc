// cryo show: print what an image holds (or compare the pages of two).
#include <cstdio>

#include "cli/command.h"
#include "image/compare_pages.h"
#include "image/show.h"

namespace cryo::cli {

namespace {

class ShowCommand : public Command {
 public:
  CLI::App* Declare(CLI::App& app) override {
    auto* cmd = app.add_subcommand("show", "print what an image holds");
    cmd->add_option("dir", dir_, "image directory")->required()->type_name("DIR");
    cmd->add_flag("--json", json_, "machine-readable output");
    cmd->add_option("--compare-pages", compare_pages_,
                    "verification: every page DIR stores (its chain's too) is stored by OTHER with the same bytes, "
                    "and the other way round; exits 1 naming the first difference")
        ->type_name("OTHER");
    return cmd;
  }

  int Run() override {
    if (!compare_pages_.empty()) {
      Result<std::string> same = image::ComparePages(dir_, compare_pages_);
      if (!same.ok()) return Fail(same.status().Prefixed("the pages of " + dir_ + " and " + compare_pages_ + " differ"));
      Say(*same);
      return 0;
    }
    Result<image::LoadedImage> img = image::LoadImage(dir_);
    if (!img.ok()) return Fail(img.status());
    std::string out = json_ ? image::ShowJson(*img) : image::ShowText(*img);
    fwrite(out.data(), 1, out.size(), stdout);
    return 0;
  }

 private:
  std::string dir_;
  bool json_ = false;
  std::string compare_pages_;
};

}  // namespace

std::unique_ptr<Command> NewShowCommand() { return std::make_unique<ShowCommand>(); }

}  // namespace cryo::cli
