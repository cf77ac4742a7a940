/* null_desc.c - a test plugin, broken on purpose: its entry point returns NULL. */
#include "echosrv/plugin.h"

ES_EXPORT const es_plugin *ES_PLUGIN_ENTRY(void)
{
    return NULL;
}
