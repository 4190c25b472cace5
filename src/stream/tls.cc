#include "stream/tls.h"

#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>

#include "base/unique_fd.h"

namespace cryo::stream {
namespace {

// The identity both sides give with a pre-shared key (one key, one operator).
constexpr char kPskIdentity[] = "cryo";

// OpenSSL's error queue as text, emptied.
std::string TakeErrors(unsigned long* first_reason) {
  std::string out;
  *first_reason = 0;
  while (unsigned long e = ERR_get_error()) {
    if (*first_reason == 0) *first_reason = ERR_GET_REASON(e);
    const char* r = ERR_reason_error_string(e);
    if (!out.empty()) out += "; ";
    out += r ? r : "error " + std::to_string(ERR_GET_REASON(e));
  }
  return out;
}

Status LoadError(const std::string& what) {
  unsigned long reason;
  std::string errs = TakeErrors(&reason);
  return Status::Error(what + (errs.empty() ? "" : ": " + errs));
}

const TlsContext* ContextOf(SSL* ssl) {
  return static_cast<const TlsContext*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
}

// TLS 1.3 with the legacy callbacks: OpenSSL makes an external PSK for
// TLS_AES_128_GCM_SHA256 of the key these give (SSL_CTX_set_psk_client_callback(3)).
unsigned int PskClient(SSL* ssl, const char*, char* identity, unsigned int max_identity, unsigned char* psk,
                       unsigned int max_psk) {
  const std::string& key = ContextOf(ssl)->psk();
  if (key.empty() || key.size() > max_psk || sizeof(kPskIdentity) > max_identity) return 0;
  memcpy(identity, kPskIdentity, sizeof(kPskIdentity));
  memcpy(psk, key.data(), key.size());
  return static_cast<unsigned int>(key.size());
}

unsigned int PskServer(SSL* ssl, const char* identity, unsigned char* psk, unsigned int max_psk) {
  const std::string& key = ContextOf(ssl)->psk();
  if (key.empty() || key.size() > max_psk || !identity || strcmp(identity, kPskIdentity) != 0) return 0;
  memcpy(psk, key.data(), key.size());
  return static_cast<unsigned int>(key.size());
}

}  // namespace

std::string TlsOptions::UsageProblem() const {
  const bool any_cert = !cert.empty() || !key.empty() || !ca.empty();
  if (any_cert && !psk.empty())
    return "give certificates (--tls-cert, --tls-key, --tls-ca) or a pre-shared key (--tls-psk), not both";
  if (any_cert && (cert.empty() || key.empty() || ca.empty()))
    return "certificates need all three of --tls-cert FILE, --tls-key FILE and --tls-ca FILE";
  return "";
}

Result<std::string> ReadPskFile(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd.valid()) return Status::FromErrno("pre-shared key file " + path);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Status::FromErrno("pre-shared key file " + path);
  if (!S_ISREG(st.st_mode)) return Status::Error("pre-shared key file " + path + " is not a regular file");
  if (st.st_mode & 077)
    return Status::Error("pre-shared key file " + path + " can be read by others (mode 0" +
                         std::to_string((st.st_mode >> 6) & 7) + std::to_string((st.st_mode >> 3) & 7) +
                         std::to_string(st.st_mode & 7) + "): chmod 600 it, and make a new key");
  char buf[1024];
  ssize_t n = ::read(fd.get(), buf, sizeof(buf));
  if (n < 0) return Status::FromErrno("read " + path);
  std::string hex;
  for (ssize_t i = 0; i < n; ++i) {
    const unsigned char c = static_cast<unsigned char>(buf[i]);
    if (isspace(c)) continue;
    if (!isxdigit(c))
      return Status::Error("pre-shared key file " + path + " holds something other than hex digits "
                           "(make one with: openssl rand -hex 32 > FILE)");
    hex += static_cast<char>(c);
  }
  if (hex.size() % 2 != 0 || hex.size() < 64 || hex.size() > 128)
    return Status::Error("pre-shared key file " + path + " must hold 32 to 64 bytes as hex digits (it holds " +
                         std::to_string(hex.size()) + " digits; make one with: openssl rand -hex 32 > FILE)");
  std::string key;
  for (size_t i = 0; i < hex.size(); i += 2) key += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  return key;
}

