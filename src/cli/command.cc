#include "cli/command.h"

#include <cstdio>
#include <cstdlib>

#include "base/interrupt.h"
#include "base/log.h"
#include "cli/messages.h"
#include "image/image_dir.h"
#include "ns/tree_pidns.h"

namespace cryo::cli {

namespace {
bool g_quiet = false;
bool g_verbose = false;
}  // namespace

void AddLoggingOptions(CLI::App* cmd, LoggingOptions* o) {
  cmd->add_option("--log-file,-o", o->log_file, "append a detailed log to FILE")->type_name("FILE");
  cmd->add_flag("-v,--verbose", o->verbosity, "more messages on stderr (-vv for debug)");
  cmd->add_flag("-q,--quiet", o->quiet, "no line on success (errors and warnings are still printed)");
}

void AddTlsOptions(CLI::App* cmd, stream::TlsOptions* tls) {
  cmd->add_option("--tls-cert", tls->cert, "TLS: this side's certificate (PEM), signed by the CA the peer trusts")
      ->type_name("FILE");
  cmd->add_option("--tls-key", tls->key, "TLS: the private key of --tls-cert (PEM)")->type_name("FILE");
  cmd->add_option("--tls-ca", tls->ca, "TLS: the CA certificate(s) the peer's certificate must be signed by")
      ->type_name("FILE");
  cmd->add_option("--tls-psk", tls->psk,
                  "TLS with a pre-shared key instead of certificates: the same FILE on both sides (hex, 32 to 64 "
                  "bytes, mode 0600: openssl rand -hex 32 > FILE)")
      ->type_name("FILE");
}

std::optional<int> StreamUsageError(const std::string& cmd, const stream::TlsOptions& tls, bool insecure) {
  if (std::string p = tls.UsageProblem(); !p.empty()) return UsageError(cmd + ": " + p);
  if (insecure && tls.enabled())
    return UsageError(cmd + ": --insecure turns TLS off: give it or the --tls-* options, not both");
  if (!insecure && !tls.enabled())
    return UsageError(cmd + ": the stream is encrypted and authenticated with TLS: give both sides "
                      "--tls-psk FILE (the same key: openssl rand -hex 32 > FILE) or --tls-cert FILE "
                      "--tls-key FILE --tls-ca FILE; or --insecure on both sides if the link between them is "
                      "trusted (loopback, a private network)");
  return std::nullopt;
}

const CLI::Validator& PidValue() {
  static const CLI::Validator pid_value([](std::string& text) { return PidValueProblem(text); }, "", "pid");
  return pid_value;
}

int Fail(const Status& s) {
  LOG_ERROR("%s", s.ToString().c_str());
  return kFailed;
}

int UsageError(const std::string& msg) {
  fprintf(stderr, "cryo: %s\nRun with --help for more information.\n", msg.c_str());
  return kUsage;
}

void Say(const std::string& line) {
  if (!g_quiet && !g_verbose) fprintf(stderr, "cryo: %s\n", line.c_str());
  LOG_INFO("%s", line.c_str());  // on stderr with -v; in the log file
}

void SetSayMode(bool quiet, bool verbose) {
  g_quiet = quiet;
  g_verbose = verbose;
}

std::optional<image::Inventory> ReadInventory(const std::string& dir) {
  image::Inventory inv;
  if (!image::ReadRecord(dir, image::InventoryName(), image::FileKind::kInventory, &inv).ok()) return std::nullopt;
  return inv;
}

void ReportFaultPoints() {
  const char* at = getenv("CRYO_FAULT_POINT");
  if (at && std::string(at) == "0") fprintf(stderr, "cryo: fault points passed: %llu\n",
                                            static_cast<unsigned long long>(FaultPointsPassed()));
}

std::optional<int> EnterTreePidns(pid_t* pid) {
  Result<pid_t> inner = ns::PidInChildPidns(*pid);
  if (!inner.ok()) return Fail(inner.status());
  if (!*inner) return std::nullopt;
  Result<pid_t> worker = ns::ForkInPidnsOf(*pid);
  if (!worker.ok()) return Fail(worker.status());
  if (*worker) return ns::WaitForDumper(*worker, *pid);
  *pid = *inner;
  return std::nullopt;
}

}  // namespace cryo::cli
