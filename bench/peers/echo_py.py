"""Python echo servers for the echo benchmark.

  echo_py.py gevent PORT    gevent's StreamServer, recv/sendall per connection
  echo_py.py asyncio PORT   an asyncio Protocol (the fastest asyncio form)
  echo_py.py uvloop PORT    the same Protocol on uvloop
"""
import signal
import sys


def gevent_server(port):
    from gevent.server import StreamServer

    def handle(sock, addr):
        while True:
            data = sock.recv(16384)
            if not data:
                break
            sock.sendall(data)

    srv = StreamServer(("127.0.0.1", port), handle, backlog=4096)
    import gevent
    gevent.signal_handler(signal.SIGTERM, srv.stop)
    gevent.signal_handler(signal.SIGINT, srv.stop)
    srv.serve_forever()


def asyncio_server(port, use_uvloop):
    import asyncio
    if use_uvloop:
        import uvloop
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())

    class Echo(asyncio.Protocol):
        def connection_made(self, transport):
            self.t = transport

        def data_received(self, data):
            self.t.write(data)

    async def main():
        loop = asyncio.get_running_loop()
        stop = loop.create_future()
        loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
        loop.add_signal_handler(signal.SIGINT, stop.set_result, None)
        srv = await loop.create_server(Echo, "127.0.0.1", port, backlog=4096)
        await stop
        srv.close()

    asyncio.run(main())


if __name__ == "__main__":
    kind, port = sys.argv[1], int(sys.argv[2])
    if kind == "gevent":
        gevent_server(port)
    else:
        asyncio_server(port, kind == "uvloop")
