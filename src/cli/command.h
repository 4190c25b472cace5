// The pieces every subcommand of cryo is made of (main.cc puts them
// together): a Command declares its CLI11 subcommand and options, then runs
// it; the option groups several commands share (logging, TLS, -t PID) and the
// helpers their runners share (exit statuses, the success line, the image's
// inventory) are here, in one place.
#pragma once

#include <sys/types.h>

#include <CLI/CLI.hpp>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/status.h"
#include "cryo/image.pb.h"
#include "stream/tls.h"

namespace cryo::cli {

// Exit statuses (docs/cryo.1, EXIT STATUS): 1 for a command that failed, 2
// for a command line that is wrong (the option parser's errors included).
inline constexpr int kFailed = 1;
inline constexpr int kUsage = 2;

// One subcommand: `cryo NAME ...`.
class Command {
 public:
  virtual ~Command() = default;
  // Adds the subcommand and its own options to `app` (the options bind to
  // members of this object); returns the subcommand.
  virtual CLI::App* Declare(CLI::App& app) = 0;
  // A command interrupted by SIGINT, SIGTERM, SIGHUP or SIGPIPE undoes what
  // it did (CatchInterrupts) instead of dying at once.
  virtual bool CatchesInterrupts() const { return false; }
  // Usage errors reported before logging is set up (an exit status), if any.
  virtual std::optional<int> EarlyUsageError() { return std::nullopt; }
  // Runs the command, logging set up; returns cryo's exit status.
  virtual int Run() = 0;
};

// The commands, one file each (cmd_NAME.cc); main.cc lists them in the
// order `cryo --help` shows them.
std::unique_ptr<Command> NewDumpCommand();
std::unique_ptr<Command> NewRestoreCommand();
std::unique_ptr<Command> NewShowCommand();
std::unique_ptr<Command> NewUnlockCommand();
std::unique_ptr<Command> NewCheckCommand();
std::unique_ptr<Command> NewPageServerCommand();
std::unique_ptr<Command> NewMigrateCommand();
std::unique_ptr<Command> NewRunCommand();

// --log-file/-o, -v/--verbose, -q/--quiet: on cryo itself and on every command.
struct LoggingOptions {
  std::string log_file;
  int verbosity = 0;
  bool quiet = false;
};
void AddLoggingOptions(CLI::App* cmd, LoggingOptions* o);

// --tls-cert, --tls-key, --tls-ca, --tls-psk (docs/stream-protocol.md, Security).
void AddTlsOptions(CLI::App* cmd, stream::TlsOptions* tls);
// What a streaming command (`cmd`: "dump --to", "migrate", "page-server")
// says of its TLS options and --insecure: an exit status if they are wrong.
std::optional<int> StreamUsageError(const std::string& cmd, const stream::TlsOptions& tls, bool insecure);

// -t/--pid: a pid a process can have, or a usage error.
const CLI::Validator& PidValue();

// Logs `s` as an error; returns kFailed.
int Fail(const Status& s);
// Prints `msg` as a usage error; returns kUsage.
int UsageError(const std::string& msg);

// A line for the user on success (and in the log file); -q silences it.
void Say(const std::string& line);
// Set once the command line is parsed.
void SetSayMode(bool quiet, bool verbose);

// The inventory of a complete image, if it can be read.
std::optional<image::Inventory> ReadInventory(const std::string& dir);

// How long a restore waits for the pids of its image still held by exiting
// processes (a zombie not reaped yet), before it tries anyway.
inline constexpr double kPidWaitSeconds = 10;

// With CRYO_FAULT_POINT=0 (the tests' count of fault points).
void ReportFaultPoints();

// A tree in a PID namespace of its own (`cryo run`) is dumped and checked from
// inside it (ns/tree_pidns.h): cryo forks a process there and waits for it,
// returning its exit status; that process goes on with *pid the tree's own.
std::optional<int> EnterTreePidns(pid_t* pid);

}  // namespace cryo::cli
