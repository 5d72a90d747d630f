/*
 * log.c - see log.h. Lines are assembled in one buffer and written with one
 * write(2), so lines from different threads never interleave.
 */
#include "log.h"

#include "clock.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int s_level = PM_LOG_INFO;
static int s_format = PM_LOG_TEXT;
static char s_node[64] = "";
static const char *s_names[] = {"error", "warn", "info", "debug"};

void
pm_log_setup(int level, int format, const char *node)
{
    s_level = level;
    s_format = format;
    snprintf(s_node, sizeof s_node, "%s", node ? node : "");
}

int
pm_log_enabled(int level)
{
    return level <= s_level;
}

void
pm_log(int level, const char *tag, const char *id, const char *fmt, ...)
{
    if (level > s_level)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    int64_t now = pm_real_ms(); /* the clock seam: a simulated agent logs its own time */
    time_t sec = (time_t) (now / 1000);
    struct tm tm;
    gmtime_r(&sec, &tm);
    char ts[40];
    size_t n = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + n, sizeof ts - n, ".%03ldZ", (long) (now % 1000));

    char line[1400];
    int len;
    if (s_format == PM_LOG_JSON) {
        json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:s}", "time", ts, "level", s_names[level],
                              "tag", tag, "node", s_node, "msg", msg);
        if (o && id)
            json_object_set_new(o, "id", json_string(id));
        char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
        len = snprintf(line, sizeof line, "%s\n", s ? s : "{}");
        free(s);
        json_decref(o);
    } else {
        len = snprintf(line, sizeof line, "%s %-5s %s%s%s %s\n", ts, s_names[level], tag,
                       id ? " id=" : "", id ? id : "", msg);
    }
    if (len > (int) sizeof line - 1)
        len = sizeof line - 1, line[len - 1] = '\n';
    ssize_t w = write(STDERR_FILENO, line, (size_t) len);
    (void) w;
}
