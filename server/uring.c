/* uring.c - the workers' io_uring back end: multishot accept and receive into a provided-buffer ring, batched sends. */
#define _GNU_SOURCE
#include "uring.h"

#include <stdio.h>

int uring_available(char *why, size_t len)
{
    snprintf(why, len, "not built yet");
    return 0;
}
