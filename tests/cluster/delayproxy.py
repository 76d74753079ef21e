"""A TCP proxy that adds latency, for connections redirected to it by
iptables (nat OUTPUT REDIRECT) inside one network namespace.

    delayproxy.py --mark M [--delay-ms D] [--listen 127.0.0.1]

Prints "port N" once it listens on an ephemeral port. For each accepted
connection it reads the original destination (SO_ORIGINAL_DST), connects
there with SO_MARK = M (the REDIRECT rule excludes that mark, so its own
connections are not redirected again), and forwards both directions, each
chunk delivered no earlier than the current delay after it arrived; order
is kept. The delay is per direction: a request and its response over a
proxied connection each wait for it.

Control is on stdin, one command a line, each answered on stdout:
"delay <ms>" sets the delay for every chunk that arrives from then on
(answer "ok <ms>"). End of stdin (the parent closed it or died) stops the
proxy, so a proxy never outlives its test run.
"""
import argparse
import asyncio
import socket
import struct
import sys
import threading
import time

SO_ORIGINAL_DST = 80
CHUNK = 64 * 1024
QUEUE_CHUNKS = 64          # per direction; a full queue stops reading (backpressure)
CONNECT_TIMEOUT = 20.0     # to the original destination (a partitioned peer never answers)


class Proxy:
    def __init__(self, mark, delay_ms):
        self.mark = mark
        self.delay = delay_ms / 1000.0
        self.listen_addr = None

    async def handle(self, reader, writer):
        upstream_writer = None
        try:
            dst = original_dst(writer.get_extra_info("socket"))
            if dst == self.listen_addr:
                return  # connected to us directly, not redirected: nothing to forward to
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_MARK, self.mark)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.setblocking(False)
            loop = asyncio.get_running_loop()
            try:
                await asyncio.wait_for(loop.sock_connect(s, dst), CONNECT_TIMEOUT)
            except (OSError, asyncio.TimeoutError):
                s.close()
                return
            up_reader, upstream_writer = await asyncio.open_connection(sock=s)
            await asyncio.gather(self.pump(reader, upstream_writer),
                                 self.pump(up_reader, writer))
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for w in (writer, upstream_writer):
                if w is not None:
                    w.close()

    async def pump(self, src, dst):
        """Copy src to dst, each chunk held until arrival + delay."""
        queue = asyncio.Queue(QUEUE_CHUNKS)

        async def receive():
            try:
                while True:
                    chunk = await src.read(CHUNK)
                    await queue.put((time.monotonic() + self.delay, chunk))
                    if not chunk:
                        return
            except OSError:
                await queue.put((0.0, b""))

        async def deliver():
            while True:
                due, chunk = await queue.get()
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not chunk:
                    if dst.can_write_eof():
                        dst.write_eof()
                    return
                dst.write(chunk)
                await dst.drain()

        receiver = asyncio.ensure_future(receive())
        try:
            await deliver()
        except OSError:
            pass
        finally:
            receiver.cancel()


def original_dst(sock):
    raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    port, = struct.unpack_from("!H", raw, 2)
    return socket.inet_ntoa(raw[4:8]), port


def control(loop, proxy, stop):
    """stdin commands, on a thread; EOF stops the loop."""
    for line in sys.stdin:
        words = line.split()
        if len(words) == 2 and words[0] == "delay":
            try:
                ms = float(words[1])
            except ValueError:
                ms = -1
            if ms >= 0:
                proxy.delay = ms / 1000.0  # a float store: atomic under the GIL
                reply = f"ok {ms:g}"
            else:
                reply = f"error bad delay {words[1]!r}"
        else:
            reply = f"error unknown command {line.strip()!r}"
        print(reply, flush=True)
    loop.call_soon_threadsafe(stop.set)


async def main(args):
    proxy = Proxy(args.mark, args.delay_ms)
    server = await asyncio.start_server(proxy.handle, args.listen, 0, limit=CHUNK)
    proxy.listen_addr = server.sockets[0].getsockname()[:2]
    print(f"port {proxy.listen_addr[1]}", flush=True)
    stop = asyncio.Event()
    threading.Thread(target=control, args=(asyncio.get_running_loop(), proxy, stop),
                     daemon=True).start()
    await stop.wait()
    server.close()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mark", type=lambda s: int(s, 0), required=True)
    ap.add_argument("--delay-ms", type=float, default=0.0)
    ap.add_argument("--listen", default="127.0.0.1")
    asyncio.run(main(ap.parse_args()))
