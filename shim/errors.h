// How the shim reports a bad argument. torch's stable ABI turns every C++ exception into a Python
// RuntimeError, so an argument error carries its Python type as the first word of the message
// ("ValueError: ..." or "TypeError: ..."); pixcon's Python wrappers raise that type with the rest
// of the message, and a direct caller of torch.ops.pixcon.* still reads which kind it was. No
// source location goes into a message: it names the op and the argument.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

#include "pixcon/pixcon.h"

namespace pixcon_shim {

enum class ErrorKind { Value, Type, Internal };

template <class... Parts>
[[noreturn]] void fail(ErrorKind kind, const Parts&... parts) {
  std::ostringstream message;
  if (kind == ErrorKind::Value) message << "ValueError: ";
  if (kind == ErrorKind::Type) message << "TypeError: ";
  (message << ... << parts);
  throw std::runtime_error(message.str());
}

template <class... Parts>
void require(bool ok, ErrorKind kind, const Parts&... parts) {
  if (!ok) fail(kind, parts...);
}

// A C API status: argument errors (with the C API's message naming the argument) are ValueErrors;
// anything else is an internal error of the op.
inline void check_status(const char* op, pixcon_status status, const char* message) {
  if (status == PIXCON_OK) return;
  const bool has_message = message != nullptr && message[0] != '\0';
  if (status == PIXCON_ERROR_INVALID_ARGUMENT) {
    fail(ErrorKind::Value, op, ": ", has_message ? message : "invalid argument");
  }
  if (has_message) fail(ErrorKind::Internal, op, ": ", message);
  fail(ErrorKind::Internal, op, ": internal error: the kernel returned status ",
       static_cast<int>(status));
}

}  // namespace pixcon_shim
