/*
 * memnet.c - the network in memory behind the mesh transport's seam
 * (memnet.h): ports by endpoint, an inbox (FIFO) per port, cut links and
 * seeded random loss.
 */
#include "memnet.h"

#include "rand.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct s_frame {
    struct s_frame *next;
    uint8_t *buf;
    size_t len;
} s_frame_t;

struct pm_memnet_port {
    pm_memnet_t *net;
    char *endpoint;
    s_frame_t *head, *tail;
    size_t waiting;
};

typedef struct s_cut {
    char *from, *to;
} s_cut_t;

struct pm_memnet {
    pm_memnet_port_t **ports;
    size_t nports;
    s_cut_t *cuts;
    size_t ncuts;
    uint32_t loss_permille;
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
    free(p->endpoint);
    free(p);
    *port_p = NULL;
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
    if (!lose && net->loss_permille &&
        pm_rand_seeded_next(&net->rng) % 1000 < net->loss_permille)
        lose = 1;
    s_frame_t *f = lose ? NULL : malloc(sizeof *f);
    if (!f) {
        net->stats.lost++;
        free(buf);
        return 0;
    }
    *f = (s_frame_t){.next = NULL, .buf = buf, .len = len};
    if (to->tail)
        to->tail->next = f;
    else
        to->head = f;
    to->tail = f;
    to->waiting++;
    net->stats.delivered++;
    return 0;
}

uint8_t *
pm_memnet_recv(pm_memnet_port_t *port, size_t *len)
{
    s_frame_t *f = port->head;
    if (!f)
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

size_t
pm_memnet_waiting(const pm_memnet_port_t *port)
{
    return port->waiting;
}

size_t
pm_memnet_pending(const pm_memnet_t *self)
{
    size_t n = 0;
    for (size_t i = 0; i < self->nports; i++)
        n += self->ports[i]->waiting;
    return n;
}
