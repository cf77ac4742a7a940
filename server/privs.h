/* privs.h - running as root: refusing it without a user, and switching to user/group. */
#ifndef ES_PRIVS_H
#define ES_PRIVS_H

#include <stddef.h>
#include <sys/types.h>

#include "config.h"

struct sock;

/* Decide whether echosrv may go on as effective user euid (geteuid()).
 * Root with cfg->user unset is refused unless allow_root (--allow-root),
 * which logs a warning instead; not root with cfg->user set (and not that
 * user already) logs a warning that user/group are ignored. Returns 0, or
 * -1 with "FILE: message" (how to fix it) in err. Main thread, before the
 * plugins are loaded. */
int privs_check(const config *cfg, uid_t euid, int allow_root, char *err, size_t errlen);

/* When running as root with cfg->user set: give the n listeners' unix
 * socket files to user:group (so that socket_mode's owner and group bits
 * name them), then set the supplementary groups (initgroups, or only the
 * group for a uid without a user database entry), the gid and the uid (real,
 * effective and saved), and check that root cannot be regained. Warns when
 * a socket file's directory does not let the user remove the file at exit.
 * Does nothing otherwise. Returns 0, or -1 with a message in err (the
 * process may then hold a mix of ids: exit). Main thread, after the
 * listeners are bound and the plugins initialised, before any worker
 * thread exists. */
int privs_drop(const config *cfg, struct sock *const *ls, size_t n, char *err,
               size_t errlen);

/* Which user echosrv will serve as ("switches to user NAME (uid N), group
 * NAME (gid N)", "stays uid N", ...), as one line into out, for echosrv -t.
 * Main thread. */
void privs_describe(const config *cfg, char *out, size_t len);

#endif
