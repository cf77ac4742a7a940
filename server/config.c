/* config.c - loads the INI file with inih, with line numbers for every key and error:
 * [server], [listener NAME] sections, and the plugins' sections kept verbatim. */
#define _GNU_SOURCE
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <ini.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"

#ifndef PLUGINDIR
#define PLUGINDIR "/usr/local/lib/echosrv"
#endif

#define MAX_LINE 4096
#define MAX_SECTION 50 /* inih cuts longer section names */

/* Parsing state shared by the line reader and the handler. */
typedef struct loader {
    config *cfg;
    FILE *fp;
    char *line;       /* getline buffer */
    size_t line_cap;
    int lineno;       /* line most recently handed to inih */
    int section_line; /* line of the current [section] */
    int err_line;     /* first error: line (0 none) */
    char err[512];
    int seen[32];     /* line of each [server] key already set */
} loader;

static void fail_at(loader *ld, int line, const char *fmt, ...) ES_PRINTF(3, 4);

static void fail_at(loader *ld, int line, const char *fmt, ...)
{
    if (ld->err_line != 0)
        return;
    ld->err_line = line;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ld->err, sizeof ld->err, fmt, ap);
    va_end(ap);
}

enum {
    K_BIND, K_THREADS, K_PLUGIN, K_PLUGIN_DIR, K_BACKLOG, K_MAX_CONNECTIONS,
    K_IDLE_TIMEOUT, K_MAX_MESSAGE, K_SHUTDOWN_TIMEOUT, K_LOG_LEVEL, K_ALLOW, K_DENY,
    K_SOCKET_MODE, K_TLS_HANDSHAKE_TIMEOUT, K_USER, K_GROUP, K_READ_TIMEOUT, K_LOG_TARGET,
    K_PROXY_TIMEOUT, K_IO,
    K_COUNT
};
_Static_assert(K_COUNT < 32, "loader.seen holds every [server] key and the section's line");

static const char *const server_keys[K_COUNT] = {
    "bind", "threads", "plugin", "plugin_dir", "backlog", "max_connections",
    "idle_timeout", "max_message", "shutdown_timeout", "log_level", "allow", "deny",
    "socket_mode", "tls_handshake_timeout", "user", "group", "read_timeout", "log_target",
    "proxy_timeout", "io",
};

/* The numeric [server] keys: range, what the number counts, and the field. */
static const struct num_key {
    int key;
    long lo, hi;
    const char *what;
    size_t field;
} num_keys[] = {
    {K_THREADS, 0, 1024, "a number", offsetof(config, threads)},
    {K_BACKLOG, 1, 65535, "a number", offsetof(config, backlog)},
    {K_MAX_CONNECTIONS, 1, 100000000, "a number", offsetof(config, max_connections)},
    {K_IDLE_TIMEOUT, 0, 31536000, "a number of seconds", offsetof(config, idle_timeout)},
    {K_SHUTDOWN_TIMEOUT, 0, 3600, "a number of seconds", offsetof(config, shutdown_timeout)},
    {K_TLS_HANDSHAKE_TIMEOUT, 1, 3600, "a number of seconds",
     offsetof(config, tls_handshake_timeout)},
    {K_READ_TIMEOUT, 0, 31536000, "a number of seconds", offsetof(config, read_timeout)},
    {K_PROXY_TIMEOUT, 1, 3600, "a number of seconds", offsetof(config, proxy_timeout)},
};

static int parse_long(const char *text, long lo, long hi, long *out)
{
    if (!isdigit((unsigned char)*text) && !(*text == '-' && isdigit((unsigned char)text[1])))
        return -1;
    errno = 0;
    char *end;
    long long v = strtoll(text, &end, 10);
    if (errno != 0 || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = (long)v;
    return 0;
}

int config_parse_io(const char *text, int *out)
{
    static const char *const names[] = {[IO_AUTO] = "auto", [IO_EPOLL] = "epoll",
                                        [IO_URING] = "io_uring"};
    for (int i = 0; i < (int)(sizeof names / sizeof names[0]); i++) {
        if (strcmp(text, names[i]) == 0) {
            *out = i;
            return 0;
        }
    }
    return -1;
}

int config_parse_size(const char *text, size_t *out)
{
    if (!isdigit((unsigned char)*text))
        return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno != 0)
        return -1;
    unsigned shift = 0;
    switch (*end) {
    case '\0': break;
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    default: return -1;
    }
    if (*end != '\0' || v > (SIZE_MAX >> shift))
        return -1;
    *out = (size_t)(v << shift);
    return 0;
}

static char *path_join(const char *dir, const char *rel)
{
    char *out = NULL;
    if (rel[0] == '/')
        return strdup(rel);
    if (asprintf(&out, "%s/%s", dir, rel) < 0)
        return NULL;
    return out;
}

/* See config.h. */
int config_resolve_unix(const char *dir, addr *list, size_t n, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        struct sockaddr_un *sun = (struct sockaddr_un *)&list[i].ss;
        if (sun->sun_family != AF_UNIX || sun->sun_path[0] == '/')
            continue;
        char path[sizeof sun->sun_path + 1];
        int len = snprintf(path, sizeof path, "%s/%s", dir, sun->sun_path);
        if (len < 0 || (size_t)len >= sizeof sun->sun_path) {
            snprintf(err, errlen, "unix socket path '%s/%s' longer than %zu bytes", dir,
                     sun->sun_path, sizeof sun->sun_path - 1);
            return -1;
        }
        memcpy(sun->sun_path, path, (size_t)len + 1);
        list[i].len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + (size_t)len + 1);
    }
    return 0;
}

