/* activation.h - socket activation: the listening sockets the service manager passes ($LISTEN_FDS). */
#ifndef ES_ACTIVATION_H
#define ES_ACTIVATION_H

#include <stddef.h>

#include "server.h"

/* The first fd the service manager passes (SD_LISTEN_FDS_START). */
#define ACTIVATION_FD_START 3

/* Take the sockets the service manager passed: when $LISTEN_PID is our pid
 * and $LISTEN_FDS is N, fds 3 .. 3+N-1 (named by $LISTEN_FDNAMES, if it has
 * N names). Each gets CLOEXEC (first, all of them) and O_NONBLOCK, must be a
 * listening stream socket of AF_INET, AF_INET6 or AF_UNIX, and is appended to
 * srv->socks as an inherited sock (its address from getsockname(), backlog
 * -1 so that the first listener claiming it applies its own), which
 * gen_bind() hands to the listener whose address it is instead of binding.
 * LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES are removed from the
 * environment whatever they say; with another pid the fds are not touched.
 * Returns the number of sockets taken (0: none passed to us), or -1 with a
 * message in err (the socks taken stay in srv->socks, closed by
 * gen_cleanup()). Main thread, before any other thread runs (it changes
 * the environment). */
int activation_take(server *srv, char *err, size_t errlen);

/* Whether the inherited socket s is the configured address a: the same
 * family, address and port (a wildcard ":PORT" is [::]:PORT or
 * 0.0.0.0:PORT), or the same unix socket path. Main thread. */
int activation_fits(const sock *s, const addr *a);

/* Check that a listener of the configuration at path claimed every
 * inherited socket of srv (used != 0 after gen_bind()'s matching): a socket
 * no listener serves would queue connections that no one accepts, since
 * the service manager keeps it open. Returns 0, or -1 with "PATH: ..." in
 * err naming the first unclaimed one. Main thread. */
int activation_check_claimed(const server *srv, const char *path, char *err, size_t errlen);

#endif
