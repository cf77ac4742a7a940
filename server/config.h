/* config.h - the INI configuration: [server], [listener NAME] and the plugins' sections. */
#ifndef ES_CONFIG_H
#define ES_CONFIG_H

#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

#include "addr.h"
#include "cidr.h"
#include "echosrv/plugin.h"

/* A section other than [server], kept verbatim for its plugin. */
typedef struct config_section {
    char *name;
    int line;              /* line of its [header] */
    es_config_item *items; /* keys and values owned by the section */
    size_t count, cap;
} config_section;

/* The TLS keys, the same in [server] (defaults) and [listener NAME]. */
enum { TK_CERT, TK_KEY, TK_CA, TK_VERIFY_CLIENT, TK_CIPHERS, TK_MIN_VERSION, TK_COUNT };

/* tls_verify_client values. */
enum { TLS_VERIFY_OFF, TLS_VERIFY_OPTIONAL, TLS_VERIFY_ON };

/* A section's TLS settings. A listener serves TLS when its cert is set and
 * not empty; each key it does not set is taken from [server]. */
typedef struct config_tls {
    char *cert;            /* certificate chain file (PEM), resolved; NULL or "" = plain TCP */
    char *key;             /* private key file (PEM), resolved */
    char *ca;              /* CA file to verify client certificates, resolved */
    int verify_client;     /* TLS_VERIFY_* */
    char *ciphers;         /* OpenSSL cipher list for TLS 1.2, NULL = the built-in one */
    int min_version;       /* 12 or 13 (TLS 1.2, TLS 1.3) */
    int line[TK_COUNT];    /* line each value comes from, 0 = default */
} config_tls;

/* The PROXY protocol keys, the same in [server] (defaults) and [listener NAME]. */
enum { PK_PROTOCOL, PK_ALLOW, PK_COUNT };

/* A section's PROXY protocol settings: with on, every connection starts with a PROXY
 * header (v1 or v2) from a peer in allow, and the client it names is the peer. */
typedef struct config_proxy {
    int on;                /* proxy_protocol */
    cidr *allow;           /* proxy_allow: the proxies let in */
    size_t nallow;
    int line[PK_COUNT];    /* line each value comes from, 0 = default */
} config_proxy;

/* The keys of a [listener NAME] section. */
enum {
    LK_BIND, LK_PLUGIN, LK_BACKLOG, LK_MAX_CONNECTIONS, LK_IDLE_TIMEOUT, LK_MAX_MESSAGE,
    LK_ALLOW, LK_DENY, LK_SOCKET_MODE, LK_READ_TIMEOUT, LK_COUNT
};

/* One listener: a [listener NAME] section with the [server] values it did
 * not set filled in, or, in a file without such sections, the one listener
 * [server] defines (named "default"). */
typedef struct config_listener {
    char *name;            /* NAME of [listener NAME] */
    int line;              /* line of its header, 0 for the implicit one */
    char *bind;            /* bind as written */
    addr *binds;           /* parsed bind list */
    size_t nbinds;
    char *plugin;          /* plugin as written (its own or [server]'s) */
    char *plugin_path;     /* the file to load */
    int plugin_line;       /* line of its plugin key, else [server]'s plugin_line */
    long backlog;
    long max_connections;  /* open connections of this listener */
    long idle_timeout;     /* seconds, 0 = never */
    long read_timeout;     /* seconds from a message's first byte to its end, 0 = no limit */
    size_t max_message;
    cidr *allow;           /* peers let in; none: every peer (unless denied) */
    size_t nallow;
    cidr *deny;            /* peers refused, checked first */
    size_t ndeny;
    long socket_mode;      /* mode of its unix socket files, -1 = leave to the umask */
    config_tls tls;
    config_proxy proxy;
    int seen[LK_COUNT];    /* line of each key the section sets, 0 if inherited */
} config_listener;

