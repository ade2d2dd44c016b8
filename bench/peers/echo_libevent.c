/* libevent echo server: bufferevents, the input moved to the output. */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

static void read_cb(struct bufferevent *bev, void *ctx)
{
    (void)ctx;
    evbuffer_add_buffer(bufferevent_get_output(bev), bufferevent_get_input(bev));
}

static void event_cb(struct bufferevent *bev, short ev, void *ctx)
{
    (void)ctx;
    if (ev & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) bufferevent_free(bev);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *a, int len, void *ctx)
{
    (void)a;
    (void)len;
    (void)ctx;
    struct bufferevent *bev = bufferevent_socket_new(evconnlistener_get_base(l), fd, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(bev, read_cb, NULL, event_cb, NULL);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
}

static void on_signal(evutil_socket_t s, short ev, void *base)
{
    (void)s;
    (void)ev;
    event_base_loopbreak(base);
}

int main(int argc, char **argv)
{
    if (argc != 2) return 2;
    struct event_base *base = event_base_new();
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1])), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct evconnlistener *l = evconnlistener_new_bind(base, accept_cb, NULL, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
                                                       4096, (struct sockaddr *)&a, sizeof a);
    if (!l) return 1;
    struct event *s1 = evsignal_new(base, SIGTERM, on_signal, base), *s2 = evsignal_new(base, SIGINT, on_signal, base);
    event_add(s1, NULL);
    event_add(s2, NULL);
    event_base_dispatch(base);
    return 0;
}
