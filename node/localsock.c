/*
 * localsock.c - the local socket's sends (localsock.h): the ZeroMQ ROUTER in
 * production, a capture for tests and the simulator.
 */
#include "localsock.h"

#include <stdlib.h>
#include <string.h>
#include <zmq.h>

static void
s_free_buf(void *data, void *hint)
{
    (void) hint;
    free(data);
}

static int
s_zmq_send(void *ctx, void *router, const uint8_t *rid, size_t rid_len, uint8_t *buf, size_t len)
{
    (void) ctx;
    zmq_msg_t body;
    zmq_msg_init_data(&body, buf, len, s_free_buf, NULL);
    if (zmq_send(router, rid, rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_msg_send(&body, router, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&body); /* frees buf */
        return -1;
    }
    return 0;
}

const pm_local_out_t pm_local_out_zmq = {.send = s_zmq_send, .ctx = NULL};
static const pm_local_out_t *s_cur = &pm_local_out_zmq;

const pm_local_out_t *
pm_local_out_use(const pm_local_out_t *o)
{
    const pm_local_out_t *prev = s_cur;
    s_cur = o ? o : &pm_local_out_zmq;
    return prev;
}

int
pm_local_send(void *router, const uint8_t *rid, size_t rid_len, uint8_t *buf, size_t len)
{
    return s_cur->send(s_cur->ctx, router, rid, rid_len, buf, len);
}

/* --- the capture ---------------------------------------------------------------- */

static int
s_capture_send(void *ctx, void *router, const uint8_t *rid, size_t rid_len, uint8_t *buf,
               size_t len)
{
    (void) router;
    pm_local_capture_t *c = ctx;
    pm_local_frame_t *f = c->refuse || rid_len > sizeof f->rid ? NULL : calloc(1, sizeof *f);
    if (!f) {
        free(buf);
        return -1;
    }
    memcpy(f->rid, rid, rid_len);
    f->rid_len = rid_len;
    f->buf = buf;
    f->len = len;
    if (c->tail)
        c->tail->next = f;
    else
        c->head = f;
    c->tail = f;
    c->count++;
    return 0;
}

void
pm_local_capture_init(pm_local_capture_t *c)
{
    memset(c, 0, sizeof *c);
    c->out.send = s_capture_send;
    c->out.ctx = c;
}

pm_local_frame_t *
pm_local_capture_take(pm_local_capture_t *c)
{
    pm_local_frame_t *f = c->head;
    if (!f)
        return NULL;
    c->head = f->next;
    if (!c->head)
        c->tail = NULL;
    c->count--;
    f->next = NULL;
    return f;
}

void
pm_local_frame_free(pm_local_frame_t *f)
{
    if (!f)
        return;
    free(f->buf);
    free(f);
}

void
pm_local_capture_clear(pm_local_capture_t *c)
{
    pm_local_frame_t *f;
    while ((f = pm_local_capture_take(c)))
        pm_local_frame_free(f);
}