static int set_string(char **field, const char *value)
{
    char *copy = strdup(value);
    if (copy == NULL)
        return -1;
    free(*field);
    *field = copy;
    return 0;
}

/* Parse a bind value into *bind, *binds and *nbinds (replacing them). */
static void parse_bind(loader *ld, const char *value, char **bind, addr **binds, size_t *nbinds)
{
    char err[256];
    addr *list;
    size_t n;
    if (addr_parse_list(value, &list, &n, err, sizeof err) < 0) {
        fail_at(ld, ld->lineno, "bind: %s", err);
        return;
    }
    if (config_resolve_unix(ld->cfg->dir, list, n, err, sizeof err) < 0) {
        free(list);
        fail_at(ld, ld->lineno, "bind: %s", err);
        return;
    }
    free(*binds);
    *binds = list;
    *nbinds = n;
    if (set_string(bind, value) < 0)
        fail_at(ld, ld->lineno, "out of memory");
}

/* Parse a max_message value into *out. */
static void parse_max_message(loader *ld, const char *value, size_t *out)
{
    size_t s;
    if (config_parse_size(value, &s) < 0 || s < 2 || s > ((size_t)1 << 32)) {
        fail_at(ld, ld->lineno,
                "max_message: '%s' is not a size from 2 to 4G (bytes, or with K, M, G)", value);
        return;
    }
    *out = s;
}

/* An allow or deny list of CIDR ranges into *list and *n (replacing them);
 * an empty value is an empty list. */
static void parse_cidrs(loader *ld, const char *key, const char *value, cidr **list, size_t *n)
{
    char err[256];
    cidr *l;
    size_t count;
    if (cidr_parse_list(value, &l, &count, err, sizeof err) < 0) {
        fail_at(ld, ld->lineno, "%s: %s", key, err);
        return;
    }
    free(*list);
    *list = l;
    *n = count;
}

/* A socket_mode value: octal permission bits, 0 to 0777. */
static void parse_socket_mode(loader *ld, const char *value, long *out)
{
    size_t len = strlen(value);
    if (len == 0 || len > 4 || value[strspn(value, "01234567")] != '\0' ||
        strtol(value, NULL, 8) > 0777) {
        fail_at(ld, ld->lineno, "socket_mode: '%s' is not an octal mode from 0000 to 0777",
                value);
        return;
    }
    *out = strtol(value, NULL, 8);
}

/* A plugin name or path: non-empty; remembers its line for later errors. */
static void parse_plugin(loader *ld, const char *value, char **field, int *line)
{
    if (*value == '\0') {
        fail_at(ld, ld->lineno, "plugin: empty value");
        return;
    }
    *line = ld->lineno;
    if (set_string(field, value) < 0)
        fail_at(ld, ld->lineno, "out of memory");
}

/* A numeric user or group id: digits only, below (id_t)-1. Returns 0 or -1. */
static int parse_id(const char *text, unsigned long *out)
{
    if (*text == '\0' || text[strspn(text, "0123456789")] != '\0' || strlen(text) > 10)
        return -1;
    unsigned long long v = strtoull(text, NULL, 10);
    if (v >= 0xFFFFFFFFull)
        return -1;
    *out = (unsigned long)v;
    return 0;
}

/* user: a name in the user database or a numeric uid, never root (uid 0):
 * running as root is what --allow-root is for. Resolved here, so that an
 * unknown user is reported at its line. */
static void parse_user(loader *ld, const char *value)
{
    config *cfg = ld->cfg;
    unsigned long id;
    errno = 0;
    const struct passwd *pw = NULL;
    if (parse_id(value, &id) == 0) {
        cfg->uid = (uid_t)id;
        pw = getpwuid(cfg->uid);
    } else if (*value == '\0') {
        fail_at(ld, ld->lineno, "user: empty value");
        return;
    } else {
        pw = getpwnam(value);
        if (pw == NULL) {
            fail_at(ld, ld->lineno, "user: unknown user '%s' (not in the user database%s%s)",
                    value, errno != 0 && errno != ENOENT ? ": " : "",
                    errno != 0 && errno != ENOENT ? strerror(errno) : "");
            return;
        }
        cfg->uid = pw->pw_uid;
    }
    if (cfg->uid == 0) {
        fail_at(ld, ld->lineno,
                "user: '%s' is root (uid 0), which keeps every privilege: name an unprivileged "
                "user, or leave user unset and pass --allow-root to run as root", value);
        return;
    }
    free(cfg->user_name);
    cfg->user_name = NULL;
    if (pw != NULL) {
        cfg->user_name = strdup(pw->pw_name);
        if (!cfg->group_line)
            cfg->gid = pw->pw_gid;
        if (cfg->user_name == NULL) {
            fail_at(ld, ld->lineno, "out of memory");
            return;
        }
    }
    cfg->user_line = ld->lineno;
    if (set_string(&cfg->user, value) < 0)
        fail_at(ld, ld->lineno, "out of memory");
}

/* group: a name in the group database or a numeric gid. */
static void parse_group(loader *ld, const char *value)
{
    config *cfg = ld->cfg;
    unsigned long id;
    if (parse_id(value, &id) == 0) {
        cfg->gid = (gid_t)id;
    } else if (*value == '\0') {
        fail_at(ld, ld->lineno, "group: empty value");
        return;
    } else {
        errno = 0;
        const struct group *gr = getgrnam(value);
        if (gr == NULL) {
            fail_at(ld, ld->lineno, "group: unknown group '%s' (not in the group database%s%s)",
                    value, errno != 0 && errno != ENOENT ? ": " : "",
                    errno != 0 && errno != ENOENT ? strerror(errno) : "");
            return;
        }
        cfg->gid = gr->gr_gid;
    }
    cfg->group_line = ld->lineno;
    if (set_string(&cfg->group, value) < 0)
        fail_at(ld, ld->lineno, "out of memory");
}

