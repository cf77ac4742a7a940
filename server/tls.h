/* tls.h - TLS contexts of the listeners (OpenSSL) and the text of OpenSSL's errors. */
#ifndef ES_TLS_H
#define ES_TLS_H

#include <stddef.h>

#include <openssl/ssl.h>

#include "config.h"

/* The largest plaintext of one TLS record: an SSL_read given this much
 * room returns a whole record and leaves nothing buffered in OpenSSL. */
#define TLS_RECORD_MAX 16384

/* A server context for listener l's TLS settings: its certificate chain
 * and key (checked to match), TLS 1.2 or 1.3 at least, the cipher list,
 * client verification against tls_ca, no renegotiation or compression,
 * partial writes, buffers released while a connection is idle. Returns the
 * context, or NULL with "FILE:LINE: message" in err. Main thread; the
 * context is then shared read-only by every worker. Free with SSL_CTX_free. */
SSL_CTX *tls_server_ctx(const config *cfg, const config_listener *l, char *err, size_t errlen);

/* OpenSSL's reasons queued on the calling thread, joined with "; " into
 * buf (or fallback if there are none), then cleared. Returns buf. Any
 * thread: OpenSSL's error queue is per thread. */
const char *tls_error_text(char *buf, size_t len, const char *fallback);

#endif
