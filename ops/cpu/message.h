/* Error reporting of the C API's checks: the message names the argument, the status says what failed.
 * Internal to ops/ (shared by the CPU checks and the CUDA entry points). */
#ifndef PIXCON_MESSAGE_H
#define PIXCON_MESSAGE_H

#include <stddef.h>

#include "pixcon/pixcon.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Writes the printf-style message into message[size] (when message is not NULL) and returns
 * PIXCON_ERROR_INVALID_ARGUMENT. */
pixcon_status pixcon_invalid_argument(char *message, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#ifdef __cplusplus
}
#endif

#endif /* PIXCON_MESSAGE_H */