/* After the whole file: group needs user, and a uid without a user
 * database entry has no primary group to default to. Returns 0 or -1. */
static int privileges_finish(loader *ld)
{
    config *cfg = ld->cfg;
    if (cfg->group != NULL && cfg->user == NULL) {
        fail_at(ld, cfg->group_line, "group without user: set user too (group only applies "
                                     "when switching to that user)");
        return -1;
    }
    if (cfg->user != NULL && cfg->group == NULL && cfg->user_name == NULL) {
        fail_at(ld, cfg->user_line,
                "user: uid %s has no entry in the user database, hence no primary group: "
                "set group too", cfg->user);
        return -1;
    }
    return 0;
}

/* The index of key among names[0..n), recording its line in seen[]; or -1
 * with the error (unknown or duplicate key in section `where`) reported. */
static int key_index(loader *ld, const char *const names[], int n, int seen[], const char *key,
                     const char *where, const char *hint)
{
    int k;
    for (k = 0; k < n; k++)
        if (strcmp(key, names[k]) == 0)
            break;
    if (k == n) {
        fail_at(ld, ld->lineno, "unknown key '%s' in %s%s", key, where, hint ? hint : "");
        return -1;
    }
    if (seen[k] != 0) {
        fail_at(ld, ld->lineno, "duplicate key '%s' in %s (first set at line %d)", key, where,
                seen[k]);
        return -1;
    }
    seen[k] = ld->lineno;
    return k;
}

/* If key k is one of the numeric keys of tab, parse value into its field of
 * base (or report the error) and return 1; else return 0. */
static int num_key_set(loader *ld, const struct num_key *tab, size_t n, int k, const char *key,
                       const char *value, void *base)
{
    for (size_t i = 0; i < n; i++) {
        if (tab[i].key != k)
            continue;
        long v;
        if (parse_long(value, tab[i].lo, tab[i].hi, &v) < 0)
            fail_at(ld, ld->lineno, "%s: '%s' is not %s from %ld to %ld", key, value,
                    tab[i].what, tab[i].lo, tab[i].hi);
        else
            *(long *)((char *)base + tab[i].field) = v;
        return 1;
    }
    return 0;
}

static const char *const tls_keys[TK_COUNT] = {
    "tls_cert", "tls_key", "tls_ca", "tls_verify_client", "tls_ciphers", "tls_min_version",
};

/* A TLS key of any section into t: returns 1 when key is one (value
 * parsed, or the error reported), 0 when it is not. */
static int tls_key_set(loader *ld, config_tls *t, const char *key, const char *value,
                       const char *where)
{
    int k;
    for (k = 0; k < TK_COUNT; k++)
        if (strcmp(key, tls_keys[k]) == 0)
            break;
    if (k == TK_COUNT)
        return 0;
    int line = ld->lineno;
    if (t->line[k] != 0) {
        fail_at(ld, line, "duplicate key '%s' in %s (first set at line %d)", key, where,
                t->line[k]);
        return 1;
    }
    t->line[k] = line;
    char **field = NULL;
    switch (k) {
    case TK_CERT: field = &t->cert; break;
    case TK_KEY: field = &t->key; break;
    case TK_CA: field = &t->ca; break;
    case TK_CIPHERS:
        if (*value == '\0') {
            fail_at(ld, line, "tls_ciphers: empty value");
            return 1;
        }
        if (set_string(&t->ciphers, value) < 0)
            fail_at(ld, line, "out of memory");
        return 1;
    case TK_VERIFY_CLIENT:
        if (strcmp(value, "off") == 0)
            t->verify_client = TLS_VERIFY_OFF;
        else if (strcmp(value, "optional") == 0)
            t->verify_client = TLS_VERIFY_OPTIONAL;
        else if (strcmp(value, "on") == 0)
            t->verify_client = TLS_VERIFY_ON;
        else
            fail_at(ld, line, "tls_verify_client: '%s' is not one of off, optional, on", value);
        return 1;
    case TK_MIN_VERSION:
        if (strcmp(value, "1.2") == 0)
            t->min_version = 12;
        else if (strcmp(value, "1.3") == 0)
            t->min_version = 13;
        else
            fail_at(ld, line, "tls_min_version: '%s' is not 1.2 or 1.3", value);
        return 1;
    }
    /* A file: relative to the INI file's directory; empty turns TLS off
     * (a listener that does not take [server]'s certificate). */
    char *p = *value == '\0' ? strdup("") : path_join(ld->cfg->dir, value);
    if (p == NULL) {
        fail_at(ld, line, "out of memory");
        return 1;
    }
    free(*field);
    *field = p;
    return 1;
}

static const char *const proxy_keys[PK_COUNT] = {"proxy_protocol", "proxy_allow"};

/* A PROXY protocol key of any section into p: returns 1 when key is one
 * (value parsed, or the error reported), 0 when it is not. */
static int proxy_key_set(loader *ld, config_proxy *p, const char *key, const char *value,
                         const char *where)
{
    int k;
    for (k = 0; k < PK_COUNT; k++)
        if (strcmp(key, proxy_keys[k]) == 0)
            break;
    if (k == PK_COUNT)
        return 0;
    if (p->line[k] != 0) {
        fail_at(ld, ld->lineno, "duplicate key '%s' in %s (first set at line %d)", key, where,
                p->line[k]);
        return 1;
    }
    p->line[k] = ld->lineno;
    if (k == PK_ALLOW) {
        parse_cidrs(ld, key, value, &p->allow, &p->nallow);
    } else if (strcmp(value, "on") == 0) {
        p->on = 1;
    } else if (strcmp(value, "off") == 0) {
        p->on = 0;
    } else {
        fail_at(ld, ld->lineno, "proxy_protocol: '%s' is not on or off", value);
    }
    return 1;
}

