/*
 * auth.c - see auth.h. The ZAP protocol is RFC 27 (rfc.zeromq.org/spec/27):
 * a REP socket at inproc://zeromq.zap.01 answers each handshake's request
 * with 200 (allow) or 400 (deny).
 */
#include "auth.h"

#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#define S_ZAP_ENDPOINT "inproc://zeromq.zap.01"
/* How often the thread looks at its stop flag. */
#define S_POLL_MS 100

struct pm_auth {
    void *ctx;
    uint8_t public_bin[32];
    void *zap;
    void *monitor; /* PAIR, connected to the server socket's monitor */
    char monitor_ep[64];
    pthread_t thread;
    int running;
    atomic_int stop;
    atomic_uint_fast64_t refused;
    atomic_uint_fast64_t failed;
    atomic_int watch_pending;
    void *watch_socket;
};

/* ---- keys ----------------------------------------------------------------- */

static int
s_read_key(const char *dir, const char *name, char *out, char *err, size_t errlen)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    char buf[128] = "";
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        n--;
    buf[n] = 0;
    uint8_t bin[32];
    if (n != 40 || !zmq_z85_decode(bin, buf)) {
        snprintf(err, errlen, "%s: not a Z85 CURVE key (40 characters)", path);
        return -1;
    }
    memcpy(out, buf, 41);
    return 0;
}

int
pm_auth_load_keys(const char *dir, pm_mesh_keys_t *keys, char *err, size_t errlen)
{
    if (s_read_key(dir, "mesh.pub", keys->public_z85, err, errlen) != 0 ||
        s_read_key(dir, "mesh.key", keys->secret_z85, err, errlen) != 0)
        return -1;
    /* The pair must match: derive the public key from the secret one. */
    char derived[41];
    if (zmq_curve_public(derived, keys->secret_z85) != 0 ||
        strcmp(derived, keys->public_z85) != 0) {
        snprintf(err, errlen, "%s: mesh.pub is not the public key of mesh.key", dir);
        return -1;
    }
    return 0;
}

static int
s_write_key(const char *dir, const char *name, const char *key, mode_t mode, char *err,
            size_t errlen)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wx"); /* never overwrite a key */
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    chmod(path, mode);
    int ok = fprintf(f, "%s\n", key) > 0;
    ok &= fclose(f) == 0;
    if (!ok)
        snprintf(err, errlen, "%s: cannot write", path);
    return ok ? 0 : -1;
}

int
pm_auth_generate_keys(const char *dir, char *err, size_t errlen)
{
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "%s: %s", dir, strerror(errno));
        return -1;
    }
    char pub[41], sec[41];
    if (zmq_curve_keypair(pub, sec) != 0) {
        snprintf(err, errlen, "libzmq has no CURVE support: %s", zmq_strerror(errno));
        return -1;
    }
    if (s_write_key(dir, "mesh.key", sec, 0600, err, errlen) != 0 ||
        s_write_key(dir, "mesh.pub", pub, 0644, err, errlen) != 0)
        return -1;
    return 0;
}

void
pm_auth_apply(void *socket, const pm_mesh_keys_t *keys, int server)
{
    if (server) {
        int one = 1;
        zmq_setsockopt(socket, ZMQ_CURVE_SERVER, &one, sizeof one);
        zmq_setsockopt(socket, ZMQ_CURVE_SECRETKEY, keys->secret_z85, 40);
        zmq_setsockopt(socket, ZMQ_ZAP_DOMAIN, "pmesh", 5);
    } else {
        zmq_setsockopt(socket, ZMQ_CURVE_SERVERKEY, keys->public_z85, 40);
        zmq_setsockopt(socket, ZMQ_CURVE_PUBLICKEY, keys->public_z85, 40);
        zmq_setsockopt(socket, ZMQ_CURVE_SECRETKEY, keys->secret_z85, 40);
    }
}

/* ---- the handler thread --------------------------------------------------- */

/* Answers one ZAP request: allow CURVE clients with the mesh key only. */
static void
s_zap_one(pm_auth_t *self)
{
    zmq_msg_t part[8];
    int n = 0, more = 1;
    while (more && n < 8) {
        zmq_msg_init(&part[n]);
        if (zmq_msg_recv(&part[n], self->zap, 0) < 0) {
            zmq_msg_close(&part[n]);
            break;
        }
        more = zmq_msg_more(&part[n]);
        n++;
    }
    while (more) { /* more frames than the protocol has: drain them */
        zmq_msg_t junk;
        zmq_msg_init(&junk);
        zmq_msg_recv(&junk, self->zap, 0);
        more = zmq_msg_more(&junk);
        zmq_msg_close(&junk);
    }
    /* version, request id, domain, address, routing id, mechanism, creds */
    int allow = n >= 7 && zmq_msg_size(&part[5]) == 5 &&
                memcmp(zmq_msg_data(&part[5]), "CURVE", 5) == 0 &&
                zmq_msg_size(&part[6]) == 32 &&
                memcmp(zmq_msg_data(&part[6]), self->public_bin, 32) == 0;
    if (!allow) {
        uint64_t k = atomic_fetch_add(&self->refused, 1) + 1;
        if (k <= 10 || k % 1000 == 0)
            pm_log_warn("PM-MESH-AUTH-REFUSED", "a peer%s%.*s without the mesh key was refused "
                        "(%llu so far)", n >= 4 ? " at " : "", n >= 4 ? (int) zmq_msg_size(&part[3]) : 0,
                        n >= 4 ? (const char *) zmq_msg_data(&part[3]) : "", (unsigned long long) k);
    }
    const char *status = allow ? "200" : "400";
    const char *text = allow ? "OK" : "not a member of this mesh";
    zmq_send(self->zap, "1.0", 3, ZMQ_SNDMORE);
    if (n >= 2)
        zmq_send(self->zap, zmq_msg_data(&part[1]), zmq_msg_size(&part[1]), ZMQ_SNDMORE);
    else
        zmq_send(self->zap, "", 0, ZMQ_SNDMORE);
    zmq_send(self->zap, status, 3, ZMQ_SNDMORE);
    zmq_send(self->zap, text, strlen(text), ZMQ_SNDMORE);
    zmq_send(self->zap, "", 0, ZMQ_SNDMORE); /* user id */
    zmq_send(self->zap, "", 0, 0);           /* metadata */
    for (int i = 0; i < n; i++)
        zmq_msg_close(&part[i]);
}

