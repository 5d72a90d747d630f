/*
 * memnet.c - the network in memory behind the mesh transport's seam
 * (memnet.h): ports by endpoint, an inbox per port ordered by delivery
 * time (FIFO among frames due at the same time), cut links, seeded random
 * loss, delay, reconnects (reordering) and duplicates. Each port keeps its
 * outgoing links (a connection each: the time its last frame is due, which
 * the next frame on it may not precede); a port bound anew starts with none,
 * as a restarted sender's new connections do.
 */
#include "memnet.h"

#include "rand.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

typedef struct s_frame {
    struct s_frame *next;
    uint8_t *buf;
    size_t len;
    int64_t due;     /* network ms */
    uint64_t sender; /* the sending port's serial (reorder counting) */
} s_frame_t;

typedef struct s_link {
    char *to;
    int64_t last_due; /* the connection's last frame is due then */
} s_link_t;

struct pm_memnet_port {
    pm_memnet_t *net;
    char *endpoint;
    uint64_t serial;
    s_frame_t *head, *tail;
    size_t waiting; /* frames in the inbox, due or not */
    s_link_t *links;
    size_t nlinks;
};

typedef struct s_cut {
    char *from, *to;
} s_cut_t;

struct pm_memnet {
    pm_memnet_port_t **ports;
    size_t nports;
    s_cut_t *cuts;
    size_t ncuts;
    uint32_t loss_permille, reorder_permille, dup_permille;
    int64_t delay_max, now;
    uint64_t next_serial;
    pm_rand_seeded_t rng;
    pm_memnet_stats_t stats;
};

static pm_memnet_t *s_cur;

pm_memnet_t *
pm_memnet_new(uint64_t seed)
{
    pm_memnet_t *self = calloc(1, sizeof *self);
    if (self)
        pm_rand_seeded_init(&self->rng, seed);
    return self;
}

void
pm_memnet_destroy(pm_memnet_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    pm_memnet_t *self = *self_p;
    /* Ports still bound belong to transports; detach them so their unbind
     * does not reach a freed network. */
    for (size_t i = 0; i < self->nports; i++)
        self->ports[i]->net = NULL;
    for (size_t i = 0; i < self->ncuts; i++) {
        free(self->cuts[i].from);
        free(self->cuts[i].to);
    }
    free(self->cuts);
    free(self->ports);
    if (s_cur == self)
        s_cur = NULL;
    free(self);
    *self_p = NULL;
}

pm_memnet_t *
pm_memnet_use(pm_memnet_t *net)
{
    pm_memnet_t *prev = s_cur;
    s_cur = net;
    return prev;
}

pm_memnet_t *
pm_memnet_current(void)
{
    return s_cur;
}

static s_cut_t *
s_find_cut(pm_memnet_t *self, const char *from, const char *to)
{
    for (size_t i = 0; i < self->ncuts; i++)
        if (!strcmp(self->cuts[i].from, from) && !strcmp(self->cuts[i].to, to))
            return &self->cuts[i];
    return NULL;
}

int
pm_memnet_cut(pm_memnet_t *self, const char *from, const char *to, bool cut)
{
    s_cut_t *c = s_find_cut(self, from, to);
    if (!cut) {
        if (c) {
            free(c->from);
            free(c->to);
            *c = self->cuts[--self->ncuts];
        }
        return 0;
    }
    if (c)
        return 0;
    s_cut_t *cuts = realloc(self->cuts, (self->ncuts + 1) * sizeof *cuts);
    if (!cuts)
        return -1;
    self->cuts = cuts;
    char *f = strdup(from), *t = strdup(to);
    if (!f || !t) {
        free(f);
        free(t);
        return -1;
    }
    self->cuts[self->ncuts++] = (s_cut_t){.from = f, .to = t};
    return 0;
}

void
pm_memnet_loss(pm_memnet_t *self, uint32_t permille)
{
    self->loss_permille = permille > 1000 ? 1000 : permille;
}

