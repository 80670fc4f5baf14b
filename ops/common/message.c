/* pixcon_invalid_argument and pixcon_check_start (message.h). */
#include "message.h"

#include <stdarg.h>
#include <stdio.h>

pixcon_status pixcon_invalid_argument(char *message, size_t size, const char *fmt, ...) {
  if (message && size > 0) {
    va_list args;
    va_start(args, fmt);
    vsnprintf(message, size, fmt, args);
    va_end(args);
  }
  return PIXCON_ERROR_INVALID_ARGUMENT;
}

pixcon_status pixcon_check_start(const void *params, char *message, size_t size) {
  if (message && size > 0) message[0] = '\0';
  return params ? PIXCON_OK : pixcon_invalid_argument(message, size, "params is NULL");
}
