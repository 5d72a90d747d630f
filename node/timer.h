/*
 * timer.h - an indexed binary min-heap of deadlines. Objects embed a
 * pm_timer_t and the heap keeps pointers to it, so arming, re-arming and
 * cancelling are O(log n) and cost no allocation per timer.
 */
#ifndef PM_TIMER_H
#define PM_TIMER_H

#include <stddef.h>
#include <stdint.h>

typedef struct pm_timer {
    int64_t at;   /* deadline, milliseconds on whatever clock the owner uses */
    uint32_t idx; /* 1-based heap position; 0 when not armed */
} pm_timer_t;

typedef struct pm_timers pm_timers_t;

pm_timers_t *pm_timers_new(void);
/* Frees the heap only; the timers belong to their objects. */
void pm_timers_destroy(pm_timers_t **self_p);
/* Arms or re-arms t to fire at `at`. Returns -1 only when out of memory. */
int pm_timers_set(pm_timers_t *self, pm_timer_t *t, int64_t at);
/* Disarms t if armed. */
void pm_timers_cancel(pm_timers_t *self, pm_timer_t *t);
/* Earliest timer, or NULL if none. */
pm_timer_t *pm_timers_peek(const pm_timers_t *self);
/* Removes and returns the earliest timer if it is due at `now`, else NULL. */
pm_timer_t *pm_timers_pop_due(pm_timers_t *self, int64_t now);
size_t pm_timers_count(const pm_timers_t *self);

#define pm_container_of(ptr, type, member) ((type *) ((char *) (ptr) - offsetof(type, member)))

#endif
