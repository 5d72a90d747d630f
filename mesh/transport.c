/*
 * transport.c - see transport.h.
 */
#include "transport.h"

#include "log.h"
#include "memnet.h"

#include <czmq.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

/* Frames queued per peer before sends are dropped: a peer that is suspect
 * keeps its requests queued until the verdict; beyond this it is a flood. */
#define S_PEER_HWM 100000
/* Reconnect quickly: a restarted peer should get its queue within ~100 ms. */
#define S_RECONNECT_MS 100
/* A connection whose sent data has gone unacknowledged this long is dropped
 * and made again (TCP_USER_TIMEOUT), and a connect that hangs is given up
 * after S_CONNECT_TIMEOUT_MS and tried again. Without them, across a split
 * TCP backs its retransmissions off (0.2, 0.4, ... 3.2 s): after the heal a
 * peer's frames, subscription resends included, arrived seconds late (chaos
 * partition run, an await that missed its settle); now a fresh connection
 * comes up within about a second. What was queued and not yet written stays
 * queued for it; what was in flight on the dead connection is lost, as on
 * any broken link (the protocol resends what matters). */
#define S_TCP_MAXRT_MS 1500
#define S_CONNECT_TIMEOUT_MS 750
/* On close, a moment for what is queued (the leave announcement) to go out;
 * channels to dead peers are dropped with pm_transport_forget, not lingered. */
#define S_LINGER_MS 200

struct pm_transport {
    pm_memnet_port_t *mem; /* the seam: a port in the in-memory network, or NULL (ZeroMQ) */
    void *ctx;
    int curve;
    pm_mesh_keys_t keys;
    pm_auth_t *auth;
    void *router;
    int64_t max_frame;
    zhashx_t *peers; /* endpoint -> DEALER socket */
    pm_transport_stats_t stats;
};

static void
s_close_socket(void **item)
{
    zmq_close(*item);
    *item = NULL;
}