static void
s_monitor_one(pm_auth_t *self)
{
    zmq_msg_t ev, addr;
    zmq_msg_init(&ev);
    zmq_msg_init(&addr);
    if (zmq_msg_recv(&ev, self->monitor, 0) >= 0 && zmq_msg_more(&ev))
        zmq_msg_recv(&addr, self->monitor, 0);
    if (zmq_msg_size(&ev) >= 2) {
        uint16_t event;
        memcpy(&event, zmq_msg_data(&ev), 2);
        if (event & (ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                     ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)) {
            uint64_t k = atomic_fetch_add(&self->failed, 1) + 1;
            if (k <= 10 || k % 1000 == 0)
                pm_log_warn("PM-MESH-HANDSHAKE-FAILED", "a peer failed the CURVE handshake "
                            "(no or wrong mesh key; %llu so far)", (unsigned long long) k);
        }
    }
    zmq_msg_close(&ev);
    zmq_msg_close(&addr);
}

static void *
s_run(void *arg)
{
    pm_auth_t *self = arg;
    while (!atomic_load(&self->stop)) {
        zmq_pollitem_t items[2] = {{self->zap, 0, ZMQ_POLLIN, 0},
                                   {self->monitor, 0, ZMQ_POLLIN, 0}};
        if (zmq_poll(items, self->monitor ? 2 : 1, S_POLL_MS) < 0 && errno != EINTR)
            break;
        if (items[0].revents & ZMQ_POLLIN)
            s_zap_one(self);
        if (self->monitor && (items[1].revents & ZMQ_POLLIN))
            s_monitor_one(self);
        if (atomic_load(&self->watch_pending) && !self->monitor) {
            self->monitor = zmq_socket(self->ctx, ZMQ_PAIR);
            zmq_connect(self->monitor, self->monitor_ep);
            atomic_store(&self->watch_pending, 0);
        }
    }
    if (self->monitor)
        zmq_close(self->monitor);
    zmq_close(self->zap);
    return NULL;
}

pm_auth_t *
pm_auth_start(void *ctx, const pm_mesh_keys_t *keys)
{
    pm_auth_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->ctx = ctx;
    zmq_z85_decode(self->public_bin, keys->public_z85);
    self->zap = zmq_socket(ctx, ZMQ_REP);
    int zero = 0;
    zmq_setsockopt(self->zap, ZMQ_LINGER, &zero, sizeof zero);
    if (!self->zap || zmq_bind(self->zap, S_ZAP_ENDPOINT) != 0) {
        pm_log_error("PM-MESH-AUTH", "cannot start the ZAP handler: %s", zmq_strerror(errno));
        if (self->zap)
            zmq_close(self->zap);
        free(self);
        return NULL;
    }
    snprintf(self->monitor_ep, sizeof self->monitor_ep, "inproc://pm-mesh-monitor-%p",
             (void *) self);
    if (pthread_create(&self->thread, NULL, s_run, self) != 0) {
        zmq_close(self->zap);
        free(self);
        return NULL;
    }
    self->running = 1;
    return self;
}

void
pm_auth_watch(pm_auth_t *self, void *server_socket)
{
    if (zmq_socket_monitor(server_socket, self->monitor_ep,
                           ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) == 0) {
        self->watch_socket = server_socket;
        atomic_store(&self->watch_pending, 1);
    }
}

void
pm_auth_stop(pm_auth_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    pm_auth_t *self = *self_p;
    if (self->watch_socket)
        zmq_socket_monitor(self->watch_socket, NULL, 0);
    if (self->running) {
        atomic_store(&self->stop, 1);
        pthread_join(self->thread, NULL);
    }
    free(self);
    *self_p = NULL;
}

uint64_t
pm_auth_refused(const pm_auth_t *self)
{
    return self ? atomic_load(&((pm_auth_t *) self)->refused) : 0;
}

uint64_t
pm_auth_failed_handshakes(const pm_auth_t *self)
{
    return self ? atomic_load(&((pm_auth_t *) self)->failed) : 0;
}