static void server_key(loader *ld, const char *key, const char *value)
{
    config *cfg = ld->cfg;
    int line = ld->lineno;
    if (tls_key_set(ld, &cfg->tls, key, value, "[server]"))
        return;
    if (proxy_key_set(ld, &cfg->proxy, key, value, "[server]"))
        return;
    int k = key_index(ld, server_keys, K_COUNT, ld->seen, key, "[server]", NULL);
    if (k < 0 || num_key_set(ld, num_keys, sizeof num_keys / sizeof num_keys[0], k, key, value,
                             cfg))
        return;

    switch (k) {
    case K_BIND:
        parse_bind(ld, value, &cfg->bind, &cfg->binds, &cfg->nbinds);
        return;
    case K_PLUGIN:
        parse_plugin(ld, value, &cfg->plugin, &cfg->plugin_line);
        return;
    case K_PLUGIN_DIR: {
        if (*value == '\0') {
            fail_at(ld, line, "plugin_dir: empty value");
            return;
        }
        char *p = path_join(cfg->dir, value);
        if (p == NULL) {
            fail_at(ld, line, "out of memory");
            return;
        }
        free(cfg->plugin_dir);
        cfg->plugin_dir = p;
        return;
    }
    case K_MAX_MESSAGE:
        parse_max_message(ld, value, &cfg->max_message);
        return;
    case K_ALLOW:
        parse_cidrs(ld, key, value, &cfg->allow, &cfg->nallow);
        return;
    case K_DENY:
        parse_cidrs(ld, key, value, &cfg->deny, &cfg->ndeny);
        return;
    case K_SOCKET_MODE:
        parse_socket_mode(ld, value, &cfg->socket_mode);
        return;
    case K_USER:
        parse_user(ld, value);
        return;
    case K_GROUP:
        parse_group(ld, value);
        return;
    case K_IO:
        if (config_parse_io(value, &cfg->io) < 0)
            fail_at(ld, line, "io: '%s' is not epoll, io_uring or auto", value);
        return;
    case K_LOG_TARGET:
        if (strcmp(value, "stderr") == 0)
            cfg->log_target = LOG_TARGET_STDERR;
        else if (strcmp(value, "syslog") == 0)
            cfg->log_target = LOG_TARGET_SYSLOG;
        else
            fail_at(ld, line, "log_target: '%s' is not stderr or syslog", value);
        return;
    case K_LOG_LEVEL: {
        int lv = log_level_parse(value);
        if (lv < 0) {
            fail_at(ld, line, "log_level: '%s' is not one of error, warn, info, debug", value);
            return;
        }
        cfg->log_level = lv;
        return;
    }
    }
}

static config_section *section_find(config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->nsections; i++)
        if (strcmp(cfg->sections[i].name, name) == 0)
            return &cfg->sections[i];
    return NULL;
}

const config_section *config_section_find(const config *cfg, const char *name)
{
    return section_find((config *)cfg, name);
}

static void plugin_key(loader *ld, const char *section, const char *key, const char *value)
{
    config_section *s = section_find(ld->cfg, section);
    if (s == NULL) {
        fail_at(ld, ld->lineno, "internal error: section [%s] not recorded", section);
        return;
    }
    for (size_t i = 0; i < s->count; i++) {
        if (strcmp(s->items[i].key, key) == 0) {
            fail_at(ld, ld->lineno, "duplicate key '%s' in [%s] (first set at line %d)", key,
                    section, s->items[i].line);
            return;
        }
    }
    if (s->count == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        es_config_item *items = realloc(s->items, cap * sizeof *items);
        if (items == NULL) {
            fail_at(ld, ld->lineno, "out of memory");
            return;
        }
        s->items = items;
        s->cap = cap;
    }
    char *k = strdup(key), *v = strdup(value);
    if (k == NULL || v == NULL) {
        free(k);
        free(v);
        fail_at(ld, ld->lineno, "out of memory");
        return;
    }
    s->items[s->count++] = (es_config_item){.key = k, .value = v, .line = ld->lineno};
}

static const char *const listener_keys[LK_COUNT] = {
    "bind", "plugin", "backlog", "max_connections", "idle_timeout", "max_message",
    "allow", "deny", "socket_mode", "read_timeout",
};

/* The numeric [listener NAME] keys, with the ranges of their [server] twins. */
static const struct num_key listener_num_keys[] = {
    {LK_BACKLOG, 1, 65535, "a number", offsetof(config_listener, backlog)},
    {LK_MAX_CONNECTIONS, 1, 100000000, "a number", offsetof(config_listener, max_connections)},
    {LK_IDLE_TIMEOUT, 0, 31536000, "a number of seconds", offsetof(config_listener, idle_timeout)},
    {LK_READ_TIMEOUT, 0, 31536000, "a number of seconds", offsetof(config_listener, read_timeout)},
};

int config_is_listener_section(const char *section)
{
    return strncmp(section, "listener", 8) == 0 &&
           (section[8] == '\0' || section[8] == ' ' || section[8] == '\t');
}

/* NAME in "listener NAME" (possibly empty or malformed). */
static const char *listener_name_of(const char *section)
{
    const char *p = section + 8;
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

static config_listener *listener_find(config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->nlisteners; i++)
        if (strcmp(cfg->listeners[i].name, name) == 0)
            return &cfg->listeners[i];
    return NULL;
}

