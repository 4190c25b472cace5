// Status and Result<T>: cryo's error type (after LevelDB's Status).
// An error carries the errno that caused it (0 if none) and a message that names
// the step and the resource (task, fd, VMA, file) that failed.
#pragma once

#include <cerrno>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace cryo {

class Status {
 public:
  Status() = default;
  static Status Ok() { return Status(); }
  // An error caused by a failed system call; `what` names the call and the resource.
  static Status Errno(int err, std::string what) { return Status(err, std::move(what)); }
  // Errno() with the current errno.
  static Status FromErrno(std::string what) { return Status(errno, std::move(what)); }
  // An error with no errno (bad input, unsupported resource, ...).
  static Status Error(std::string what) { return Status(0, std::move(what), true); }

  bool ok() const { return !failed_; }
  int err() const { return err_; }
  const std::string& message() const { return msg_; }
  // "message: strerror(errno)" or "message".
  std::string ToString() const;
  // Prefixes the message with context: "dumping pid 42: " + message.
  Status& Prefix(const std::string& context);
  Status Prefixed(const std::string& context) const {
    Status s = *this;
    s.Prefix(context);
    return s;
  }

 private:
  Status(int err, std::string msg, bool failed = true) : err_(err), msg_(std::move(msg)), failed_(failed) {}
  int err_ = 0;
  std::string msg_;
  bool failed_ = false;
};

// A value or an error.
template <typename T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {}  // NOLINT
  bool ok() const { return v_.index() == 0; }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<1>(v_);
  }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace cryo

// Returns early from the enclosing function if `expr` (a Status) failed.
#define CRYO_RETURN_IF_ERROR(expr)            \
  do {                                        \
    ::cryo::Status _st = (expr);              \
    if (!_st.ok()) return _st;                \
  } while (0)

#define CRYO_CONCAT_INNER(a, b) a##b
#define CRYO_CONCAT(a, b) CRYO_CONCAT_INNER(a, b)
// Declares `lhs` from a Result<T>, or returns its error.
#define CRYO_ASSIGN_OR_RETURN(lhs, expr)                                  \
  auto CRYO_CONCAT(_res_, __LINE__) = (expr);                             \
  if (!CRYO_CONCAT(_res_, __LINE__).ok())                                 \
    return CRYO_CONCAT(_res_, __LINE__).status();                         \
  lhs = std::move(CRYO_CONCAT(_res_, __LINE__)).value()