typedef struct config {
    char *path;            /* the file as given */
    char *dir;             /* its directory: relative paths resolve here */
    char *bind;            /* bind as written */
    addr *binds;           /* parsed bind list */
    size_t nbinds;
    long threads;          /* 0 in the file means one per CPU; resolved here */
    char *plugin;          /* plugin as written: a name or a path */
    char *plugin_dir;      /* resolved against dir */
    char *plugin_path;     /* the file to load */
    long backlog;
    long max_connections;
    long idle_timeout;     /* seconds, 0 = never */
    long read_timeout;     /* seconds from a message's first byte to its end, 0 = no limit */
    size_t max_message;    /* bytes of one message, separator included */
    cidr *allow;           /* the listeners' default allow list */
    size_t nallow;
    cidr *deny;            /* the listeners' default deny list */
    size_t ndeny;
    long socket_mode;      /* the listeners' default, -1 = unset */
    long shutdown_timeout; /* seconds */
    config_tls tls;        /* the listeners' defaults */
    long tls_handshake_timeout; /* seconds a TLS handshake may take */
    config_proxy proxy;    /* the listeners' defaults */
    long proxy_timeout;    /* seconds a PROXY header may take to arrive */
    int log_level;
    int log_target;        /* LOG_TARGET_STDERR or LOG_TARGET_SYSLOG */
    int io;                /* IO_AUTO, IO_EPOLL or IO_URING: the workers' I/O back end */
    int plugin_line;       /* line of `plugin =`, or 0 when defaulted */
    char *user;            /* user as written, NULL when unset (keep the starting user) */
    char *group;           /* group as written, NULL: the user's primary group */
    int user_line;         /* line of `user =`, 0 when unset */
    int group_line;        /* line of `group =`, 0 when unset */
    uid_t uid;             /* the user, resolved at load time (valid when user != NULL) */
    gid_t gid;             /* the group, or the user's primary group */
    char *user_name;       /* the user's name in the user database, for its supplementary
                              groups; NULL for a numeric uid without an entry */
    config_section *sections;  /* every section but [server], [listener]s included */
    size_t nsections;
    config_listener *listeners; /* at least one after a successful load */
    size_t nlisteners;
    int declared_listeners;     /* the file has [listener NAME] sections */
} config;

/* Fill cfg with the defaults and then the settings of the INI file at path.
 * Returns 0, or -1 with "FILE:LINE: message" (or "FILE: message") in err;
 * either way release cfg with config_free(). Main thread. */
int config_load(config *cfg, const char *path, char *err, size_t errlen);

/* config_load on an open stream (read to its end, not closed), with path as
 * the name in messages and the base of relative paths. Returns 0 or -1 as
 * config_load. Main thread; also the entry of tests/fuzz/fuzz_ini.c. */
int config_load_stream(config *cfg, FILE *fp, const char *path, char *err, size_t errlen);

/* Check that every section is [server], a [listener NAME] or named after
 * one of the n loaded plugins (their descriptor names). Returns 0, or -1
 * with "FILE:LINE: message" in err. Main thread. */
int config_check_sections(const config *cfg, const char *const *plugin_names, size_t n,
                          char *err, size_t errlen);

/* Whether a section name is a [listener NAME] header's (NAME not checked). */
int config_is_listener_section(const char *section);

/* The section named name, or NULL. */
const config_section *config_section_find(const config *cfg, const char *name);

/* Free everything cfg owns; cfg may then be loaded again. */
void config_free(config *cfg);

/* Make the relative unix socket paths among the n addresses of list
 * relative to dir (the INI file's directory), like every path in the file.
 * Returns 0, or -1 with a message in err (the path grows too long). */
int config_resolve_unix(const char *dir, addr *list, size_t n, char *err, size_t errlen);

/* Parse a byte size: digits with an optional K, M or G suffix (powers of
 * 1024). Returns 0 or -1. Exposed for the tests. */
int config_parse_size(const char *text, size_t *out);

/* The workers' I/O back ends: [server] io and echosrv --io. */
enum { IO_AUTO, IO_EPOLL, IO_URING };

/* Parse "auto", "epoll" or "io_uring" into *out (IO_*). Returns 0, or -1. */
int config_parse_io(const char *text, int *out);

#endif
