/*
 * base.h - the agent's one policy for what it cannot recover from.
 *
 * Out of memory: the agent stops (PM-OOM, naming what it was allocating).
 * Continuing would mean dropping something already promised to a client or a
 * peer (a record a backup must hold, a continuation, a takeover), which is
 * worse than a restart: the WAL and the backups hold everything acknowledged,
 * and a restarted agent resumes from them.
 *
 * A broken invariant of our own (an epoch going down, a reply released before
 * its record is durable, a backup applying a record out of order, a second
 * settlement): the agent stops (PM-INVARIANT, naming it). These are checks
 * that stay on in release builds, unlike assert().
 *
 * Outside input (frames, config, syscalls) never comes here: it gets an error.
 */
#ifndef PM_BASE_H
#define PM_BASE_H

#include <stddef.h>

/* Logs PM-OOM naming `what` and stops the process. */
void pm_oom(const char *what) __attribute__((noreturn));
/* Logs PM-INVARIANT naming the invariant and stops the process. */
void pm_invariant_failed(const char *invariant, const char *file, int line)
    __attribute__((noreturn));

/* Checks an invariant of our own; stops the agent when it does not hold. */
#define PM_INVARIANT(cond, name)                                                                   \
    do {                                                                                           \
        if (__builtin_expect(!(cond), 0))                                                          \
            pm_invariant_failed(name, __FILE__, __LINE__);                                         \
    } while (0)

/* Allocations that never return NULL: they stop the agent instead (pm_oom).
 * `what` names the allocation for the log line. Caller owns the result. */
void *pm_xmalloc(size_t size, const char *what);
void *pm_xcalloc(size_t n, size_t size, const char *what);
void *pm_xrealloc(void *p, size_t size, const char *what);
char *pm_xstrdup(const char *s, const char *what);

#endif
