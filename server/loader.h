/* loader.h - loads a protocol plugin with dlopen and checks its descriptor. */
#ifndef ES_LOADER_H
#define ES_LOADER_H

#include <stddef.h>
#include <sys/types.h>

#include "echosrv/plugin.h"

typedef struct plugin {
    void *handle;       /* from dlopen */
    char *path;
    es_plugin hooks;    /* the descriptor, fields past its size zeroed */
    void *instance;     /* what init stored */
    int initialized;    /* init succeeded: fini is owed */
} plugin;

/* Whether the file at path is safe to load into a server running as euid:
 * a regular file, owned by root or euid, neither group- nor world-writable,
 * in a directory that is not world-writable without the sticky bit (the
 * directory as named and, through symlinks, the real one). A file that does
 * not exist passes (dlopen reports it). Returns 0, or -1 with a message
 * naming the file, its mode or owner and why in err. Any thread. */
int loader_check_file(const char *path, uid_t euid, char *err, size_t errlen);

/* Open the shared object at path after loader_check_file() with geteuid(),
 * call its entry point and check the
 * descriptor: magic, ABI major (exact), size, name, required hooks. Returns
 * 0, or -1 with a message naming the file in err (p then owns nothing).
 * Main thread. */
int loader_open(plugin *p, const char *path, char *err, size_t errlen);

/* loader_open, mapping file (a private copy of path) instead of path;
 * messages and p->path name path. Main thread. */
int loader_open_from(plugin *p, const char *path, const char *file, char *err, size_t errlen);

/* Run the plugin's init with its INI section. Returns 0, or -1 with e
 * filled (e->item names the offending item, or -1). Main thread. */
int loader_init(plugin *p, const es_host *host, const es_config *cfg, es_error *e);

/* Run fini if init succeeded, then unload (kept mapped under
 * AddressSanitizer, so that leak reports keep their symbols). Main thread,
 * after every connection of the plugin is closed. */
void loader_close(plugin *p);

#endif
