"""A TCP proxy that behaves like a distant link, for benchmarks: every byte is delayed
by a one-way latency in each direction, and each connection is capped at a bandwidth
(bytes are serialised at that rate, then propagate). A request/response therefore
costs at least one round trip, and one connection cannot carry more than the cap.

Usage: python3 scripts/throttle.py TARGET_HOST:PORT RTT_MS MBYTES_PER_S
Prints the port it listens on (127.0.0.1), then serves until killed."""
import asyncio, sys, time

BUFFER = 256 * 1024
# Bytes one direction may hold in flight: enough for the bandwidth-delay product.
QUEUED_CHUNKS = 16


async def pump(reader, writer, one_way, rate):
    queue = asyncio.Queue(QUEUED_CHUNKS)

    async def receive():
        serialised_until = 0.0
        while True:
            data = await reader.read(BUFFER)
            now = time.monotonic()
            if not data:
                await queue.put((max(now, serialised_until) + one_way, b""))
                return
            serialised_until = max(now, serialised_until) + len(data) / rate
            await queue.put((serialised_until + one_way, data))

    async def deliver():
        while True:
            at, data = await queue.get()
            delay = at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    try:
        await asyncio.gather(receive(), deliver())
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def main():
    host, port = sys.argv[1].rsplit(":", 1)
    one_way = float(sys.argv[2]) / 2000
    rate = float(sys.argv[3]) * 1e6

    async def handle(client_r, client_w):
        try:
            server_r, server_w = await asyncio.open_connection(host, int(port))
        except OSError:
            client_w.close()
            return
        await asyncio.gather(pump(client_r, server_w, one_way, rate), pump(server_r, client_w, one_way, rate))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
