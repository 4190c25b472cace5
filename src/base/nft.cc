#include "base/nft.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/unique_fd.h"

namespace cryo {

namespace {
constexpr int kNftTimeoutMs = 20000;
}  // namespace

Result<int> RunNftCommand(const std::vector<std::string>& args, const std::string& input, std::string* output) {
  int in[2], out[2];
  if (::pipe2(in, O_CLOEXEC) != 0) return Status::FromErrno("pipe for nft");
  if (::pipe2(out, O_CLOEXEC) != 0) {
    ::close(in[0]);
    ::close(in[1]);
    return Status::FromErrno("pipe for nft");
  }
  UniqueFd in_w(in[1]), out_r(out[0]);
  std::vector<char*> argv;
  std::vector<std::string> all = {"nft"};
  all.insert(all.end(), args.begin(), args.end());
  for (std::string& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t child = ::fork();
  if (child == 0) {
    ::dup2(in[0], 0);
    ::dup2(out[1], 1);
    ::dup2(out[1], 2);
    ::execv("/usr/sbin/nft", argv.data());
    ::execvp("nft", argv.data());
    ::_exit(127);
  }
  ::close(in[0]);
  ::close(out[1]);
  if (child < 0) return Status::FromErrno("fork for nft");
  // The script is small (a few rules per connection): written whole, then EOF.
  size_t done = 0;
  while (done < input.size()) {
    const ssize_t w = ::write(in_w.get(), input.data() + done, input.size() - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break;
    done += static_cast<size_t>(w);
  }
  in_w.reset();
  char buf[4096];
  int waited = 0;
  for (;;) {
    pollfd p = {out_r.get(), POLLIN, 0};
    const int r = ::poll(&p, 1, 100);
    if (r < 0 && errno != EINTR) break;
    if (r > 0) {
      const ssize_t n = ::read(out_r.get(), buf, sizeof(buf));
      if (n > 0) {
        if (output->size() < 65536) output->append(buf, static_cast<size_t>(n));
        continue;
      }
      if (n == 0) break;
    }
    waited += 100;
    if (waited > kNftTimeoutMs) {
      ::kill(child, SIGKILL);
      break;
    }
  }
  int st = 0;
  while (::waitpid(child, &st, 0) < 0 && errno == EINTR) {
  }
  if (waited > kNftTimeoutMs) return Status::Errno(ETIMEDOUT, "nft did not finish in time");
  if (WIFEXITED(st) && WEXITSTATUS(st) == 127) return Status::Error("nft(8) could not be run (is nftables installed?)");
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

}  // namespace cryo
