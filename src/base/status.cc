#include "base/status.h"

#include <cstring>

namespace cryo {

std::string Status::ToString() const {
  if (ok()) return "ok";
  if (err_ == 0) return msg_;
  return msg_ + ": " + std::strerror(err_) + " (errno " + std::to_string(err_) + ")";
}

Status& Status::Prefix(const std::string& context) {
  if (failed_) msg_ = context + ": " + msg_;
  return *this;
}

}  // namespace cryo
