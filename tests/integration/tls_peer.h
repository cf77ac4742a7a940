/* tls_peer.h - a TLS (or plain) echo peer on 127.0.0.1 in a thread of its own, for client tests. */
#ifndef ECHOSRV_TESTS_TLS_PEER_H
#define ECHOSRV_TESTS_TLS_PEER_H

#include <stddef.h>

/* How the peer behaves. Zero it, then set what the test needs. */
struct tls_peer_opts {
    const char *cert_file;      /* the server's PEM certificate (chain); unused with plain */
    const char *key_file;       /* its key */
    const char *client_ca_file; /* non-NULL: require a client certificate issued by these CAs */
    int plain;                  /* no TLS at all: echo the raw bytes (a plaintext server) */
    int max_version;            /* 0, or e.g. TLS1_2_VERSION to cap the protocol */
    int close_after;            /* > 0: after that many replies, close_notify and close */
    int ticket_after_reply;     /* send a new session ticket after every reply (TLS 1.3) */
    int key_update_after_reply; /* ask for a key update after every reply (TLS 1.3) */
    int reset_on_data;          /* reset the connection (RST) when application data arrives */
};

/* Counters, as the peer saw things. */
struct tls_peer_stats {
    int accepted;               /* TCP connections accepted */
    int handshakes;             /* TLS handshakes completed */
    int failed;                 /* TLS handshakes failed */
    int replies;                /* replies written in full, and what follows each sent */
    int closed;                 /* connections the peer closed (for whatever reason) */
    char last_error[256];       /* OpenSSL's reason for the last failed handshake */
};

struct tls_peer;

/* Starts a peer that echoes every byte back (a reply ends at each "\r\n\r\n" it echoes), on
 * 127.0.0.1 with a port the kernel picks, serving up to 32 connections at once from one
 * thread (which blocks SIGPIPE for itself). Returns NULL with a message in err. Call from the
 * test's thread; free with tls_peer_stop. */
struct tls_peer *tls_peer_start(const struct tls_peer_opts *o, char *err, size_t errlen);

/* "127.0.0.1:PORT". Valid until tls_peer_stop. */
const char *tls_peer_addr(const struct tls_peer *p);

/* Sends close_notify on every connection whose handshake is done (one attempt) and closes
 * every connection. Returns once done. */
void tls_peer_close_all(struct tls_peer *p);

/* Waits up to timeout_ms until the peer has closed n connections in all (their last bytes,
 * close_notify included, are then in the client's socket). Returns 0, or -1 on timeout. */
int tls_peer_wait_closed(struct tls_peer *p, int n, int timeout_ms);

/* Waits up to timeout_ms until n replies in all are written, with what follows each (a
 * ticket, a key update). Returns 0, or -1 on timeout. */
int tls_peer_wait_replies(struct tls_peer *p, int n, int timeout_ms);

/* Waits up to timeout_ms (each) until at least ok handshakes have completed and failed have
 * failed, as the peer sees them: a TLS 1.3 client is done before its server. Returns 0, or
 * -1 on timeout. */
int tls_peer_wait_handshakes(struct tls_peer *p, int ok, int failed, int timeout_ms);

/* A consistent copy of the counters into out. */
void tls_peer_get_stats(struct tls_peer *p, struct tls_peer_stats *out);

/* Stops the thread, closes everything, frees p (NULL is ok). */
void tls_peer_stop(struct tls_peer *p);

#endif
