/* echosrv/client.h - libechoclient: a client of the echo protocol with a connection pool.
 *
 * The C counterpart of pulsar's Echo(address, full_response=False,
 * pool_size=10): a client owns a pool of connections to one server address
 * and sends messages over it, each followed by the separator; the reply is
 * the bytes the server wrote back up to the separator.
 *
 * Threads: every function may be called from any thread, concurrently. The
 * client runs one I/O thread of its own (an epoll loop) that owns the
 * sockets; callbacks given to es_future_on_done run on that thread and must
 * not block (they may submit further requests).
 *
 * Errors: functions that can fail return 0 or a negative errno value
 * (-ETIMEDOUT, -ECONNREFUSED, -ECONNRESET, -EPIPE, -ENOMEM, -EINVAL, ...)
 * and, where they take one, write a human message into err.
 *
 * TLS (option tls): the connection attempt includes the handshake, bounded
 * by connect_timeout_ms (-ETIMEDOUT). A failed handshake fails the request
 * that waited for the connection with -EPROTO (or the socket's errno, or
 * -ECONNRESET if the server closed) and a message that carries OpenSSL's
 * reason, e.g. "certificate verify failed (unable to get local issuer
 * certificate)"; it is not retried. A TLS 1.3 server may refuse a client
 * certificate only after the client has finished its handshake: then the
 * first request over that connection fails the same way. Session tickets
 * and key updates a server sends to an idle connection do not make it
 * stale; data, close_notify or EOF do. The library never raises SIGPIPE.
 */
#ifndef ECHOSRV_CLIENT_H
#define ECHOSRV_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ES_CLIENT_VERSION_MAJOR 1
#define ES_CLIENT_VERSION_MINOR 1

#if defined(__GNUC__)
#define ES_CLIENT_API __attribute__((visibility("default")))
#else
#define ES_CLIENT_API
#endif

typedef struct es_client es_client;
typedef struct es_future es_future;
typedef struct es_response es_response;

/* Options of es_client_new. Initialise with es_client_options_init, then
 * change what you need: fields may be added at the end in later versions. */
typedef struct es_client_options {
    size_t size;                /* sizeof(es_client_options), set by init */
    unsigned pool_size;         /* most connections open at once (10) */
    int connect_timeout_ms;     /* per connection attempt; 0 = none (5000) */
    int request_timeout_ms;     /* from send to complete reply; 0 = none (30000) */
    int full_response;          /* responses carry the connection, addresses, timings (0) */
    const uint8_t *separator;   /* NULL: "\r\n\r\n"; copied by es_client_new */
    size_t separator_len;
    size_t max_reply;           /* longest reply accepted, separator included (16 MiB) */
    /* Since 1.1: TLS (OpenSSL, TLS 1.2 at least). The strings are copied and
     * the files read by es_client_new, which fails naming the file and
     * OpenSSL's reason if one cannot be loaded or the key does not match. */
    int tls;                    /* connect with TLS (0); the other tls_ fields need it */
    int tls_insecure;           /* accept any server certificate, unverified (0) */
    const char *tls_ca_file;    /* PEM CA certificates that verify the server;
                                 * NULL: the system's default CA paths */
    const char *tls_cert_file;  /* PEM client certificate (chain) for mutual TLS; NULL: none */
    const char *tls_key_file;   /* its PEM private key; set exactly when tls_cert_file is */
    const char *tls_server_name; /* name sent as SNI and verified against the certificate
                                 * (an IP literal is matched as an address, without SNI);
                                 * NULL: the host of the address (none for unix:) */
} es_client_options;

/* Counters, as pulsar's test suite checks them. */
typedef struct es_client_stats {
    unsigned pool_size;          /* the configured bound */
    unsigned in_use;             /* connections carrying a request now */
    unsigned available;          /* open connections idle in the pool */
    uint64_t sessions;           /* connections ever opened */
    uint64_t requests_processed; /* requests that got their complete reply */
    unsigned waiting;            /* requests queued for a free connection */
} es_client_stats;

/* Timings of one request, in nanoseconds of CLOCK_MONOTONIC. */
typedef struct es_timings {
    uint64_t submitted;  /* es_client_submit was called */
    uint64_t sent;       /* the last byte of the request was handed to the kernel */
    uint64_t done;       /* the separator of the reply was read */
} es_timings;

ES_CLIENT_API void es_client_options_init(es_client_options *o);

