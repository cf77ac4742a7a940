/* admin.h - the [admin] listener: /metrics and /healthz over HTTP, served by a thread of its own. */
#ifndef ES_ADMIN_H
#define ES_ADMIN_H

#include <stddef.h>

#include "config.h"

struct server;
typedef struct admin admin;

/* A new admin listener for srv, off (no socket, no thread). Returns NULL
 * when out of memory. Main thread; free with admin_free(). */
admin *admin_new(struct server *srv);

/* Read the [admin] section of cfg (none: the admin listener is off) and,
 * when bind is set, open the socket it names unless the running one
 * already has that address. Nothing changes for the running listener
 * until admin_commit(); admin_abort() drops what was prepared. With
 * bind_it 0, only check the section (echosrv -t). Returns 0, or -1 with
 * "FILE:LINE: message" in err. Main thread. */
int admin_prepare(admin *a, const config *cfg, int bind_it, char *err, size_t errlen);

/* Forget what admin_prepare() made (the socket it opened is closed).
 * Main thread. */
void admin_abort(admin *a);

/* Apply what admin_prepare() made: start, restart (settings changed) or
 * stop the admin thread, close a socket no longer configured, and log
 * "admin listening on ADDR" while it serves. Returns 0, or -1 when the
 * thread cannot start (logged; the admin listener is then off). Main
 * thread, with the signals the main thread handles blocked. */
int admin_commit(admin *a);

/* Stop the thread, close the socket and free a. NULL is fine. Main
 * thread. */
void admin_free(admin *a);

#endif
