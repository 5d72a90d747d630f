/*
 * zmq_rtt.c - the yardstick of the local benchmark: raw ZeroMQ round trips
 * between two processes over the kind of socket pmeshd serves (a ROUTER bound
 * on ipc://PATH, DEALER clients). pmesh-bench's latency is judged against it,
 * so it does what the agent's transport does and nothing more: the server
 * receives identity + body and sends them back; no decoding, no state.
 *
 * usage: zmq-rtt --endpoint ipc://PATH [--count N] [--warmup N] [--size BYTES]
 *                [--burst K]
 *
 * With --burst K each timed exchange sends K messages back to back and waits
 * for all K echoes: the raw-transport cost of a pipelined exchange such as a
 * promise lifecycle (create, resolve, await: K = 3).
 *
 * Forks the echo server (child), runs the timed round trips from a DEALER in
 * the parent, checks every echo, and prints one line of key=value figures
 * (times in microseconds).
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

/* How long the client waits for one echo before calling the server dead. */
#define RTT_RECV_TIMEOUT_MS 5000

static int64_t
s_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int
s_cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of sorted samples, in microseconds. */
static double
s_pct_us(const int64_t *sorted, size_t n, double q)
{
    size_t rank = (size_t)(q * (double)n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return (double)sorted[rank - 1] / 1000.0;
}

/* The echo server: ROUTER bound at endpoint; an empty body means "stop".
 * Tells the parent it is bound by writing one byte to ready_fd. */
static int
s_server(const char *endpoint, int ready_fd)
{
    int rc = 1;
    void *ctx = zmq_ctx_new();
    void *router = ctx ? zmq_socket(ctx, ZMQ_ROUTER) : NULL;
    if (!router) {
        fprintf(stderr, "zmq-rtt server: socket: %s\n", zmq_strerror(errno));
        goto out;
    }
    int linger = 0;
    zmq_setsockopt(router, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_bind(router, endpoint) != 0) {
        fprintf(stderr, "zmq-rtt server: bind %s: %s\n", endpoint, zmq_strerror(errno));
        goto out;
    }
    if (write(ready_fd, "r", 1) != 1)
        goto out;
    close(ready_fd);

    zmq_msg_t identity, body;
    zmq_msg_init(&identity);
    zmq_msg_init(&body);
    for (;;) {
        if (zmq_msg_recv(&identity, router, 0) < 0 || !zmq_msg_more(&identity))
            break;
        if (zmq_msg_recv(&body, router, 0) < 0)
            break;
        if (zmq_msg_size(&body) == 0) {
            rc = 0;
            break;
        }
        if (zmq_msg_send(&identity, router, ZMQ_SNDMORE) < 0 || zmq_msg_send(&body, router, 0) < 0)
            break;
    }
    zmq_msg_close(&identity);
    zmq_msg_close(&body);
out:
    if (router)
        zmq_close(router);
    if (ctx)
        zmq_ctx_term(ctx);
    return rc;
}

/* One exchange of `burst` messages; returns its duration in ns, or -1 on a
 * failed or wrong echo. */
static int64_t
s_round_trip(void *dealer, const char *out, char *in, size_t size, long burst)
{
    int64_t t0 = s_now_ns();
    for (long i = 0; i < burst; i++) {
        if (zmq_send(dealer, out, size, 0) != (int)size)
            return -1;
    }
    for (long i = 0; i < burst; i++) {
        int n = zmq_recv(dealer, in, size + 1, 0);
        if (n != (int)size || memcmp(in, out, size) != 0)
            return -1;
    }
    return s_now_ns() - t0;
}

static void
s_usage(FILE *f)
{
    fprintf(f, "usage: zmq-rtt --endpoint ipc://PATH [--count N] [--warmup N] [--size BYTES]\n"
               "               [--burst K]\n"
               "  Raw ZeroMQ ROUTER(echo)/DEALER round trips between two processes; with\n"
               "  --burst K, each timed exchange is K messages sent, then K echoes received.\n"
               "  defaults: --count 20000 --warmup 2000 --size 100 --burst 1\n");
}

int
main(int argc, char **argv)
{
    const char *endpoint = NULL;
    long count = 20000, warmup = 2000, size = 100, burst = 1;
    static const struct option longopts[] = {
        {"endpoint", required_argument, NULL, 'e'}, {"count", required_argument, NULL, 'n'},
        {"warmup", required_argument, NULL, 'w'},   {"size", required_argument, NULL, 's'},
        {"burst", required_argument, NULL, 'b'},    {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "e:n:w:s:b:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'e': endpoint = optarg; break;
        case 'n': count = atol(optarg); break;
        case 'w': warmup = atol(optarg); break;
        case 's': size = atol(optarg); break;
        case 'b': burst = atol(optarg); break;
        case 'h': s_usage(stdout); return 0;
        default: s_usage(stderr); return 2;
        }
    }
    if (!endpoint || count < 1 || warmup < 0 || size < 1 || size > 1 << 20 || burst < 1 || burst > 1000
        || optind != argc) {
        s_usage(stderr);
        return 2;
    }

    int ready[2];
    if (pipe(ready) != 0) {
        perror("zmq-rtt: pipe");
        return 1;
    }
    fflush(NULL);
    pid_t server = fork();
    if (server < 0) {
        perror("zmq-rtt: fork");
        return 1;
    }
    if (server == 0) {
        /* Never outlive the client, whatever happens to it. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        close(ready[0]);
        _exit(s_server(endpoint, ready[1]));
    }
    close(ready[1]);

    int rc = 1;
    void *ctx = NULL, *dealer = NULL;
    char *out = malloc((size_t)size), *in = malloc((size_t)size + 1);
    int64_t *samples = malloc(sizeof(int64_t) * (size_t)count);
    char byte;
    if (!out || !in || !samples) {
        fprintf(stderr, "zmq-rtt: out of memory\n");
        goto out;
    }
    if (read(ready[0], &byte, 1) != 1) {
        fprintf(stderr, "zmq-rtt: echo server did not start\n");
        goto out;
    }
    for (long i = 0; i < size; i++)
        out[i] = (char)('a' + i % 26);

    ctx = zmq_ctx_new();
    dealer = ctx ? zmq_socket(ctx, ZMQ_DEALER) : NULL;
    if (!dealer) {
        fprintf(stderr, "zmq-rtt: socket: %s\n", zmq_strerror(errno));
        goto out;
    }
    int linger = 0, timeout = RTT_RECV_TIMEOUT_MS;
    zmq_setsockopt(dealer, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(dealer, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    if (zmq_connect(dealer, endpoint) != 0) {
        fprintf(stderr, "zmq-rtt: connect %s: %s\n", endpoint, zmq_strerror(errno));
        goto out;
    }
    for (long i = 0; i < warmup; i++) {
        if (s_round_trip(dealer, out, in, (size_t)size, burst) < 0) {
            fprintf(stderr, "zmq-rtt: warm-up round trip %ld failed\n", i);
            goto out;
        }
    }
    int64_t t0 = s_now_ns();
    for (long i = 0; i < count; i++) {
        samples[i] = s_round_trip(dealer, out, in, (size_t)size, burst);
        if (samples[i] < 0) {
            fprintf(stderr, "zmq-rtt: round trip %ld failed\n", i);
            goto out;
        }
    }
    int64_t elapsed = s_now_ns() - t0;
    zmq_send(dealer, "", 0, 0);

    qsort(samples, (size_t)count, sizeof *samples, s_cmp_i64);
    double sum = 0;
    for (long i = 0; i < count; i++)
        sum += (double)samples[i];
    printf("zmq-rtt endpoint=%s n=%ld warmup=%ld size=%ld burst=%ld p50_us=%.1f p90_us=%.1f p99_us=%.1f "
           "mean_us=%.1f min_us=%.1f max_us=%.1f rtt_per_s=%.0f\n",
           endpoint, count, warmup, size, burst, s_pct_us(samples, (size_t)count, 0.50),
           s_pct_us(samples, (size_t)count, 0.90), s_pct_us(samples, (size_t)count, 0.99),
           sum / (double)count / 1000.0, (double)samples[0] / 1000.0,
           (double)samples[count - 1] / 1000.0, (double)count * 1e9 / (double)elapsed);
    rc = 0;
out:
    if (dealer)
        zmq_close(dealer);
    if (ctx)
        zmq_ctx_term(ctx);
    free(out);
    free(in);
    free(samples);
    close(ready[0]);
    /* The server stops on the empty frame; if it has not within 2 s, kill it. */
    int status = 0;
    for (int i = 0; i < 200; i++) {
        if (waitpid(server, &status, WNOHANG) == server)
            return rc;
        usleep(10000);
    }
    kill(server, SIGKILL);
    waitpid(server, &status, 0);
    return rc;
}