void
pm_memnet_set_now(pm_memnet_t *self, int64_t now_ms)
{
    if (now_ms > self->now)
        self->now = now_ms;
}

void
pm_memnet_delay(pm_memnet_t *self, int64_t max_ms)
{
    self->delay_max = max_ms < 0 ? 0 : max_ms;
}

void
pm_memnet_reorder(pm_memnet_t *self, uint32_t permille)
{
    self->reorder_permille = permille > 1000 ? 1000 : permille;
}

void
pm_memnet_dup(pm_memnet_t *self, uint32_t permille)
{
    self->dup_permille = permille > 1000 ? 1000 : permille;
}

int64_t
pm_memnet_next_due(const pm_memnet_t *self)
{
    int64_t t = INT64_MAX;
    for (size_t i = 0; i < self->nports; i++)
        if (self->ports[i]->head && self->ports[i]->head->due < t)
            t = self->ports[i]->head->due;
    return t;
}

void
pm_memnet_stats(const pm_memnet_t *self, pm_memnet_stats_t *out)
{
    *out = self->stats;
}

static pm_memnet_port_t *
s_port(pm_memnet_t *self, const char *endpoint)
{
    for (size_t i = 0; i < self->nports; i++)
        if (!strcmp(self->ports[i]->endpoint, endpoint))
            return self->ports[i];
    return NULL;
}

pm_memnet_port_t *
pm_memnet_bind(pm_memnet_t *self, const char *endpoint)
{
    if (s_port(self, endpoint)) {
        errno = EADDRINUSE;
        return NULL;
    }
    pm_memnet_port_t **ports = realloc(self->ports, (self->nports + 1) * sizeof *ports);
    if (!ports) {
        errno = ENOMEM;
        return NULL;
    }
    self->ports = ports;
    pm_memnet_port_t *p = calloc(1, sizeof *p);
    if (!p || !(p->endpoint = strdup(endpoint))) {
        free(p);
        errno = ENOMEM;
        return NULL;
    }
    p->net = self;
    p->serial = ++self->next_serial;
    self->ports[self->nports++] = p;
    return p;
}

void
pm_memnet_unbind(pm_memnet_port_t **port_p)
{
    if (!port_p || !*port_p)
        return;
    pm_memnet_port_t *p = *port_p;
    pm_memnet_t *net = p->net;
    for (size_t i = 0; net && i < net->nports; i++)
        if (net->ports[i] == p) {
            net->ports[i] = net->ports[--net->nports];
            break;
        }
    while (p->head) {
        s_frame_t *f = p->head;
        p->head = f->next;
        free(f->buf);
        free(f);
    }
    for (size_t i = 0; i < p->nlinks; i++)
        free(p->links[i].to);
    free(p->links);
    free(p->endpoint);
    free(p);
    *port_p = NULL;
}

/* The sender's connection to endpoint (made on first use); NULL: no memory. */
static s_link_t *
s_link(pm_memnet_port_t *port, const char *endpoint)
{
    for (size_t i = 0; i < port->nlinks; i++)
        if (!strcmp(port->links[i].to, endpoint))
            return &port->links[i];
    s_link_t *links = realloc(port->links, (port->nlinks + 1) * sizeof *links);
    if (!links)
        return NULL;
    port->links = links;
    char *to = strdup(endpoint);
    if (!to)
        return NULL;
    port->links[port->nlinks] = (s_link_t){.to = to, .last_due = 0};
    return &port->links[port->nlinks++];
}

/* Puts f in to's inbox by due time, after every frame due no later. */
static void
s_insert(pm_memnet_t *net, pm_memnet_port_t *to, s_frame_t *f)
{
    f->next = NULL;
    to->waiting++;
    if (!to->head || to->tail->due <= f->due) {
        if (to->tail)
            to->tail->next = f;
        else
            to->head = f;
        to->tail = f;
        return;
    }
    /* It overtakes: count it if a frame of its own sender is among those. */
    s_frame_t **pp = &to->head;
    while ((*pp)->due <= f->due)
        pp = &(*pp)->next;
    for (s_frame_t *g = *pp; g; g = g->next)
        if (g->sender == f->sender) {
            net->stats.reordered++;
            break;
        }
    f->next = *pp;
    *pp = f;
}

