// TLS 1.3 for the stream (OpenSSL): both sides authenticated, either by
// certificates signed by one CA (`--tls-cert FILE --tls-key FILE --tls-ca
// FILE` on both sides: each verifies the other's certificate against the CA)
// or by a pre-shared key (`--tls-psk FILE`: the same secret on both sides;
// an external PSK with (EC)DHE, so a stolen key does not reveal past streams).
//
// The session does no socket I/O itself: OpenSSL reads and writes memory
// BIOs, and the Connection moves their bytes with its own bounded, signal-aware
// waits and MSG_NOSIGNAL sends (OpenSSL's socket BIO writes with write(2),
// which raises SIGPIPE on a closed peer).
#pragma once

#include <memory>
#include <string>

#include "base/status.h"

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;

namespace cryo::stream {

struct TlsOptions {
  std::string cert, key, ca;  // certificates: all three
  std::string psk;            // or a pre-shared key file (hex, 32 to 64 bytes)
  bool enabled() const { return !cert.empty() || !key.empty() || !ca.empty() || !psk.empty(); }
  // What is wrong with the combination given ("" if nothing): the three
  // certificate files together, or the key file alone.
  std::string UsageProblem() const;
};

// The bytes a TLS session wants sent, and those it still needs.
class TlsSession {
 public:
  ~TlsSession();
  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;

  // One step of the handshake: true once done.
  Result<bool> Handshake();
  // Plaintext in: at once into the session's output (memory: never waits).
  Status Write(const char* data, size_t n);
  // Plaintext out: >0 bytes read; 0 with *need_input: feed it ciphertext
  // first; 0 without: the peer closed the session.
  Result<size_t> Read(char* buf, size_t n, bool* need_input);
  // Ciphertext from the socket, and ciphertext for it.
  void Feed(const char* data, size_t n);
  std::string TakeOutput();
  // Plaintext already decrypted or ciphertext not yet looked at.
  bool HasBuffered() const;
  // Whether plaintext can be read now (what is buffered decrypted, nothing
  // consumed); a failure of the session (an alert) is the error.
  Result<bool> HasPlaintext();
  // close_notify into the output.
  void Shutdown();

 private:
  friend class TlsContext;
  TlsSession(SSL* ssl, std::string peer, const class TlsContext* ctx);
  Status Failure(const std::string& what, int ret);
  SSL* ssl_;
  std::string peer_;
  const TlsContext* ctx_;
};

class TlsContext {
 public:
  // Loads and checks every file now (a bad certificate, a key that does not
  // match it, a CA that does not load, a PSK file others can read), before
  // anything connects.
  static Result<std::shared_ptr<TlsContext>> Create(const TlsOptions& opts, bool server);
  ~TlsContext();
  Result<std::unique_ptr<TlsSession>> NewSession(const std::string& peer) const;
  bool server() const { return server_; }
  const TlsOptions& options() const { return opts_; }
  // The pre-shared key (empty with certificates).
  const std::string& psk() const { return psk_; }
  // "certificates (CA FILE)" or "pre-shared key FILE", for messages.
  std::string Describe() const;

 private:
  TlsContext() = default;
  SSL_CTX* ctx_ = nullptr;
  bool server_ = false;
  TlsOptions opts_;
  std::string psk_;
};

// Reads a PSK file: hex digits (whitespace ignored), 32 to 64 bytes, the
// file readable by its owner only.
Result<std::string> ReadPskFile(const std::string& path);

}  // namespace cryo::stream