Result<std::shared_ptr<TlsContext>> TlsContext::Create(const TlsOptions& opts, bool server) {
  if (std::string p = opts.UsageProblem(); !p.empty()) return Status::Error(p);
  std::shared_ptr<TlsContext> c(new TlsContext());
  c->server_ = server;
  c->opts_ = opts;
  ERR_clear_error();
  c->ctx_ = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  if (!c->ctx_) return LoadError("cannot create a TLS context");
  SSL_CTX_set_app_data(c->ctx_, c.get());
  if (!SSL_CTX_set_min_proto_version(c->ctx_, TLS1_3_VERSION)) return LoadError("TLS 1.3");
  // One connection per run: no session to resume, so no tickets (a ticket
  // would also arrive as data nobody asked for after the handshake).
  SSL_CTX_set_options(c->ctx_, SSL_OP_NO_TICKET);
  if (server) SSL_CTX_set_num_tickets(c->ctx_, 0);
  // OpenSSL refuses a PSK (a session, to it) on a verifying server without one.
  static const unsigned char kSessionContext[] = "cryo";
  if (server && !SSL_CTX_set_session_id_context(c->ctx_, kSessionContext, sizeof(kSessionContext) - 1))
    return LoadError("TLS session context");
  if (!opts.psk.empty()) {
    CRYO_ASSIGN_OR_RETURN(c->psk_, ReadPskFile(opts.psk));
    if (server) SSL_CTX_set_psk_server_callback(c->ctx_, PskServer);
    else SSL_CTX_set_psk_client_callback(c->ctx_, PskClient);
    // No CA is loaded: a server that answers with a certificate instead of
    // the key fails verification (a PSK server asks for no certificate).
    if (!server) SSL_CTX_set_verify(c->ctx_, SSL_VERIFY_PEER, nullptr);
    return c;
  }
  if (SSL_CTX_use_certificate_chain_file(c->ctx_, opts.cert.c_str()) != 1)
    return LoadError("cannot load the certificate " + opts.cert);
  if (SSL_CTX_use_PrivateKey_file(c->ctx_, opts.key.c_str(), SSL_FILETYPE_PEM) != 1) {
    if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH)
      return LoadError("the private key " + opts.key + " does not match the certificate " + opts.cert);
    return LoadError("cannot load the private key " + opts.key);
  }
  if (SSL_CTX_check_private_key(c->ctx_) != 1)
    return LoadError("the private key " + opts.key + " does not match the certificate " + opts.cert);
  if (SSL_CTX_load_verify_locations(c->ctx_, opts.ca.c_str(), nullptr) != 1)
    return LoadError("cannot load the CA certificate " + opts.ca);
  SSL_CTX_set_verify(c->ctx_, SSL_VERIFY_PEER | (server ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0), nullptr);
  return c;
}

TlsContext::~TlsContext() {
  if (ctx_) SSL_CTX_free(ctx_);
}

std::string TlsContext::Describe() const {
  return opts_.psk.empty() ? "certificates (CA " + opts_.ca + ")" : "pre-shared key " + opts_.psk;
}

Result<std::unique_ptr<TlsSession>> TlsContext::NewSession(const std::string& peer) const {
  ERR_clear_error();
  SSL* ssl = SSL_new(ctx_);
  if (!ssl) return LoadError("cannot create a TLS session");
  BIO* in = BIO_new(BIO_s_mem());
  BIO* out = BIO_new(BIO_s_mem());
  if (!in || !out) {
    BIO_free(in);
    BIO_free(out);
    SSL_free(ssl);
    return LoadError("cannot create a TLS session");
  }
  // An empty input BIO means "not yet", not end of file.
  BIO_set_mem_eof_return(in, -1);
  SSL_set_bio(ssl, in, out);
  if (server_) SSL_set_accept_state(ssl);
  else SSL_set_connect_state(ssl);
  return std::unique_ptr<TlsSession>(new TlsSession(ssl, peer, this));
}

TlsSession::TlsSession(SSL* ssl, std::string peer, const TlsContext* ctx)
    : ssl_(ssl), peer_(std::move(peer)), ctx_(ctx) {}

TlsSession::~TlsSession() { SSL_free(ssl_); }

