// One TCP connection carrying stream frames (protocol.h), every wait bounded.
// The socket is non-blocking; each send or receive waits with poll(2) for at
// most its timeout, and gives up early once SIGINT, SIGTERM, SIGHUP or
// SIGPIPE came (base/interrupt.h). Sends use MSG_NOSIGNAL: a closed peer is
// an error (EPIPE), never a SIGPIPE.
#pragma once

#include <sys/uio.h>

#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "base/status.h"
#include "base/unique_fd.h"
#include "stream/protocol.h"
#include "stream/tls.h"

namespace cryo::stream {

struct Frame {
  FrameHeader header;
  std::string payload;
  FrameType type() const { return static_cast<FrameType>(header.type); }
};

// "ADDR:PORT" or "[IPV6]:PORT" into its parts.
Status SplitHostPort(const std::string& text, std::string* host, std::string* port);

class Connection {
 public:
  // `sender`: the side that sends the image, which looks for an ERROR from
  // the receiver before each frame (the receiver never does: the sender's
  // frames are what it reads).
  Connection(UniqueFd fd, std::string peer, double timeout_s, bool sender)
      : fd_(std::move(fd)), peer_(std::move(peer)), timeout_s_(timeout_s), sender_(sender) {}
  ~Connection();
  // Connects to "ADDR:PORT" within `timeout_s`; with `tls`, the TLS
  // handshake too (the peer authenticated, or an error saying why not).
  static Result<std::unique_ptr<Connection>> Connect(const std::string& addr, double timeout_s,
                                                     std::shared_ptr<const TlsContext> tls);
  // The TLS handshake on this connection, within the timeout.
  Status StartTls(std::shared_ptr<const TlsContext> tls);
  bool encrypted() const { return tls_ != nullptr; }

  // Sends one whole frame (several threads may send: frames never mix). The
  // payload is `prefix` followed by `data`. Before it, on the sender's side, a
  // frame the receiver sent meanwhile (an ERROR) is read and returned as the error. After a failure
  // every later send fails at once with the same error.
  Status Send(FrameType type, uint32_t file_id, std::string_view prefix, std::string_view data = {});
  // Receives one frame within `timeout_s` (its header checked).
  Result<Frame> Receive(double timeout_s);
  // Half-closes, then reads and drops what the peer still sends, for at most
  // `linger_s`, so that a last frame sent is not lost to a reset.
  void CloseGracefully(double linger_s);
  const std::string& peer() const { return peer_; }
  double timeout() const { return timeout_s_; }
  // Post-copy: once the image is acknowledged the sender answers requests
  // (PAGE_REQ): a frame from the receiver is no refusal any more.
  void EndSenderChecks() { sender_ = false; }
  // The socket, to poll(2) for POLLIN (with Readable: under TLS bytes may
  // wait decrypted in the session, the socket showing nothing).
  int fd() const { return fd_.get(); }
  // Is a frame (or the end of the connection) there to receive? Never waits.
  // Not while another thread sends or receives on this connection.
  Result<bool> Readable();

 private:
  Status SendLocked(const std::string& header, std::string_view prefix, std::string_view data);
  Status ReadExact(char* buf, size_t n, double timeout_s);
  // The socket itself (under TLS: the ciphertext).
  Status RawSend(const char* data, size_t n);
  Status RawSendv(struct iovec* iov, int count);  // advances `iov`
  Result<size_t> RawRecv(char* buf, size_t n, double timeout_s);  // 0: closed
  Status FlushTls();
  Result<bool> IncomingFrame();
  std::shared_ptr<const TlsContext> tls_ctx_;  // outlives the session (its callbacks use it)
  std::unique_ptr<TlsSession> tls_;
  std::mutex mu_;
  UniqueFd fd_;
  std::string peer_;
  double timeout_s_;
  bool sender_;
  Status failed_;
};

class Listener {
 public:
  static Result<Listener> Listen(const std::string& addr);
  // The address bound ("127.0.0.1:40123": the port chosen for port 0).
  const std::string& address() const { return address_; }
  // One connection within `timeout_s`, with `tls` its TLS handshake done.
  Result<std::unique_ptr<Connection>> Accept(double timeout_s, double frame_timeout_s,
                                             std::shared_ptr<const TlsContext> tls);

 private:
  UniqueFd fd_;
  std::string address_;
};

}  // namespace cryo::stream
