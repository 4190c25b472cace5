// cryo: checkpoint/restore for Linux processes. Each command is a file of
// its own (cli/cmd_NAME.cc, see cli/command.h); this puts them together:
// the command line parsed, logging set up, the command run.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <google/protobuf/stubs/logging.h>
#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "base/interrupt.h"
#include "base/log.h"
#include "check/features.h"
#include "cli/command.h"
#include "cli/messages.h"
#include "image/image_dir.h"

int main(int argc, char** argv) {
  using namespace cryo;
  using namespace cryo::cli;
  // Until the command is known (a dump catches them, the others die by them),
  // SIGINT, SIGTERM, SIGHUP and SIGPIPE wait.
  sigset_t interrupts, old_mask;
  sigemptyset(&interrupts);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGPIPE}) sigaddset(&interrupts, sig);
  sigprocmask(SIG_BLOCK, &interrupts, &old_mask);
  CLI::App app{"cryo: checkpoint and restore Linux processes.\n\n"
               "  cryo check                     can this kernel checkpoint?\n"
               "  cryo check -t PID              can this tree be checkpointed? (what would be refused)\n"
               "  cryo dump -t PID -D DIR        checkpoint a process into DIR (then kill it)\n"
               "  cryo restore DIR               bring it back, with its PID, memory and files\n"
               "  cryo show DIR                  what an image holds\n"
               "  cryo run -- CMD ARGS           start a program in namespaces of its own, ready to checkpoint\n"
               "  cryo unlock DIR                let the TCP connections of an image go (no restore)\n"
               "  cryo page-server --listen ADDR:PORT -D DIR --tls-psk FILE   receive one streamed image into DIR\n"
               "  cryo dump -t PID --to ADDR:PORT --tls-psk FILE              checkpoint a process to a page server\n"
               "  cryo migrate -t PID --to ADDR:PORT --tls-psk FILE           move it to page-server --restore\n",
               "cryo"};
  app.set_version_flag("-V,--version", std::string("cryo ") + CRYO_VERSION + " (image format " +
                                           std::to_string(image::kFormatVersion) + ")");
  app.require_subcommand(1);
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return "cryo: " + std::string(e.what()) + "\nRun with --help for more information.\n";
  });
  LoggingOptions logging;
  AddLoggingOptions(&app, &logging);

  // In the order of `cryo --help`.
  std::vector<std::unique_ptr<Command>> commands;
  commands.push_back(NewDumpCommand());
  commands.push_back(NewRestoreCommand());
  commands.push_back(NewShowCommand());
  commands.push_back(NewUnlockCommand());
  commands.push_back(NewCheckCommand());
  commands.push_back(NewPageServerCommand());
  commands.push_back(NewMigrateCommand());
  commands.push_back(NewRunCommand());
  std::vector<CLI::App*> subs;
  for (auto& c : commands) {
    subs.push_back(c->Declare(app));
    AddLoggingOptions(subs.back(), &logging);
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    sigprocmask(SIG_SETMASK, &old_mask, nullptr);
    // "A subcommand is required" would hide a mistyped command.
    const std::string command = FirstWord(argc, argv, {"-o", "--log-file"});
    if (!command.empty() && std::none_of(subs.begin(), subs.end(), [&](auto* c) { return c->get_name() == command; }))
      return UsageError("unknown command '" + command + "' (the commands are check, dump, restore, run, show, unlock, page-server and migrate)");
    const int rc = app.exit(e);  // prints help, the version or the error
    return rc == 0 ? 0 : kUsage;
  }
  Command* cmd = nullptr;
  for (size_t i = 0; i < subs.size(); ++i)
    if (*subs[i]) cmd = commands[i].get();
  if (cmd == nullptr) return 0;  // require_subcommand(1): not reached
  InitFaultPoints();
  if (cmd->CatchesInterrupts()) CatchInterrupts();
  sigprocmask(SIG_SETMASK, &old_mask, nullptr);
  // A record that does not parse is refused with cryo's own message (naming
  // the file); protobuf's log lines about it would only add noise.
  google::protobuf::SetLogHandler(nullptr);
  if (std::optional<int> rc = cmd->EarlyUsageError()) return *rc;
  SetSayMode(logging.quiet, logging.verbosity >= 1);
  SetStderrLogLevel(logging.verbosity >= 2   ? LogLevel::kDebug
                    : logging.verbosity == 1 ? LogLevel::kInfo
                                             : LogLevel::kWarn);
  if (Status s = check::CheckPretendedNames(); !s.ok()) return Fail(s);
  if (!logging.log_file.empty()) {
    Status s = OpenLogFile(logging.log_file);
    if (!s.ok()) return Fail(s);
  }
  return cmd->Run();
}