static void listener_key(loader *ld, const char *section, const char *key, const char *value)
{
    const char *name = listener_name_of(section);
    config_listener *l = listener_find(ld->cfg, name);
    int line = ld->lineno;
    if (l == NULL) {
        fail_at(ld, line, "internal error: [%s] not recorded", section);
        return;
    }
    char where[MAX_SECTION + 16];
    snprintf(where, sizeof where, "[listener %s]", name);
    if (tls_key_set(ld, &l->tls, key, value, where))
        return;
    if (proxy_key_set(ld, &l->proxy, key, value, where))
        return;
    int k = key_index(ld, listener_keys, LK_COUNT, l->seen, key, where,
                      " (expected bind, plugin, backlog, max_connections, idle_timeout, "
                      "read_timeout, max_message, allow, deny, socket_mode, proxy_protocol, "
                      "proxy_allow or a tls_ key)");
    if (k < 0 || num_key_set(ld, listener_num_keys,
                             sizeof listener_num_keys / sizeof listener_num_keys[0], k, key,
                             value, l))
        return;
    switch (k) {
    case LK_BIND:
        parse_bind(ld, value, &l->bind, &l->binds, &l->nbinds);
        return;
    case LK_PLUGIN:
        parse_plugin(ld, value, &l->plugin, &l->plugin_line);
        return;
    case LK_MAX_MESSAGE:
        parse_max_message(ld, value, &l->max_message);
        return;
    case LK_ALLOW:
        parse_cidrs(ld, key, value, &l->allow, &l->nallow);
        return;
    case LK_DENY:
        parse_cidrs(ld, key, value, &l->deny, &l->ndeny);
        return;
    case LK_SOCKET_MODE:
        parse_socket_mode(ld, value, &l->socket_mode);
        return;
    }
}

/* inih handler: called for each key, before the next line is read. */
static int on_key(void *user, const char *section, const char *key, const char *value)
{
    loader *ld = user;
    char unquoted[MAX_LINE];
    size_t n = strlen(value);
    if (n >= 1 && value[0] == '"') {
        if (n < 2 || value[n - 1] != '"') {
            /* inih has already cut the value at " ;", quotes or not. */
            fail_at(ld, ld->lineno,
                    "%s: unterminated quote (note: ';' after a space starts a comment, "
                    "even inside quotes; write it as \\x3b)", key);
            return 0;
        }
        memcpy(unquoted, value + 1, n - 2);
        unquoted[n - 2] = '\0';
        value = unquoted;
    }
    if (*section == '\0')
        fail_at(ld, ld->lineno, "key '%s' outside of any section", key);
    else if (strcmp(section, "server") == 0)
        server_key(ld, key, value);
    else if (config_is_listener_section(section))
        listener_key(ld, section, key, value);
    else
        plugin_key(ld, section, key, value);
    return ld->err_line == 0;
}

/* Records a [section] header seen by the reader. */
static void on_section(loader *ld, const char *p)
{
    const char *end = strchr(p, ']');
    if (end == NULL)
        return; /* inih reports the syntax error */
    char name[MAX_SECTION];
    size_t n = (size_t)(end - p - 1);
    if (n == 0 || n >= sizeof name) {
        fail_at(ld, ld->lineno, n == 0 ? "empty section name"
                                       : "section name longer than %d characters",
                MAX_SECTION - 1);
        return;
    }
    const char *rest = end + 1;
    while (*rest == ' ' || *rest == '\t' || *rest == '\r' || *rest == '\n')
        rest++;
    if (*rest != '\0' && *rest != ';' && *rest != '#') {
        fail_at(ld, ld->lineno, "unexpected text after [%.*s]", (int)n, p + 1);
        return;
    }
    memcpy(name, p + 1, n);
    name[n] = '\0';
    if (strcmp(name, "server") == 0) {
        if (ld->seen[K_COUNT] != 0) {
            fail_at(ld, ld->lineno, "duplicate section [server] (first at line %d)",
                    ld->seen[K_COUNT]);
            return;
        }
        ld->seen[K_COUNT] = ld->lineno;
        return;
    }
    config *cfg = ld->cfg;
    const char *lname = NULL;
    if (config_is_listener_section(name)) {
        lname = listener_name_of(name);
        if (*lname == '\0') {
            fail_at(ld, ld->lineno, "[%s] needs a name: [listener NAME]", name);
            return;
        }
        if (lname[strspn(lname, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                "0123456789-_")] != '\0') {
            fail_at(ld, ld->lineno,
                    "bad listener name '%s': use letters, digits, '-' and '_'", lname);
            return;
        }
        const config_listener *dup = listener_find(cfg, lname);
        if (dup != NULL) {
            fail_at(ld, ld->lineno, "duplicate section [listener %s] (first at line %d)", lname,
                    dup->line);
            return;
        }
    }
    config_section *old = section_find(cfg, name);
    if (old != NULL) {
        fail_at(ld, ld->lineno, "duplicate section [%s] (first at line %d)", name, old->line);
        return;
    }
    if (lname != NULL) {
        config_listener *ls = realloc(cfg->listeners, (cfg->nlisteners + 1) * sizeof *ls);
        if (ls == NULL) {
            fail_at(ld, ld->lineno, "out of memory");
            return;
        }
        cfg->listeners = ls;
        ls[cfg->nlisteners] = (config_listener){.name = strdup(lname), .line = ld->lineno,
                                                .socket_mode = -1};
        if (ls[cfg->nlisteners].name == NULL) {
            fail_at(ld, ld->lineno, "out of memory");
            return;
        }
        cfg->nlisteners++;
        cfg->declared_listeners = 1;
    }
    config_section *v = realloc(cfg->sections, (cfg->nsections + 1) * sizeof *v);
    if (v == NULL) {
        fail_at(ld, ld->lineno, "out of memory");
        return;
    }
    cfg->sections = v;
    char *copy = strdup(name);
    if (copy == NULL) {
        fail_at(ld, ld->lineno, "out of memory");
        return;
    }
    v[cfg->nsections++] = (config_section){.name = copy, .line = ld->lineno};
}

