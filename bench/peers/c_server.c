/*
 * The limit: a single-threaded C epoll finger server with one fixed reply.
 *
 * It answers every query line with the same line, as fast as this machine
 * can: no lookup, no log, no limits, no timeouts.  A server can spend no
 * less CPU per connection than the kernel work this one does, so it marks
 * the floor beside the Python servers.  Like fingerd it asks the kernel to
 * hand over a connection only once its query has arrived (TCP_DEFER_ACCEPT),
 * and sends the reply with the FIN in one segment (MSG_MORE, then close).
 *
 *   c_server PORT [STATUS_FILE]     (the file is ignored: the reply is fixed)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define EVENTS 256

static const char reply[] = "Writing the finger daemon\r\n";

/* 1 when the connection is done with (answered or gone), 0 while its query line is still to come. */
static int answer(int fd) {
    char query[1024];
    ssize_t got = recv(fd, query, sizeof query, MSG_DONTWAIT);
    if (got < 0 && errno == EAGAIN) {
        return 0;
    }
    if (got > 0 && memchr(query, '\n', (size_t)got) == NULL) {
        return 0;
    }
    if (got > 0) {
        send(fd, reply, sizeof reply - 1, MSG_DONTWAIT | MSG_MORE);
    }
    close(fd);
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: c_server PORT [STATUS_FILE]\n");
        return 2;
    }
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(listener, IPPROTO_TCP, TCP_DEFER_ACCEPT, &one, sizeof one);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[1]))};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(listener, (struct sockaddr *)&address, sizeof address) < 0 || listen(listener, 1024) < 0) {
        perror("c_server");
        return 1;
    }
    int poller = epoll_create1(0);
    struct epoll_event event = {.events = EPOLLIN, .data.fd = listener};
    epoll_ctl(poller, EPOLL_CTL_ADD, listener, &event);
    struct epoll_event ready[EVENTS];
    for (;;) {
        int count = epoll_wait(poller, ready, EVENTS, -1);
        for (int i = 0; i < count; i++) {
            int fd = ready[i].data.fd;
            if (fd != listener) {
                answer(fd);
                continue;
            }
            int client;
            while ((client = accept4(listener, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                if (answer(client)) {
                    continue; /* the query had arrived with the connection: answered at once */
                }
                struct epoll_event wait_for_query = {.events = EPOLLIN, .data.fd = client};
                epoll_ctl(poller, EPOLL_CTL_ADD, client, &wait_for_query);
            }
        }
    }
}