static uint64_t
s_draw(pm_memnet_t *net, uint64_t n)
{
    return n ? pm_rand_seeded_next(&net->rng) % n : 0;
}

int
pm_memnet_send(pm_memnet_port_t *port, const char *endpoint, uint8_t *buf, size_t len)
{
    pm_memnet_t *net = port->net;
    if (!net) {
        free(buf);
        return -1;
    }
    net->stats.sent++;
    pm_memnet_port_t *to = s_port(net, endpoint);
    int lose = !to || s_find_cut(net, port->endpoint, endpoint) != NULL;
    if (!lose && net->loss_permille && s_draw(net, 1000) < net->loss_permille)
        lose = 1;
    s_link_t *link = lose ? NULL : s_link(port, endpoint);
    s_frame_t *f = link ? malloc(sizeof *f) : NULL;
    if (!f) {
        net->stats.lost++;
        free(buf);
        return 0;
    }
    if (net->reorder_permille && s_draw(net, 1000) < net->reorder_permille) {
        link->last_due = 0; /* a new connection: its order starts again */
        net->stats.reconnects++;
    }
    int64_t late = net->delay_max ? (int64_t) s_draw(net, (uint64_t) net->delay_max + 1) : 0;
    int64_t due = net->now + late;
    if (due < link->last_due)
        due = link->last_due; /* one connection keeps its order */
    link->last_due = due;
    if (due > net->now)
        net->stats.delayed++;
    *f = (s_frame_t){.buf = buf, .len = len, .due = due, .sender = port->serial};
    /* The copy first (it may draw); the original then goes in. */
    s_frame_t *dup = NULL;
    if (net->dup_permille && s_draw(net, 1000) < net->dup_permille) {
        dup = malloc(sizeof *dup);
        uint8_t *copy = dup ? malloc(len ? len : 1) : NULL;
        if (copy) {
            memcpy(copy, buf, len);
            int64_t span = net->delay_max > 50 ? net->delay_max : 50;
            *dup = (s_frame_t){.buf = copy, .len = len,
                               .due = due + (int64_t) s_draw(net, (uint64_t) span + 1),
                               .sender = 0 /* another connection */};
        } else {
            free(dup);
            dup = NULL;
        }
    }
    s_insert(net, to, f);
    net->stats.delivered++;
    if (dup) {
        s_insert(net, to, dup);
        net->stats.duplicated++;
    }
    return 0;
}

uint8_t *
pm_memnet_recv(pm_memnet_port_t *port, size_t *len)
{
    s_frame_t *f = port->head;
    if (!f || (port->net && f->due > port->net->now))
        return NULL;
    port->head = f->next;
    if (!port->head)
        port->tail = NULL;
    port->waiting--;
    uint8_t *buf = f->buf;
    *len = f->len;
    free(f);
    return buf;
}

/* Frames due by now (the inbox is ordered by due time). */
static size_t
s_due(const pm_memnet_port_t *port, int64_t now)
{
    size_t n = 0;
    for (const s_frame_t *f = port->head; f && f->due <= now; f = f->next)
        n++;
    return n;
}

size_t
pm_memnet_waiting(const pm_memnet_port_t *port)
{
    if (!port->net)
        return port->waiting;
    return s_due(port, port->net->now);
}

size_t
pm_memnet_pending(const pm_memnet_t *self)
{
    size_t n = 0;
    for (size_t i = 0; i < self->nports; i++)
        if (self->ports[i]->head && self->ports[i]->head->due <= self->now)
            n += s_due(self->ports[i], self->now);
    return n;
}