/* inih reader: hands over one line at a time, counting lines, refusing lines
 * too long for inih's buffer (which would otherwise be cut silently), and
 * noting section headers (inih does not report empty ones). */
static char *read_line(char *str, int num, void *user)
{
    loader *ld = user;
    if (ld->err_line != 0)
        return NULL;
    ssize_t n = getline(&ld->line, &ld->line_cap, ld->fp);
    if (n < 0)
        return NULL;
    ld->lineno++;
    if (n >= num - 1 && !(n == num - 1 && ld->line[n - 1] == '\n')) {
        fail_at(ld, ld->lineno, "line longer than %d characters", num - 2);
        return NULL;
    }
    if (memchr(ld->line, '\0', (size_t)n) != NULL) {
        fail_at(ld, ld->lineno, "NUL byte in line");
        return NULL;
    }
    memcpy(str, ld->line, (size_t)n + 1);
    const char *p = ld->line;
    if (ld->lineno == 1 && (unsigned char)p[0] == 0xEF && (unsigned char)p[1] == 0xBB &&
        (unsigned char)p[2] == 0xBF)
        p += 3;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p == '[')
        on_section(ld, p);
    return str;
}

static void config_defaults(config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->threads = 0;
    cfg->backlog = 1024;
    cfg->max_connections = 10000;
    cfg->idle_timeout = 0;
    cfg->read_timeout = 0;
    cfg->max_message = (size_t)16 << 20;
    cfg->shutdown_timeout = 10;
    cfg->log_level = ES_LOG_INFO;
    cfg->socket_mode = -1;
    cfg->tls.min_version = 12;
    cfg->tls_handshake_timeout = 10;
    cfg->proxy_timeout = 5;
}

static void configure_inih(void)
{
#if HAVE_DECL_INI_MAX_LINE
    ini_max_line = MAX_LINE;
#endif
#if HAVE_DECL_INI_ALLOW_MULTILINE
    ini_allow_multiline = 0;
#endif
#if HAVE_DECL_INI_USE_STACK
    ini_use_stack = 0;
#endif
#if HAVE_DECL_INI_ALLOW_REALLOC
    ini_allow_realloc = 1;
#endif
#if HAVE_DECL_INI_INITIAL_ALLOC
    ini_initial_alloc = MAX_LINE; /* the reader's limit is the buffer it is given */
#endif
#if HAVE_DECL_INI_STOP_ON_FIRST_ERROR
    ini_stop_on_first_error = 1;  /* the first error is the one reported */
#endif
}

/* The file a plugin value names: a path (with '/') relative to the INI
 * file's directory, or NAME.so in plugin_dir. Caller frees; NULL when out
 * of memory. */
static char *plugin_path_of(const config *cfg, const char *plugin)
{
    char *out = NULL;
    if (strchr(plugin, '/') != NULL)
        return path_join(cfg->dir, plugin);
    if (asprintf(&out, "%s/%s.so", cfg->plugin_dir, plugin) < 0)
        return NULL;
    return out;
}

static void *memdup(const void *p, size_t n)
{
    void *q = malloc(n ? n : 1);
    if (q != NULL && n > 0)
        memcpy(q, p, n);
    return q;
}

/* A copy of a string setting (NULL stays NULL). Returns 0, or -1 when out of memory. */
static int dup_setting(char **dst, const char *src)
{
    if (src == NULL)
        return 0;
    *dst = strdup(src);
    return *dst == NULL ? -1 : 0;
}

/* Fill the TLS keys listener l did not set from def ([server]'s), then
 * check the result: a certificate needs its key, client verification
 * needs a CA, and TLS keys set for a listener without a certificate are
 * mistakes. own: the keys of def count as l's own (the implicit listener).
 * Returns 0, or -1 (ld->err_line set, or 0 when out of memory). */
static int tls_finish(loader *ld, config_listener *l, const config_tls *def, int own)
{
    config_tls *t = &l->tls;
    int mine[TK_COUNT];
    for (int k = 0; k < TK_COUNT; k++) {
        mine[k] = own ? def->line[k] != 0 : t->line[k] != 0;
        if (t->line[k] != 0)
            continue;
        t->line[k] = def->line[k];
        int rc = 0;
        switch (k) {
        case TK_CERT: rc = dup_setting(&t->cert, def->cert); break;
        case TK_KEY: rc = dup_setting(&t->key, def->key); break;
        case TK_CA: rc = dup_setting(&t->ca, def->ca); break;
        case TK_CIPHERS: rc = dup_setting(&t->ciphers, def->ciphers); break;
        case TK_VERIFY_CLIENT: t->verify_client = def->verify_client; break;
        case TK_MIN_VERSION: t->min_version = def->min_version; break;
        }
        if (rc < 0)
            return -1;
    }
    int on = t->cert != NULL && *t->cert != '\0';
    int has_key = t->key != NULL && *t->key != '\0';
    int has_ca = t->ca != NULL && *t->ca != '\0';
    if (!on) {
        for (int k = TK_KEY; k < TK_COUNT; k++) {
            int set = k == TK_KEY ? has_key : k == TK_CA ? has_ca : t->line[k] != 0;
            if (mine[k] && set) {
                fail_at(ld, t->line[k], "listener %s: %s is set but the listener has no tls_cert",
                        l->name, tls_keys[k]);
                return -1;
            }
        }
        return 0;
    }
    if (!has_key) {
        fail_at(ld, t->line[TK_KEY] ? t->line[TK_KEY] : t->line[TK_CERT],
                "listener %s: tls_cert needs tls_key (the certificate's private key)", l->name);
        return -1;
    }
    if (t->verify_client != TLS_VERIFY_OFF && !has_ca) {
        fail_at(ld, t->line[TK_VERIFY_CLIENT],
                "listener %s: tls_verify_client needs tls_ca (the CA that signs client "
                "certificates)", l->name);
        return -1;
    }
    if (has_ca && t->verify_client == TLS_VERIFY_OFF) {
        fail_at(ld, t->line[TK_CA],
                "listener %s: tls_ca is set but tls_verify_client is off: set "
                "tls_verify_client = on or optional", l->name);
        return -1;
    }
    return 0;
}

