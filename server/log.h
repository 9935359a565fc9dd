/*
 * log.h - level-filtered, one-line logs to stderr.
 *
 * srv_log(level, fmt, ...) checks the level before formatting anything (redis serverLog
 * style). Each line is "2026-11-27T19:40:01.123Z LEVEL message". Thread-safe: one write(2)
 * per line. Never call from a signal handler.
 */
#ifndef SRV_LOG_H
#define SRV_LOG_H

/* SRV_LOG_NOTICE is for the few lifecycle lines (listening, ready, stopping): always shown. */
enum {
    SRV_LOG_DEBUG = 0,
    SRV_LOG_INFO = 1,
    SRV_LOG_WARN = 2,
    SRV_LOG_ERROR = 3,
    SRV_LOG_NOTICE = 4
};

extern int srv_log_level;

/* Parses "debug", "info", "warn" (or "warning"), "error"; returns -1 when unknown. */
int srv_log_parse_level(const char *s);
const char *srv_log_level_name(int level);

void srv_log_write(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define srv_log(level, ...)                                                                        \
    do {                                                                                           \
        if ((level) >= srv_log_level) srv_log_write((level), __VA_ARGS__);                         \
    } while (0)

#endif