// What failed, in words: the reason OpenSSL gives, and what it means here.
Status TlsSession::Failure(const std::string& what, int ret) {
  const int err = SSL_get_error(ssl_, ret);
  unsigned long reason = 0;
  std::string errs = TakeErrors(&reason);
  const bool psk = !ctx_->psk().empty();
  const std::string prefix = "TLS with " + peer_ + " (" + what + "): ";
  std::string meaning;
  switch (reason) {
    case SSL_R_CERTIFICATE_VERIFY_FAILED: {
      const long v = SSL_get_verify_result(ssl_);
      if (psk)
        meaning = "the peer answered with a certificate, not the pre-shared key: give both sides the same --tls-psk";
      else
        meaning = "the peer's certificate is not verified against the CA " + ctx_->options().ca + " (" +
                  X509_verify_cert_error_string(v) + "): peer not verified";
      break;
    }
    case SSL_R_TLSV1_ALERT_UNKNOWN_CA:
    case SSL_R_SSLV3_ALERT_BAD_CERTIFICATE:
    case SSL_R_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    case SSL_R_TLSV13_ALERT_CERTIFICATE_REQUIRED:
      meaning = "the peer refused our certificate " + ctx_->options().cert + " (" + errs +
                "): it was not signed by the CA the peer trusts";
      break;
    case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
      meaning = "the peer sent no certificate: give it --tls-cert, --tls-key and --tls-ca";
      break;
    case SSL_R_BINDER_DOES_NOT_VERIFY:
    case SSL_R_TLSV1_ALERT_DECRYPT_ERROR:
    case SSL_R_SSLV3_ALERT_ILLEGAL_PARAMETER:  // OpenSSL's server answers a bad binder with it
      meaning = psk ? "wrong pre-shared key: the peer's key differs from " + ctx_->options().psk
                    : "the handshake did not verify (" + errs + ")";
      break;
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_PACKET_LENGTH_TOO_LONG:
    case SSL_R_RECORD_LENGTH_MISMATCH:
      meaning = "the peer does not speak TLS (" + errs + "): is it run with --insecure? Give both sides the same "
                "--tls-* options";
      break;
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
      meaning = "the peer does not speak TLS 1.3 (" + errs + ")";
      break;
    default:
      if (err == SSL_ERROR_ZERO_RETURN || (err == SSL_ERROR_SYSCALL && errs.empty()))
        meaning = "the peer closed the TLS session";
      else
        meaning = "handshake or record failed (" + (errs.empty() ? "error " + std::to_string(err) : errs) +
                  "): do both sides use the same kind of authentication (--tls-psk on both, or certificates "
                  "on both)?";
  }
  return Status::Error(prefix + meaning);
}

Result<bool> TlsSession::Handshake() {
  ERR_clear_error();
  const int r = SSL_do_handshake(ssl_);
  if (r == 1) return true;
  const int err = SSL_get_error(ssl_, r);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return false;
  return Failure("handshake", r);
}

Status TlsSession::Write(const char* data, size_t n) {
  while (n > 0) {
    ERR_clear_error();
    size_t put = 0;
    const int r = SSL_write_ex(ssl_, data, n, &put);
    if (r != 1) return Failure("send", r);  // a memory BIO never asks to wait
    data += put;
    n -= put;
  }
  return Status::Ok();
}

Result<size_t> TlsSession::Read(char* buf, size_t n, bool* need_input) {
  *need_input = false;
  ERR_clear_error();
  size_t got = 0;
  const int r = SSL_read_ex(ssl_, buf, n, &got);
  if (r == 1) return got;
  const int err = SSL_get_error(ssl_, r);
  if (err == SSL_ERROR_WANT_READ) {
    *need_input = true;
    return size_t{0};
  }
  if (err == SSL_ERROR_ZERO_RETURN) return size_t{0};  // close_notify
  return Failure("receive", r);
}

void TlsSession::Feed(const char* data, size_t n) { BIO_write(SSL_get_rbio(ssl_), data, static_cast<int>(n)); }

std::string TlsSession::TakeOutput() {
  BIO* out = SSL_get_wbio(ssl_);
  std::string bytes(BIO_ctrl_pending(out), '\0');
  if (!bytes.empty()) {
    const int r = BIO_read(out, bytes.data(), static_cast<int>(bytes.size()));
    bytes.resize(r > 0 ? static_cast<size_t>(r) : 0);
  }
  return bytes;
}

bool TlsSession::HasBuffered() const {
  return SSL_pending(ssl_) > 0 || BIO_ctrl_pending(SSL_get_rbio(ssl_)) > 0;
}

Result<bool> TlsSession::HasPlaintext() {
  ERR_clear_error();
  char c;
  size_t got = 0;
  const int r = SSL_peek_ex(ssl_, &c, 1, &got);
  if (r == 1) return true;
  const int err = SSL_get_error(ssl_, r);
  if (err == SSL_ERROR_WANT_READ) return false;
  if (err == SSL_ERROR_ZERO_RETURN) return true;  // the next read says it closed
  return Failure("receive", r);
}

void TlsSession::Shutdown() {
  ERR_clear_error();
  (void)SSL_shutdown(ssl_);
  ERR_clear_error();
}

}  // namespace cryo::stream
