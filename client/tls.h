/* tls.h - client-side TLS over non-blocking sockets: contexts, connections, error text. */
#ifndef ECHOSRV_CLIENT_TLS_H
#define ECHOSRV_CLIENT_TLS_H

#include <stddef.h>

#include <openssl/ssl.h>

/* What a client context is made of. The strings are only read by tls_ctx_new. */
typedef struct tls_config {
    const char *ca_file;        /* PEM CA certificates; NULL: the system's default paths */
    const char *cert_file;      /* PEM client certificate chain (mutual TLS); NULL: none */
    const char *key_file;       /* its PEM private key; set exactly when cert_file is */
    int insecure;               /* no verification of the server at all */
} tls_config;

/* A client SSL_CTX: TLS 1.2 at least, the server verified (unless insecure) against ca_file
 * or the default paths, partial writes and moving write buffers allowed. Returns NULL with a
 * message in err that names the file and OpenSSL's reason when a file cannot be loaded or the
 * key does not match the certificate. Any thread. The caller frees it with SSL_CTX_free. */
SSL_CTX *tls_ctx_new(const tls_config *cfg, char *err, size_t errlen);

/* The host part of a client address (HOST:PORT, [IPv6]:PORT, :PORT as 127.0.0.1) into out,
 * for SNI and verification. Returns 0, or -1 when the address names no host (unix:/path) or
 * out is too small. Any thread. */
int tls_host_of(const char *address, char *out, size_t cap);

/* A client SSL for the connected non-blocking socket fd, ready for SSL_connect. name (NULL:
 * none) is verified against the certificate: an IP literal as an address, anything else as
 * a DNS name, which is also sent as SNI. I/O goes through a BIO that sends with MSG_NOSIGNAL,
 * so a reset peer never raises SIGPIPE. The SSL does not own fd. Returns NULL with a message
 * in err. Any thread; the caller frees it with SSL_free (before closing fd). */
SSL *tls_conn_new(SSL_CTX *ctx, int fd, const char *name, char *err, size_t errlen);

/* After an SSL call on s returned ret <= 0 with SSL_get_error() == e (not WANT_READ nor
 * WANT_WRITE): writes why into out (OpenSSL's reason; for a failed verification also the
 * verify error, e.g. "certificate verify failed (unable to get local issuer certificate)")
 * and returns the negative errno that stands for it: the socket's errno, -ECONNRESET when
 * the peer closed (close_notify or EOF), -EPROTO otherwise. Clears the thread's OpenSSL
 * error queue. The thread that made the call. */
int tls_failure(SSL *s, int ret, int e, char *out, size_t outlen);

/* OpenSSL's reason for the oldest error queued on this thread ("no reason" if none) into
 * out; clears the queue. Returns out. */
const char *tls_reason(char *out, size_t outlen);

#endif
