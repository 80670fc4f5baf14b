/* Error reporting of the C API's checks: the message names the argument, the status says what failed.
 * Internal to ops/ (shared by the checks of ops/common and the CUDA entry points). */
#ifndef PIXCON_COMMON_MESSAGE_H
#define PIXCON_COMMON_MESSAGE_H

#include <stddef.h>

#include "pixcon/pixcon.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Writes the printf-style message into message[size] (when message is not NULL) and returns
 * PIXCON_ERROR_INVALID_ARGUMENT. */
pixcon_status pixcon_invalid_argument(char *message, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* How every check starts, so that a passing check leaves an empty message: clears the message (when
 * there is room), then fails for NULL params. */
pixcon_status pixcon_check_start(const void *params, char *message, size_t size);

#ifdef __cplusplus
}
#endif

#endif /* PIXCON_COMMON_MESSAGE_H */
