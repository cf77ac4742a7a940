/* fuzz.h - shared by the libFuzzer targets: a resolver that resolves nothing, a failure
 * macro, and a reader of fuzzer-chosen chunk sizes. Include in one .c per binary. */
#ifndef ES_FUZZ_H
#define ES_FUZZ_H

#include <netdb.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* Fails the run: libFuzzer then saves the input as a crash. */
#define FUZZ_CHECK(cond)                                                       \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                           \
        }                                                                      \
    } while (0)

/* Replaces libc's getaddrinfo in the fuzz binaries (the sanitizers' interceptor is a weak
 * symbol; this one is strong): a fuzzer must never send a DNS query, whose timeouts would
 * stall it and whose answers would make runs unrepeatable. Numeric addresses never get here
 * (addr_parse takes them with inet_pton first); every name fails to resolve. */
int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res)
{
    (void)node;
    (void)service;
    (void)hints;
    *res = NULL;
    return EAI_NONAME;
}

/* Input split as the fuzzer chooses: each piece is one length byte L, then
 * min(L % mod + 1, left) bytes. */
typedef struct fuzz_pieces {
    const uint8_t *p;
    size_t left;
} fuzz_pieces;

/* The next piece in (*piece, *len); 0 at the end of the input. */
static inline int fuzz_next_piece(fuzz_pieces *fp, size_t mod, const uint8_t **piece, size_t *len)
{
    if (fp->left == 0)
        return 0;
    size_t n = (size_t)fp->p[0] % mod + 1;
    fp->p++;
    fp->left--;
    if (n > fp->left)
        n = fp->left;
    *piece = fp->p;
    *len = n;
    fp->p += n;
    fp->left -= n;
    return 1;
}

#endif
