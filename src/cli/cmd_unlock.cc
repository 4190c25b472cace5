// cryo unlock: remove the network lock that holds an image's TCP connections.
#include <vector>

#include "cli/command.h"
#include "net/net_lock.h"

namespace cryo::cli {

namespace {

class UnlockCommand : public Command {
 public:
  CLI::App* Declare(CLI::App& app) override {
    auto* cmd = app.add_subcommand(
        "unlock", "remove the network lock that holds an image's TCP connections since a dump (the restore does it too)");
    cmd->add_option("dir", dir_, "image directory whose lock goes")->type_name("DIR");
    cmd->add_option("--table", table_, "the lock's nftables table (cryo-lock-...), for an image that is gone")
        ->type_name("NAME");
    cmd->add_flag("--stale", stale_, "remove the locks of dumps that died (killed) before they finished");
    return cmd;
  }

  int Run() override {
    if (stale_) {
      if (!dir_.empty() || !table_.empty()) return UsageError("unlock: --stale takes no image or table");
      std::vector<std::string> removed;
      if (Status s = RemoveStaleNetLocks(&removed); !s.ok()) return Fail(s);
      Say(std::to_string(removed.size()) + " stale network lock(s) removed");
      return 0;
    }
    if (dir_.empty() == table_.empty()) return UsageError("unlock: give an image directory, --table NAME or --stale");
    std::string table = table_;
    if (table.empty()) {
      const std::optional<image::Inventory> inv = ReadInventory(dir_);
      if (!inv) return Fail(Status::Error(dir_ + ": no complete image here"));
      table = inv->net_lock();
      if (table.empty()) {
        Say(dir_ + ": the image holds no network lock");
        return 0;
      }
    }
    if (!IsNetLockName(table)) return UsageError("unlock: \"" + table + "\" is no network lock of cryo's");
    if (Status s = RemoveNetLock(table); !s.ok()) return Fail(s);
    Say("network lock " + table + " removed: the connections it held are free (their peers may reset them)");
    return 0;
  }

 private:
  std::string dir_, table_;
  bool stale_ = false;
};

}  // namespace

std::unique_ptr<Command> NewUnlockCommand() { return std::make_unique<UnlockCommand>(); }

}  // namespace cryo::cli