/* Fill the PROXY protocol keys listener l did not set from def ([server]'s),
 * then check them: proxy_protocol = on needs proxy_allow (who may send the
 * header), and a proxy_allow of l's own without proxy_protocol is a
 * mistake. own: def's keys count as l's own (the implicit listener).
 * Returns 0, or -1 (ld->err_line set, or 0 when out of memory). */
static int proxy_finish(loader *ld, config_listener *l, const config_proxy *def, int own)
{
    config_proxy *p = &l->proxy;
    int mine_allow = own ? def->line[PK_ALLOW] != 0 : p->line[PK_ALLOW] != 0;
    if (p->line[PK_PROTOCOL] == 0) {
        p->on = def->on;
        p->line[PK_PROTOCOL] = def->line[PK_PROTOCOL];
    }
    if (p->line[PK_ALLOW] == 0) {
        p->line[PK_ALLOW] = def->line[PK_ALLOW];
        if (def->nallow > 0) {
            p->allow = memdup(def->allow, def->nallow * sizeof *def->allow);
            if (p->allow == NULL)
                return -1;
            p->nallow = def->nallow;
        }
    }
    if (p->on && p->nallow == 0) {
        fail_at(ld, p->line[PK_PROTOCOL],
                "listener %s: proxy_protocol = on needs proxy_allow (the addresses of the "
                "proxies that may send the PROXY header)", l->name);
        return -1;
    }
    if (!p->on && mine_allow && p->nallow > 0) {
        fail_at(ld, p->line[PK_ALLOW],
                "listener %s: proxy_allow is set but proxy_protocol is off", l->name);
        return -1;
    }
    return 0;
}

/* After the whole file is read: refuse a [server] bind beside [listener]
 * sections and listeners without bind, then fill what each listener did
 * not set from [server]. Without [listener] sections, [server] defines the
 * one listener, named "default". Returns 0, or -1 (ld->err_line set, or 0
 * when out of memory). */
static int listeners_finish(loader *ld)
{
    config *cfg = ld->cfg;
    if (cfg->declared_listeners) {
        /* Errors in file order: the first one is reported. */
        int server_bind = ld->seen[K_BIND];
        for (size_t i = 0; i < cfg->nlisteners; i++) {
            const config_listener *l = &cfg->listeners[i];
            if (server_bind != 0 && server_bind < l->line)
                break;
            if (l->seen[LK_BIND] == 0) {
                fail_at(ld, l->line, "[listener %s] has no bind (required)", l->name);
                return -1;
            }
        }
        if (server_bind != 0) {
            fail_at(ld, server_bind,
                    "bind in [server] with [listener] sections present: move it into a "
                    "[listener NAME] section");
            return -1;
        }
    } else {
        cfg->listeners = calloc(1, sizeof *cfg->listeners);
        if (cfg->listeners == NULL)
            return -1;
        cfg->nlisteners = 1;
        config_listener *l = &cfg->listeners[0];
        l->name = strdup("default");
        l->bind = strdup(cfg->bind);
        l->binds = memdup(cfg->binds, cfg->nbinds * sizeof *cfg->binds);
        l->nbinds = cfg->nbinds;
        if (l->name == NULL || l->bind == NULL || l->binds == NULL)
            return -1;
    }
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        config_listener *l = &cfg->listeners[i];
        if (l->seen[LK_PLUGIN] == 0) {
            l->plugin = strdup(cfg->plugin);
            l->plugin_line = cfg->plugin_line;
            if (l->plugin == NULL)
                return -1;
        }
        l->plugin_path = plugin_path_of(cfg, l->plugin);
        if (l->plugin_path == NULL)
            return -1;
        if (l->seen[LK_BACKLOG] == 0)
            l->backlog = cfg->backlog;
        if (l->seen[LK_MAX_CONNECTIONS] == 0)
            l->max_connections = cfg->max_connections;
        if (l->seen[LK_IDLE_TIMEOUT] == 0)
            l->idle_timeout = cfg->idle_timeout;
        if (l->seen[LK_READ_TIMEOUT] == 0)
            l->read_timeout = cfg->read_timeout;
        if (l->seen[LK_MAX_MESSAGE] == 0)
            l->max_message = cfg->max_message;
        if (l->seen[LK_SOCKET_MODE] == 0)
            l->socket_mode = cfg->socket_mode;
        if (l->seen[LK_ALLOW] == 0 && cfg->nallow > 0) {
            l->allow = memdup(cfg->allow, cfg->nallow * sizeof *cfg->allow);
            l->nallow = cfg->nallow;
            if (l->allow == NULL)
                return -1;
        }
        if (l->seen[LK_DENY] == 0 && cfg->ndeny > 0) {
            l->deny = memdup(cfg->deny, cfg->ndeny * sizeof *cfg->deny);
            l->ndeny = cfg->ndeny;
            if (l->deny == NULL)
                return -1;
        }
        if (tls_finish(ld, l, &cfg->tls, !cfg->declared_listeners) < 0)
            return -1;
        if (proxy_finish(ld, l, &cfg->proxy, !cfg->declared_listeners) < 0)
            return -1;
    }
    return 0;
}

