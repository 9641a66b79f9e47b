/*
 * Finger load generator: keeps CONCURRENCY connections busy against
 * 127.0.0.1:PORT for SECONDS, each sending QUERY and reading to EOF, and
 * prints one line of figures.  One epoll loop, so a single core drives many
 * connections and the generator is not what is being measured.
 *
 *   loadgen PORT CONCURRENCY SECONDS [QUERY]
 *   -> conns=N seconds=S rate=R p50_ms=A p99_ms=B max_ms=C errors=E
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    int fd;
    double started;
    int sent;
} conn_t;

static struct sockaddr_in target;
static const char *query = "alice\r\n";
static int poller;
static long errors;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void open_conn(conn_t *c) {
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    c->started = now();
    c->sent = 0;
    if (connect(c->fd, (struct sockaddr *)&target, sizeof target) < 0 && errno != EINPROGRESS) {
        errors++;
    }
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.ptr = c};
    epoll_ctl(poller, EPOLL_CTL_ADD, c->fd, &ev);
}

static void restart(conn_t *c) {
    close(c->fd);
    open_conn(c);
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: loadgen PORT CONCURRENCY SECONDS [QUERY]\n");
        return 2;
    }
    int port = atoi(argv[1]), concurrency = atoi(argv[2]);
    double seconds = atof(argv[3]);
    static char line[1100];
    if (argc > 4) {
        snprintf(line, sizeof line, "%s\r\n", argv[4]);
        query = line;
    }
    target.sin_family = AF_INET;
    target.sin_port = htons(port);
    inet_pton(AF_INET, "127.0.0.1", &target.sin_addr);
    long capacity = 20000000, done = 0;
    double *latency = malloc(sizeof(double) * capacity);
    poller = epoll_create1(0);
    conn_t *conns = calloc(concurrency, sizeof(conn_t));
    for (int i = 0; i < concurrency; i++) open_conn(&conns[i]);
    struct epoll_event events[512];
    char buffer[65536];
    double start = now();
    while (now() - start < seconds) {
        int n = epoll_wait(poller, events, 512, 100);
        for (int i = 0; i < n; i++) {
            conn_t *c = events[i].data.ptr;
            if (events[i].events & (EPOLLERR | EPOLLHUP) && !(events[i].events & EPOLLIN)) {
                errors++;
                restart(c);
                continue;
            }
            if (!c->sent && (events[i].events & EPOLLOUT)) {
                if (write(c->fd, query, strlen(query)) < 0) {
                    errors++;
                    restart(c);
                    continue;
                }
                c->sent = 1;
                struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
                epoll_ctl(poller, EPOLL_CTL_MOD, c->fd, &ev);
                continue;
            }
            if (events[i].events & EPOLLIN) {
                ssize_t got;
                while ((got = read(c->fd, buffer, sizeof buffer)) > 0) {
                }
                if (got == 0) {
                    if (done < capacity) latency[done] = now() - c->started;
                    done++;
                    restart(c);
                } else if (errno != EAGAIN) {
                    errors++;
                    restart(c);
                }
            }
        }
    }
    double elapsed = now() - start;
    long kept = done < capacity ? done : capacity;
    qsort(latency, kept, sizeof(double), by_value);
    double p50 = kept ? latency[kept / 2] : 0, p99 = kept ? latency[(long)(kept * 0.99)] : 0;
    double worst = kept ? latency[kept - 1] : 0;
    printf("conns=%ld seconds=%.3f rate=%.1f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f errors=%ld\n", done, elapsed,
           done / elapsed, p50 * 1e3, p99 * 1e3, worst * 1e3, errors);
    return 0;
}