/* A client for address (HOST:PORT, [IPv6]:PORT, :PORT, unix:/path; :PORT
 * connects to 127.0.0.1). No connection is opened yet. Returns NULL with a message in err on a bad
 * address or option. Free with es_client_free. */
ES_CLIENT_API es_client *es_client_new(const char *address, const es_client_options *o, char *err,
                         size_t errlen);

/* Close every pooled connection and fail the requests still queued or in
 * flight with -ECANCELED. The client stays usable: the next request opens a
 * new connection. Returns once done, except when called from a callback
 * (on the I/O thread), where it takes effect when the callback returns. */
ES_CLIENT_API void es_client_close(es_client *c);

/* es_client_close, stop the I/O thread, free the client. Futures still
 * held stay valid until freed. May be called from a callback. */
ES_CLIENT_API void es_client_free(es_client *c);

ES_CLIENT_API void es_client_get_stats(es_client *c, es_client_stats *out);

/* Send msg (len bytes) and return a future of its reply. Requests beyond
 * pool_size wait for a free connection, in submission order. Returns NULL
 * only when out of memory; a bad message gives a future that has already
 * failed: -EINVAL if it contains the separator or ends with the separator's
 * beginning (the server would frame it differently), -EMSGSIZE if message
 * and separator exceed max_reply. The message is copied. Free the future
 * with es_future_free. */
ES_CLIENT_API es_future *es_client_submit(es_client *c, const void *msg, size_t len);

/* Submit n messages at once: they are queued together, in order, so the
 * pool sees them all before it hands out a connection (n requests over one
 * idle connection open the others they need, up to pool_size). out[i] gets
 * the future of msgs[i] (lens[i] bytes), as es_client_submit would return
 * it. Returns 0, or -ENOMEM with no future created. */
ES_CLIENT_API int es_client_submit_many(es_client *c, size_t n, const void *const msgs[],
                                        const size_t lens[], es_future *out[]);

/* Blocking call: submit and wait. On success *out is the response (free
 * with es_response_free) and 0 is returned. */
ES_CLIENT_API int es_client_call(es_client *c, const void *msg, size_t len, es_response **out, char *err,
                   size_t errlen);

/* Wait until f is done or timeout_ms passes (-1 = no limit). Returns 0 when
 * done, -ETIMEDOUT otherwise (the request goes on). */
ES_CLIENT_API int es_future_wait(es_future *f, int timeout_ms);

/* Non-zero once the future is done. */
ES_CLIENT_API int es_future_done(es_future *f);

/* Call cb(f, arg) once f is done: at once on the calling thread if it
 * already is, else on the client's I/O thread. One callback per future.
 * Returns 0, or -EBUSY if a callback was set already. */
ES_CLIENT_API int es_future_on_done(es_future *f, void (*cb)(es_future *f, void *arg), void *arg);

/* The outcome of a done future: 0 and the response in *out (ownership
 * passes to the caller; a second call yields NULL; with out == NULL the
 * response stays in the future), or the negative errno of the failure with
 * its message in err. -EAGAIN if not done yet. */
ES_CLIENT_API int es_future_result(es_future *f, es_response **out, char *err, size_t errlen);

/* Release f. If it is not done, the request goes on and its result is
 * dropped; a callback not yet run is not run. */
ES_CLIENT_API void es_future_free(es_future *f);

/* The reply: the bytes the server wrote back, separator excluded, followed
 * by a NUL byte not counted in *len. Valid until es_response_free. */
ES_CLIENT_API const uint8_t *es_response_data(const es_response *r, size_t *len);

/* With full_response: the number of the connection that carried the request
 * (1 for the first session opened, 2 for the next, ...), its local and peer
 * addresses as text, and the timings. Without: 0, NULL, NULL, and timings
 * of zero. */
ES_CLIENT_API uint64_t es_response_connection(const es_response *r);
ES_CLIENT_API const char *es_response_local(const es_response *r);
ES_CLIENT_API const char *es_response_peer(const es_response *r);
ES_CLIENT_API es_timings es_response_timings(const es_response *r);

/* With full_response: close the connection that carried this request (if it
 * is still open and idle, at once; if it carries another request, once that
 * is done). It is never handed out again. Returns 0, or -EINVAL without
 * full_response. */
ES_CLIENT_API int es_response_close_connection(es_response *r);

ES_CLIENT_API void es_response_free(es_response *r);

#ifdef __cplusplus
}
#endif

#endif /* ECHOSRV_CLIENT_H */