int config_load(config *cfg, const char *path, char *err, size_t errlen)
{
    FILE *fp = fopen(path, "re");
    if (fp == NULL) {
        int e = errno;
        config_defaults(cfg);
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(e));
        return -1;
    }
    int rc = config_load_stream(cfg, fp, path, err, errlen);
    fclose(fp);
    return rc;
}

int config_load_stream(config *cfg, FILE *fp, const char *path, char *err, size_t errlen)
{
    config_defaults(cfg);
    loader ld = {.cfg = cfg, .fp = fp};
    int rc = -1;

    configure_inih();
    cfg->path = strdup(path);
    char *slash = strrchr(path, '/');
    cfg->dir = slash == NULL ? strdup(".") : strndup(path, (size_t)(slash - path) + (slash == path));
    cfg->plugin = strdup("echo");
    cfg->plugin_dir = strdup(PLUGINDIR);
    cfg->bind = strdup("127.0.0.1:8060");
    if (!cfg->path || !cfg->dir || !cfg->plugin || !cfg->plugin_dir || !cfg->bind) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto out;
    }
    if (addr_parse_list(cfg->bind, &cfg->binds, &cfg->nbinds, err, errlen) < 0)
        goto out;

    int line = ini_parse_stream(read_line, &ld, on_key, &ld);
    if (ld.err_line != 0) {
        snprintf(err, errlen, "%s:%d: %s", path, ld.err_line, ld.err);
        goto out;
    }
    if (ferror(ld.fp)) {
        snprintf(err, errlen, "%s: read error: %s", path, strerror(errno));
        goto out;
    }
    if (line == -2) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto out;
    }
    if (line != 0) {
        snprintf(err, errlen, "%s:%d: syntax error: expected '[section]' or 'key = value'",
                 path, line);
        goto out;
    }

    if (cfg->threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        cfg->threads = n > 0 ? (n > 1024 ? 1024 : n) : 1;
    }
    cfg->plugin_path = plugin_path_of(cfg, cfg->plugin);
    if (cfg->plugin_path == NULL) {
        snprintf(err, errlen, "%s: out of memory", path);
        goto out;
    }
    if (privileges_finish(&ld) < 0) {
        snprintf(err, errlen, "%s:%d: %s", path, ld.err_line, ld.err);
        goto out;
    }
    if (listeners_finish(&ld) < 0) {
        if (ld.err_line != 0)
            snprintf(err, errlen, "%s:%d: %s", path, ld.err_line, ld.err);
        else
            snprintf(err, errlen, "%s: out of memory", path);
        goto out;
    }
    rc = 0;
out:
    free(ld.line);
    return rc;
}

int config_check_sections(const config *cfg, const char *const *plugin_names, size_t n,
                          char *err, size_t errlen)
{
    for (size_t i = 0; i < cfg->nsections; i++) {
        const config_section *s = &cfg->sections[i];
        if (config_is_listener_section(s->name) || strcmp(s->name, "admin") == 0)
            continue;
        size_t j;
        for (j = 0; j < n; j++)
            if (strcmp(s->name, plugin_names[j]) == 0)
                break;
        if (j < n)
            continue;
        char names[256] = "";
        size_t len = 0;
        for (j = 0; j < n && len < sizeof names; j++)
            len += (size_t)snprintf(names + len, sizeof names - len, "%s[%s]",
                                    j == 0 ? "" : j + 1 == n ? " or " : ", ", plugin_names[j]);
        snprintf(err, errlen,
                 "%s:%d: unknown section [%s] (expected [server], [listener NAME], [admin]%s%s)",
                 cfg->path, s->line, s->name, n > 0 ? " or a plugin's section: " : "", names);
        return -1;
    }
    return 0;
}

static void tls_free(config_tls *t)
{
    free(t->cert);
    free(t->key);
    free(t->ca);
    free(t->ciphers);
}

void config_free(config *cfg)
{
    for (size_t i = 0; i < cfg->nsections; i++) {
        config_section *s = &cfg->sections[i];
        for (size_t j = 0; j < s->count; j++) {
            free((char *)s->items[j].key);
            free((char *)s->items[j].value);
        }
        free(s->items);
        free(s->name);
    }
    free(cfg->sections);
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        config_listener *l = &cfg->listeners[i];
        free(l->name);
        free(l->bind);
        free(l->binds);
        free(l->plugin);
        free(l->plugin_path);
        free(l->allow);
        free(l->deny);
        free(l->proxy.allow);
        tls_free(&l->tls);
    }
    free(cfg->listeners);
    free(cfg->path);
    free(cfg->dir);
    free(cfg->bind);
    free(cfg->binds);
    free(cfg->plugin);
    free(cfg->plugin_dir);
    free(cfg->plugin_path);
    free(cfg->allow);
    free(cfg->deny);
    free(cfg->proxy.allow);
    tls_free(&cfg->tls);
    free(cfg->user);
    free(cfg->group);
    free(cfg->user_name);
    memset(cfg, 0, sizeof *cfg);
}
