/* config.h - the INI configuration: [server] keys and the plugin's section. */
#ifndef ES_CONFIG_H
#define ES_CONFIG_H

#include <stddef.h>

#include "addr.h"
#include "echosrv/plugin.h"

/* A section other than [server], kept verbatim for its plugin. */
typedef struct config_section {
    char *name;
    int line;              /* line of its [header] */
    es_config_item *items; /* keys and values owned by the section */
    size_t count, cap;
} config_section;

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
    size_t max_message;    /* bytes of one message, separator included */
    long shutdown_timeout; /* seconds */
    int log_level;
    int plugin_line;       /* line of `plugin =`, or 0 when defaulted */
    config_section *sections;
    size_t nsections;
} config;

/* Fill cfg with the defaults and then the settings of the INI file at path.
 * Returns 0, or -1 with "FILE:LINE: message" (or "FILE: message") in err;
 * either way release cfg with config_free(). Main thread. */
int config_load(config *cfg, const char *path, char *err, size_t errlen);

/* Check that every section but [server] is named after the plugin (its
 * descriptor name). Returns 0, or -1 with "FILE:LINE: message" in err. */
int config_check_sections(const config *cfg, const char *plugin_name, char *err, size_t errlen);

/* The section named name, or NULL. */
const config_section *config_section_find(const config *cfg, const char *name);

/* Free everything cfg owns; cfg may then be loaded again. */
void config_free(config *cfg);

/* Parse a byte size: digits with an optional K, M or G suffix (powers of
 * 1024). Returns 0 or -1. Exposed for the tests. */
int config_parse_size(const char *text, size_t *out);

#endif
