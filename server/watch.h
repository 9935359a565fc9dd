/*
 * watch.h - hot reload: inotify on the model directory.
 *
 * One thread watches <models> for IN_CLOSE_WRITE and IN_MOVED_TO (a file written or renamed
 * in: load or reload) and IN_DELETE and IN_MOVED_FROM (a file gone: unload after
 * unload-grace-ms, or never with -1). Events are debounced per file: the action runs once the
 * file has been quiet for watch-debounce-ms. A file shorter than its header says is still being
 * written: nothing is recorded and the next event retries it. Only <name>.cvy files with a
 * valid model name count; hidden and temporary names are ignored, so the atomic way to deploy
 * is to write ".name.cvy.tmp" (or any other name) in the same directory and rename it.
 * A queue overflow rescans the whole directory.
 */
#ifndef SRV_WATCH_H
#define SRV_WATCH_H

#include "config.h"
#include "registry.h"

typedef struct srv_watch srv_watch;

/* Starts the watcher thread. Returns NULL with a message in err on failure. */
srv_watch *srv_watch_start(srv_registry *reg, const srv_config *cfg, char *err, size_t errn);
/* Stops and joins the thread; pending actions are dropped. NULL is a no-op. */
void srv_watch_stop(srv_watch *w);

#endif
