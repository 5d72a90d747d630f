/*
 * memnet.h - the mesh transport's seam: a network in memory that the
 * transport (transport.c) uses instead of ZeroMQ when one is current, so that
 * agents' meshes run in one process without sockets or threads, under a test
 * or the simulator. Endpoints are the strings the mesh uses ("tcp://A:P"):
 * a transport created while a memnet is current binds its endpoint in it;
 * a frame sent to an endpoint lands in that port's inbox, in order per
 * (sender, receiver) channel, like a DEALER-to-ROUTER channel. Links can be
 * cut one way or both, and frames lost at random (seeded). CURVE is not
 * modelled (the keys are ignored). Single-threaded, like the reactor.
 *
 * The current network is a "current context" like the clock (clock.h): it is
 * read once, when a transport is created.
 */
#ifndef PM_MEMNET_H
#define PM_MEMNET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct pm_memnet pm_memnet_t;
typedef struct pm_memnet_port pm_memnet_port_t;

/* A network without ports; seed drives random loss. Caller owns it; destroy
 * it after every transport bound in it. NULL if out of memory. */
pm_memnet_t *pm_memnet_new(uint64_t seed);
void pm_memnet_destroy(pm_memnet_t **self_p);

/* Makes net the one new transports bind in (NULL: ZeroMQ again). Returns the
 * previous one. Borrowed. */
pm_memnet_t *pm_memnet_use(pm_memnet_t *net);
pm_memnet_t *pm_memnet_current(void);

/* Cuts (cut true) or heals the link from -> to (one way; call twice for
 * both). Frames sent over a cut link are lost. */
int pm_memnet_cut(pm_memnet_t *self, const char *from, const char *to, bool cut);
/* Loses each frame with probability permille / 1000. */
void pm_memnet_loss(pm_memnet_t *self, uint32_t permille);

typedef struct pm_memnet_stats {
    uint64_t sent;      /* frames handed to the network */
    uint64_t delivered; /* put in an inbox */
    uint64_t lost;      /* cut link, random loss, or nobody bound there */
} pm_memnet_stats_t;
void pm_memnet_stats(const pm_memnet_t *self, pm_memnet_stats_t *out);

/* --- for transport.c ------------------------------------------------------ */

/* Binds endpoint; NULL (errno EADDRINUSE or ENOMEM) if it cannot. */
pm_memnet_port_t *pm_memnet_bind(pm_memnet_t *self, const char *endpoint);
/* Unbinds and frees the port and its inbox. Sets *port_p to NULL. */
void pm_memnet_unbind(pm_memnet_port_t **port_p);
/* Sends buf (len bytes, malloc'd; ownership passes here) from port to
 * endpoint. 0 even when the network loses it (as a socket would queue it). */
int pm_memnet_send(pm_memnet_port_t *port, const char *endpoint, uint8_t *buf, size_t len);
/* The next frame in port's inbox, or NULL. Caller frees. */
uint8_t *pm_memnet_recv(pm_memnet_port_t *port, size_t *len);
/* Frames waiting in port's inbox. */
size_t pm_memnet_waiting(const pm_memnet_port_t *port);
/* Frames waiting in every inbox (the simulator: is anything in flight). */
size_t pm_memnet_pending(const pm_memnet_t *self);

#endif
