/* privs.c - running as root: refusing it without a user, and switching to user/group. */
#define _GNU_SOURCE
#include "privs.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "server.h"

int privs_check(const config *cfg, uid_t euid, int allow_root, char *err, size_t errlen)
{
    if (euid == 0 && cfg->user == NULL) {
        if (!allow_root) {
            snprintf(err, errlen,
                     "%s: refusing to run as root: no user to switch to. Set 'user = NAME' in "
                     "[server] (an unprivileged account, e.g. user = nobody), or pass "
                     "--allow-root to run as root anyway", cfg->path);
            return -1;
        }
        log_warn("running as root (--allow-root): plugins and connections are served with "
                 "every privilege; set user in [server] of %s to drop them", cfg->path);
        return 0;
    }
    if (euid != 0 && cfg->user != NULL && euid != cfg->uid)
        log_warn("%s:%d: user = %s%s%s ignored: echosrv was not started as root (it runs as "
                 "uid %u) and cannot switch users", cfg->path, cfg->user_line, cfg->user,
                 cfg->group != NULL ? ", group = " : "", cfg->group != NULL ? cfg->group : "",
                 (unsigned)euid);
    return 0;
}

/* Give a unix socket file to user:group. lchown: a symlink put in its place
 * is not followed. */
static int chown_socket(const config *cfg, const sock *l, char *err, size_t errlen)
{
    const char *path = ((const struct sockaddr_un *)&l->a.ss)->sun_path;
    if (lchown(path, cfg->uid, cfg->gid) < 0) {
        snprintf(err, errlen, "cannot give unix:%s to user %s: %s", path, cfg->user,
                 strerror(errno));
        return -1;
    }
    return 0;
}

/* After the switch: warn when the user cannot remove a socket file at exit
 * (no write and search permission on its directory). */
static void check_removable(const config *cfg, const sock *l)
{
    const char *path = ((const struct sockaddr_un *)&l->a.ss)->sun_path;
    char *dir = strdup(path);
    if (dir == NULL)
        return;
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        slash[1] = '\0';
    else if (slash != NULL)
        *slash = '\0';
    if (access(slash != NULL ? dir : ".", W_OK | X_OK) < 0)
        log_warn("unix:%s: user %s cannot write to %s, so the socket file stays there after "
                 "exit (the next start replaces it); a directory the user owns avoids this",
                 path, cfg->user, slash != NULL ? dir : ".");
    free(dir);
}

int privs_drop(const config *cfg, struct sock *const *ls, size_t n, char *err,
               size_t errlen)
{
    if (cfg->user == NULL || geteuid() != 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (ls[i]->a.ss.ss_family == AF_UNIX && !ls[i]->inherited &&
            chown_socket(cfg, ls[i], err, errlen) < 0)
            return -1;
    /* Groups first: setgroups and setgid need the privileges setuid drops. */
    int rc = cfg->user_name != NULL ? initgroups(cfg->user_name, cfg->gid)
                                    : setgroups(1, &cfg->gid);
    if (rc < 0) {
        snprintf(err, errlen, "cannot set the supplementary groups of user %s: %s", cfg->user,
                 strerror(errno));
        return -1;
    }
    if (setresgid(cfg->gid, cfg->gid, cfg->gid) < 0) {
        snprintf(err, errlen, "cannot switch to group %s (gid %u): %s",
                 cfg->group != NULL ? cfg->group : "of the user", (unsigned)cfg->gid,
                 strerror(errno));
        return -1;
    }
    if (setresuid(cfg->uid, cfg->uid, cfg->uid) < 0) {
        snprintf(err, errlen, "cannot switch to user %s (uid %u): %s", cfg->user,
                 (unsigned)cfg->uid, strerror(errno));
        return -1;
    }
    /* Verify: every id is the new one, and root cannot be regained. */
    uid_t ru, eu, su;
    gid_t rg, eg, sg;
    if (getresuid(&ru, &eu, &su) < 0 || getresgid(&rg, &eg, &sg) < 0 || ru != cfg->uid ||
        eu != cfg->uid || su != cfg->uid || rg != cfg->gid || eg != cfg->gid ||
        sg != cfg->gid) {
        snprintf(err, errlen, "switching to user %s left other ids behind (uid %u/%u/%u, "
                 "gid %u/%u/%u)", cfg->user, (unsigned)ru, (unsigned)eu, (unsigned)su,
                 (unsigned)rg, (unsigned)eg, (unsigned)sg);
        return -1;
    }
    if (setuid(0) == 0 || seteuid(0) == 0 || (cfg->gid != 0 && setgid(0) == 0)) {
        snprintf(err, errlen, "after switching to user %s, root could be regained: refusing "
                 "to serve", cfg->user);
        return -1;
    }
    int ngroups = getgroups(0, NULL);
    const struct group *gr = getgrgid(cfg->gid);
    log_info("switched to user %s (uid %u), group %s (gid %u), %d supplementary group%s",
             cfg->user_name != NULL ? cfg->user_name : cfg->user, (unsigned)cfg->uid,
             gr != NULL ? gr->gr_name : "-", (unsigned)cfg->gid, ngroups,
             ngroups == 1 ? "" : "s");
    for (size_t i = 0; i < n; i++)
        if (ls[i]->a.ss.ss_family == AF_UNIX && !ls[i]->inherited)
            check_removable(cfg, ls[i]);
    return 0;
}

void privs_describe(const config *cfg, char *out, size_t len)
{
    uid_t euid = geteuid();
    if (cfg->user == NULL) {
        snprintf(out, len, "stays uid %u%s", (unsigned)euid,
                 euid == 0 ? " (root, --allow-root)" : "");
        return;
    }
    if (euid == cfg->uid) {
        snprintf(out, len, "already user %s (uid %u)", cfg->user, (unsigned)euid);
        return;
    }
    if (euid != 0) {
        snprintf(out, len, "user %s ignored (not started as root: stays uid %u)", cfg->user,
                 (unsigned)euid);
        return;
    }
    const struct group *gr = getgrgid(cfg->gid);
    snprintf(out, len, "switches to user %s (uid %u), group %s (gid %u)",
             cfg->user_name != NULL ? cfg->user_name : cfg->user, (unsigned)cfg->uid,
             gr != NULL ? gr->gr_name : "-", (unsigned)cfg->gid);
}
