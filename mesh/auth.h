/*
 * auth.h - who may talk on the mesh port. Every agent of a mesh holds the
 * same CURVE keypair (from --mesh-key-dir: the Kubernetes Secret mounts it).
 * Traffic is encrypted, a peer that does not speak CURVE fails the handshake,
 * and a ZAP handler admits only clients that present the mesh's own public
 * key, so knowing an agent's endpoint is not enough to join. A thread owns the
 * ZAP socket and a monitor of the mesh socket; refusals are logged and
 * counted.
 */
#ifndef PM_AUTH_H
#define PM_AUTH_H

#include <stddef.h>
#include <stdint.h>

/* Z85 text of a CURVE key: 40 characters and a NUL. */
typedef struct pm_mesh_keys {
    char public_z85[41];
    char secret_z85[41];
} pm_mesh_keys_t;

/* Reads DIR/mesh.pub and DIR/mesh.key. 0, or -1 with a message. */
int pm_auth_load_keys(const char *dir, pm_mesh_keys_t *keys, char *err, size_t errlen);
/* Creates DIR (0700) with a new keypair: mesh.pub (0644) and mesh.key (0600).
 * 0, or -1 with a message. Refuses to overwrite existing keys. */
int pm_auth_generate_keys(const char *dir, char *err, size_t errlen);

typedef struct pm_auth pm_auth_t;

/* Starts the ZAP handler in ctx (before any CURVE server socket binds). */
pm_auth_t *pm_auth_start(void *ctx, const pm_mesh_keys_t *keys);
/* Watches server_socket for failed handshakes (logged, counted). */
void pm_auth_watch(pm_auth_t *self, void *server_socket);
void pm_auth_stop(pm_auth_t **self_p);
/* Clients refused by the ZAP handler, and handshakes that failed. */
uint64_t pm_auth_refused(const pm_auth_t *self);
uint64_t pm_auth_failed_handshakes(const pm_auth_t *self);

/* Applies the keys to a socket: server (the mesh ROUTER) or client. */
void pm_auth_apply(void *socket, const pm_mesh_keys_t *keys, int server);

#endif
