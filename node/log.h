/*
 * log.h - the agent's one logging module: one line per event on stderr, with
 * a level and a stable tag (PM-CLIENT-BAD-FRAME) operators can grep and alert
 * on. Text or JSON lines. Nothing ever goes to stdout.
 */
#ifndef PM_LOG_H
#define PM_LOG_H

enum pm_log_level { PM_LOG_ERROR = 0, PM_LOG_WARN = 1, PM_LOG_INFO = 2, PM_LOG_DEBUG = 3 };
enum pm_log_format { PM_LOG_TEXT = 0, PM_LOG_JSON = 1 };

/* Sets the level, the format and the node name put on every line. */
void pm_log_setup(int level, int format, const char *node);
/* Whether a message at this level would be written (skip costly formatting). */
int pm_log_enabled(int level);
/* Writes one event line. id is the promise id it concerns, or NULL. */
void pm_log(int level, const char *tag, const char *id, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define pm_log_error(tag, ...) pm_log(PM_LOG_ERROR, tag, NULL, __VA_ARGS__)
#define pm_log_warn(tag, ...) pm_log(PM_LOG_WARN, tag, NULL, __VA_ARGS__)
#define pm_log_info(tag, ...) pm_log(PM_LOG_INFO, tag, NULL, __VA_ARGS__)
#define pm_log_debug(tag, ...)                                                                     \
    do {                                                                                           \
        if (pm_log_enabled(PM_LOG_DEBUG))                                                          \
            pm_log(PM_LOG_DEBUG, tag, NULL, __VA_ARGS__);                                          \
    } while (0)

#endif
