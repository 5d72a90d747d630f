/*
 * timer.c - see timer.h. The heap array is 1-based: slot 0 is unused so that
 * idx == 0 can mean "not armed".
 */
#include "timer.h"

#include <stdlib.h>

struct pm_timers {
    pm_timer_t **heap;
    size_t n;
    size_t cap;
};

pm_timers_t *
pm_timers_new(void)
{
    return calloc(1, sizeof(pm_timers_t));
}

void
pm_timers_destroy(pm_timers_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    pm_timers_t *self = *self_p;
    for (size_t i = 1; i <= self->n; i++)
        self->heap[i]->idx = 0;
    free(self->heap);
    free(self);
    *self_p = NULL;
}

static void
s_place(pm_timers_t *self, pm_timer_t *t, size_t i)
{
    self->heap[i] = t;
    t->idx = (uint32_t) i;
}

static void
s_up(pm_timers_t *self, size_t i)
{
    pm_timer_t *t = self->heap[i];
    while (i > 1 && self->heap[i / 2]->at > t->at) {
        s_place(self, self->heap[i / 2], i);
        i /= 2;
    }
    s_place(self, t, i);
}

static void
s_down(pm_timers_t *self, size_t i)
{
    pm_timer_t *t = self->heap[i];
    for (;;) {
        size_t c = i * 2;
        if (c > self->n)
            break;
        if (c + 1 <= self->n && self->heap[c + 1]->at < self->heap[c]->at)
            c++;
        if (self->heap[c]->at >= t->at)
            break;
        s_place(self, self->heap[c], i);
        i = c;
    }
    s_place(self, t, i);
}

int
pm_timers_set(pm_timers_t *self, pm_timer_t *t, int64_t at)
{
    if (t->idx) {
        int64_t old = t->at;
        t->at = at;
        if (at < old)
            s_up(self, t->idx);
        else
            s_down(self, t->idx);
        return 0;
    }
    if (self->n + 1 >= self->cap) {
        size_t cap = self->cap ? self->cap * 2 : 64;
        pm_timer_t **h = realloc(self->heap, cap * sizeof *h);
        if (!h)
            return -1;
        self->heap = h;
        self->cap = cap;
    }
    t->at = at;
    self->n++;
    s_place(self, t, self->n);
    s_up(self, self->n);
    return 0;
}

void
pm_timers_cancel(pm_timers_t *self, pm_timer_t *t)
{
    if (!t->idx)
        return;
    size_t i = t->idx;
    t->idx = 0;
    pm_timer_t *last = self->heap[self->n--];
    if (last == t)
        return;
    s_place(self, last, i);
    s_up(self, i);
    s_down(self, last->idx);
}

pm_timer_t *
pm_timers_peek(const pm_timers_t *self)
{
    return self->n ? self->heap[1] : NULL;
}

pm_timer_t *
pm_timers_pop_due(pm_timers_t *self, int64_t now)
{
    pm_timer_t *t = pm_timers_peek(self);
    if (!t || t->at > now)
        return NULL;
    pm_timers_cancel(self, t);
    return t;
}

size_t
pm_timers_count(const pm_timers_t *self)
{
    return self->n;
}