pm_transport_t *
pm_transport_new(void *ctx, const char *bind, int64_t max_frame, const pm_mesh_keys_t *keys)
{
    pm_transport_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    pm_memnet_t *net = pm_memnet_current();
    if (net) {
        self->mem = pm_memnet_bind(net, bind);
        if (!self->mem) {
            pm_log_error("PM-MESH-BIND", "cannot bind %s: %s", bind, strerror(errno));
            free(self);
            return NULL;
        }
        return self;
    }
    self->ctx = ctx;
    if (keys) {
        self->curve = 1;
        self->keys = *keys;
        self->auth = pm_auth_start(ctx, keys); /* before the server socket binds */
        if (!self->auth) {
            free(self);
            return NULL;
        }
    }
    self->max_frame = max_frame;
    self->peers = zhashx_new();
    zhashx_set_destructor(self->peers, s_close_socket);
    self->router = zmq_socket(ctx, ZMQ_ROUTER);
    int zero = 0, hwm = S_PEER_HWM;
    zmq_setsockopt(self->router, ZMQ_LINGER, &zero, sizeof zero);
    zmq_setsockopt(self->router, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(self->router, ZMQ_MAXMSGSIZE, &max_frame, sizeof max_frame);
    if (self->curve) {
        pm_auth_apply(self->router, &self->keys, 1);
        pm_auth_watch(self->auth, self->router);
    }
    if (zmq_bind(self->router, bind) < 0) {
        pm_log_error("PM-MESH-BIND", "cannot bind %s: %s", bind, zmq_strerror(errno));
        pm_transport_destroy(&self);
        return NULL;
    }
    return self;
}

void
pm_transport_destroy(pm_transport_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    pm_transport_t *self = *self_p;
    pm_memnet_unbind(&self->mem);
    zhashx_destroy(&self->peers);
    pm_auth_stop(&self->auth); /* stops watching the router before it closes */
    if (self->router)
        zmq_close(self->router);
    free(self);
    *self_p = NULL;
}

void *
pm_transport_socket(pm_transport_t *self)
{
    return self->router;
}

static void *
s_peer(pm_transport_t *self, const char *endpoint)
{
    void *sock = zhashx_lookup(self->peers, endpoint);
    if (sock)
        return sock;
    sock = zmq_socket(self->ctx, ZMQ_DEALER);
    if (!sock)
        return NULL;
    int linger = S_LINGER_MS, hwm = S_PEER_HWM, rc = S_RECONNECT_MS, maxrt = S_TCP_MAXRT_MS,
        cto = S_CONNECT_TIMEOUT_MS;
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(sock, ZMQ_RECONNECT_IVL, &rc, sizeof rc);
    zmq_setsockopt(sock, ZMQ_TCP_MAXRT, &maxrt, sizeof maxrt);
    zmq_setsockopt(sock, ZMQ_CONNECT_TIMEOUT, &cto, sizeof cto);
    if (self->curve)
        pm_auth_apply(sock, &self->keys, 0);
    if (zmq_connect(sock, endpoint) < 0) {
        pm_log_warn("PM-MESH-CONNECT", "cannot connect to %s: %s", endpoint,
                    zmq_strerror(errno));
        zmq_close(sock);
        return NULL;
    }
    zhashx_insert(self->peers, endpoint, sock);
    return sock;
}

static void
s_free_buf(void *data, void *hint)
{
    (void) hint;
    free(data);
}

int
pm_transport_send(pm_transport_t *self, const char *endpoint, uint8_t *buf, size_t len)
{
    if (self->mem) {
        if (pm_memnet_send(self->mem, endpoint, buf, len) != 0) {
            self->stats.dropped_out++;
            return -1;
        }
        self->stats.frames_out++;
        self->stats.bytes_out += len;
        return 0;
    }
    void *sock = s_peer(self, endpoint);
    if (!sock) {
        free(buf);
        self->stats.dropped_out++;
        return -1;
    }
    zmq_msg_t msg;
    zmq_msg_init_data(&msg, buf, len, s_free_buf, NULL);
    if (zmq_msg_send(&msg, sock, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&msg);
        self->stats.dropped_out++;
        return -1;
    }
    self->stats.frames_out++;
    self->stats.bytes_out += len;
    return 0;
}

uint8_t *
pm_transport_recv(pm_transport_t *self, size_t *len)
{
    if (self->mem) {
        uint8_t *buf = pm_memnet_recv(self->mem, len);
        if (buf) {
            self->stats.frames_in++;
            self->stats.bytes_in += *len;
        }
        return buf;
    }
    for (;;) {
        zmq_msg_t id, body;
        zmq_msg_init(&id);
        if (zmq_msg_recv(&id, self->router, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&id);
            return NULL;
        }
        int more = zmq_msg_more(&id);
        zmq_msg_close(&id);
        if (!more) {
            self->stats.bad_in++;
            continue;
        }
        zmq_msg_init(&body);
        zmq_msg_recv(&body, self->router, 0);
        int extra = zmq_msg_more(&body);
        while (zmq_msg_more(&body)) { /* one body frame only: drain the rest */
            zmq_msg_close(&body);
            zmq_msg_init(&body);
            zmq_msg_recv(&body, self->router, 0);
        }
        if (extra) {
            zmq_msg_close(&body);
            if (++self->stats.bad_in <= 10 || self->stats.bad_in % 1000 == 0)
                pm_log_warn("PM-PEER-BAD-FRAME", "multi-part frame on the mesh port; dropped");
            continue;
        }
        size_t n = zmq_msg_size(&body);
        uint8_t *buf = malloc(n ? n : 1);
        if (buf)
            memcpy(buf, zmq_msg_data(&body), n);
        zmq_msg_close(&body);
        if (!buf)
            continue;
        self->stats.frames_in++;
        self->stats.bytes_in += n;
        *len = n;
        return buf;
    }
}

void
pm_transport_forget(pm_transport_t *self, const char *endpoint)
{
    if (self->mem)
        return; /* nothing is queued on the sender's side */
    void *sock = zhashx_lookup(self->peers, endpoint);
    if (sock) {
        int zero = 0; /* what was queued for a dead peer must not linger */
        zmq_setsockopt(sock, ZMQ_LINGER, &zero, sizeof zero);
    }
    zhashx_delete(self->peers, endpoint);
}

void
pm_transport_stats(const pm_transport_t *self, pm_transport_stats_t *out)
{
    *out = self->stats;
    out->auth_refused = pm_auth_refused(self->auth);
    out->handshakes_failed = pm_auth_failed_handshakes(self->auth);
}
