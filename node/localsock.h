/*
 * localsock.h - the local socket's sends behind a seam: every frame the agent
 * sends to a function's client (a reply, a pushed invocation) leaves through
 * pm_local_send. Production sends it on the agent's ZeroMQ ROUTER
 * (pm_local_out_zmq); a test or the simulator installs another sender, e.g.
 * pm_local_capture_t, which keeps the frames for the test to read, so an
 * agent can be driven without a socket.
 *
 * A "current sender" like the clock (clock.h), switched by the simulator
 * before it steps an agent. Reactor thread only.
 */
#ifndef PM_LOCALSOCK_H
#define PM_LOCALSOCK_H

#include <stddef.h>
#include <stdint.h>

typedef struct pm_local_out {
    /* Sends buf (len bytes, malloc'd; ownership passes here) to the client
     * whose routing id is rid, on router. 0, or -1 if it was dropped
     * (client gone, its queue full). */
    int (*send)(void *ctx, void *router, const uint8_t *rid, size_t rid_len, uint8_t *buf,
                size_t len);
    void *ctx;
} pm_local_out_t;

/* zmq_send of the routing id, then the body, without blocking. */
extern const pm_local_out_t pm_local_out_zmq;

/* Installs o as the current sender (NULL: ZeroMQ); borrowed. Returns the
 * previous one. */
const pm_local_out_t *pm_local_out_use(const pm_local_out_t *o);

/* Sends through the current sender (see pm_local_out_t.send). */
int pm_local_send(void *router, const uint8_t *rid, size_t rid_len, uint8_t *buf, size_t len);

/* A sender that keeps every frame, in order, for a test to take. */
typedef struct pm_local_frame {
    struct pm_local_frame *next;
    uint8_t rid[256];
    size_t rid_len;
    uint8_t *buf; /* the frame's bytes (owned by the frame) */
    size_t len;
} pm_local_frame_t;

typedef struct pm_local_capture {
    pm_local_out_t out; /* install with pm_local_out_use(&c.out) */
    pm_local_frame_t *head, *tail;
    size_t count;
    int refuse; /* non-zero: every send is dropped (a client that went away) */
} pm_local_capture_t;

void pm_local_capture_init(pm_local_capture_t *c);
/* The oldest frame kept, or NULL; the caller frees it (pm_local_frame_free). */
pm_local_frame_t *pm_local_capture_take(pm_local_capture_t *c);
void pm_local_frame_free(pm_local_frame_t *f);
/* Frees every frame still kept. */
void pm_local_capture_clear(pm_local_capture_t *c);

#endif
