"""A latency and fault proxy that makes a loopback S3 endpoint behave like a distant one.

Benchmarks on one machine put every server a few microseconds away, where CPU decides the
result; the real archive is 50-250 ms away and sometimes throttles or drops connections.
`NetemProxy` sits in front of an S3 endpoint on 127.0.0.1 and, per TCP connection:

- delays every chunk by `rtt/2` in each direction. Each chunk is scheduled for delivery
  at its arrival time + delay, so a connection's throughput is not serialised by the delay
  (a pipe with latency, not a stop-and-wait link);
- holds a new connection's first bytes for `connect_rtts` round trips: on a real network
  TCP's handshake costs one round trip before a request can go (TLS adds one or two more),
  and a client that does not keep its connections alive pays it per request, where on
  loopback it costs nothing. The proxy counts the connections it accepted
  (`NetemProxy.connections()`);
- caps bandwidth per direction with a token bucket (`bandwidth` bytes/s, 64 KiB burst);
- injects faults per HTTP request, each at its own rate: a reset (TCP RST a few bytes
  into the response), a stall (the response stops for `stall_seconds` mid-way), and an
  HTTP 503 SlowDown with S3's XML error body, answered by the proxy itself (then the
  connection is closed, so keep-alive framing after it never matters).

Requests are framed from the request line, headers and Content-Length only; a request
with another framing (chunked upload) or another protocol (TLS) ends fault injection on
that connection, bytes still flow. Decisions come from `random.Random(seed, connection
number)`, so a run with the same seed and the same connection order makes the same
decisions.

The proxy runs in a child process (`NetemProxy`), so its CPU time is its own: it is read
from /proc and reported next to the results, to show the proxy does not decide them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import socket
import struct
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from urllib.parse import urlparse

from crypto_lakehouse.bench.proc import cpu_seconds

CHUNK = 64 * 1024
BURST = 64 * 1024
FAULT_WITHIN = 2048  # a reset or stall hits within the response's first bytes
# The benchmarks' default: a new connection waits one round trip before its request goes
# (TCP's handshake; a TLS endpoint such as the real archive adds one or two more).
CONNECT_RTTS = 1.0
QUEUE_CHUNKS = 1024  # per direction: up to 64 MiB in flight before reading pauses
SLOWDOWN_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message>"
    b"<RequestId>netem</RequestId></Error>"
)


@dataclass(frozen=True)
class NetemConfig:
    """What the proxy does to traffic. Rates are fractions of requests (0.0 to 1.0)."""

    upstream_host: str
    upstream_port: int
    rtt_ms: float = 0.0
    bandwidth: int | None = None  # bytes/s per connection and direction; None: no cap
    resets: float = 0.0
    stalls: float = 0.0
    stall_seconds: float = 5.0
    slowdowns: float = 0.0
    seed: int = 0
    connect_rtts: float = 0.0  # round trips a new connection waits before its first byte

    def __post_init__(self) -> None:
        for name in ("resets", "stalls", "slowdowns"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a fraction between 0 and 1")
        if self.rtt_ms < 0 or self.stall_seconds < 0 or self.connect_rtts < 0:
            raise ValueError("rtt_ms, stall_seconds and connect_rtts must be >= 0")
        if self.bandwidth is not None and self.bandwidth <= 0:
            raise ValueError("bandwidth must be > 0 bytes/s")

    @classmethod
    def in_front_of(cls, url: str, **knobs: object) -> NetemConfig:
        """A config for the S3 endpoint at `url` (http://host:port)."""
        parsed = urlparse(url)
        if parsed.hostname is None or parsed.port is None:
            raise ValueError(f"upstream URL needs a host and a port: {url!r}")
        return cls(parsed.hostname, parsed.port, **knobs)  # type: ignore[arg-type]


class _Bucket:
    """Token bucket: `take(n)` waits until n bytes may pass at `rate` bytes/s."""

    def __init__(self, rate: int | None) -> None:
        self.rate = rate
        self.tokens = float(BURST)
        self.stamp = time.monotonic()

    async def take(self, n: int) -> None:
        if self.rate is None:
            return
        now = time.monotonic()
        self.tokens = min(BURST, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= n
        if self.tokens < 0:
            await asyncio.sleep(-self.tokens / self.rate)


@dataclass
class _Fault:
    """Pending fault on a connection's response side, armed when a request is forwarded."""

    kind: str = ""  # "", "reset", "stall"
    after: int = 0  # response bytes to let through first


class _Connection:
    def __init__(self, config: NetemConfig, number: int) -> None:
        self.config = config
        self.rng = random.Random(f"{config.seed}:{number}")
        self.delay = config.rtt_ms / 2000.0
        self.fault = _Fault()
        self.slowdown = False  # the proxy answered 503: close after it
        # Requests are framed only to inject faults, and only HTTP in clear text can be:
        # bytes of another protocol (a TLS handshake) pass through as they come.
        self.framing = bool(config.resets or config.stalls or config.slowdowns)
        self.buffer = b""
        self.body_left = 0

    # -- request framing and fault decisions ------------------------------------------------

    def requests_in(self, data: bytes) -> tuple[bytes, bool]:
        """(bytes to forward upstream, answer SlowDown now) for `data` read from the client."""
        if not self.framing or self.slowdown:
            return (b"" if self.slowdown else data), False
        out = bytearray()
        self.buffer += data
        while self.buffer:
            if self.body_left:
                take = self.buffer[: self.body_left]
                out += take
                self.body_left -= len(take)
                self.buffer = self.buffer[len(take) :]
                continue
            if not self.buffer[:1].isupper():  # not a request line (TLS starts with 0x16)
                self.framing = False
                out += self.buffer
                self.buffer = b""
                break
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > 64 * 1024:  # not HTTP as we know it: pass through
                    self.framing = False
                    out += self.buffer
                    self.buffer = b""
                break
            head, self.buffer = self.buffer[: end + 4], self.buffer[end + 4 :]
            headers = head.lower()
            if self._draw(self.config.slowdowns):
                self.slowdown = True
                self.buffer = b""
                return bytes(out), True
            self.fault = _Fault()
            if self._draw(self.config.resets):
                self.fault = _Fault("reset", self.rng.randint(1, FAULT_WITHIN))
            elif self._draw(self.config.stalls):
                self.fault = _Fault("stall", self.rng.randint(1, FAULT_WITHIN))
            out += head
            if b"\r\ntransfer-encoding:" in headers:
                self.framing = False
                out += self.buffer
                self.buffer = b""
                break
            self.body_left = _content_length(headers)
        return bytes(out), False

    def _draw(self, rate: float) -> bool:
        return rate > 0 and self.rng.random() < rate


def _content_length(headers: bytes) -> int:
    for line in headers.split(b"\r\n"):
        if line.startswith(b"content-length:"):
            try:
                return max(0, int(line.split(b":", 1)[1]))
            except ValueError:
                return 0
    return 0


def _slowdown_response() -> bytes:
    head = (
        "HTTP/1.1 503 Slow Down\r\n"
        "Content-Type: application/xml\r\n"
        f"Content-Length: {len(SLOWDOWN_BODY)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    return head + SLOWDOWN_BODY


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0), as a dropped connection looks to a client."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _pump_in(
    reader: asyncio.StreamReader, queue: asyncio.Queue, conn: _Connection, delay: float
) -> None:
    """Client -> upstream reader: frame requests, queue each chunk with its due time."""
    loop = asyncio.get_running_loop()
    while data := await reader.read(CHUNK):
        forward, slowdown = conn.requests_in(data)
        now = loop.time()
        if forward:
            await queue.put((now + delay, forward))
        if slowdown:
            break
    await queue.put((loop.time() + delay, None))


async def _pump_out(
    reader: asyncio.StreamReader, queue: asyncio.Queue, delay: float, stop: asyncio.Event
) -> None:
    """Upstream -> client reader: queue each response chunk with its due time."""
    loop = asyncio.get_running_loop()
    read = asyncio.ensure_future(reader.read(CHUNK))
    stopped = asyncio.ensure_future(stop.wait())
    try:
        while True:
            await asyncio.wait({read, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if stopped.done() or not (data := read.result()):
                break
            await queue.put((loop.time() + delay, data))
            read = asyncio.ensure_future(reader.read(CHUNK))
    finally:
        read.cancel()
        stopped.cancel()
    await queue.put((loop.time() + delay, None))


async def _deliver(
    queue: asyncio.Queue,
    writer: asyncio.StreamWriter,
    bucket: _Bucket,
    conn: _Connection | None = None,
) -> None:
    """Write each queued chunk at its due time, paced by `bucket`; apply response faults."""
    loop = asyncio.get_running_loop()
    while True:
        due, data = await queue.get()
        if (wait := due - loop.time()) > 0:
            await asyncio.sleep(wait)
        if data is None:
            if conn is not None and conn.slowdown:
                writer.write(_slowdown_response())
                await writer.drain()
            return
        if conn is not None and conn.fault.kind:
            head, data = data[: conn.fault.after], data[conn.fault.after :]
            conn.fault.after -= len(head)
            await bucket.take(len(head))
            writer.write(head)
            await writer.drain()
            if conn.fault.after == 0 and data:
                kind, conn.fault = conn.fault.kind, _Fault()
                if kind == "reset":
                    _reset(writer)
                    return
                await asyncio.sleep(conn.config.stall_seconds)
            if not data:
                continue
        for start in range(0, len(data), BURST):
            piece = data[start : start + BURST]
            await bucket.take(len(piece))
            writer.write(piece)
        await writer.drain()


async def _handle(
    config: NetemConfig,
    number: int,
    client_r: asyncio.StreamReader,
    client_w: asyncio.StreamWriter,
) -> None:
    conn = _Connection(config, number)
    if handshake := config.connect_rtts * config.rtt_ms / 1000.0:
        await asyncio.sleep(handshake)  # the client's request waits in the socket meanwhile
    try:
        up_r, up_w = await asyncio.open_connection(config.upstream_host, config.upstream_port)
    except OSError:
        _reset(client_w)
        return
    to_up: asyncio.Queue = asyncio.Queue(QUEUE_CHUNKS)
    to_client: asyncio.Queue = asyncio.Queue(QUEUE_CHUNKS)
    stop = asyncio.Event()

    async def upstream() -> None:
        # The client closed (or was answered 503 by the proxy) and that reached the
        # upstream side: the response side ends too, one more delay later, so a 503
        # rides the delay of both directions as a server's answer would.
        await _deliver(to_up, up_w, _Bucket(config.bandwidth))
        stop.set()

    tasks = [
        asyncio.ensure_future(_pump_in(client_r, to_up, conn, conn.delay)),
        asyncio.ensure_future(_pump_out(up_r, to_client, conn.delay, stop)),
        asyncio.ensure_future(upstream()),
        asyncio.ensure_future(_deliver(to_client, client_w, _Bucket(config.bandwidth), conn)),
    ]
    try:
        # The connection ends when the response side is delivered (or cut).
        await tasks[3]
    except (OSError, asyncio.CancelledError):
        pass
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for w in (up_w, client_w):
            w.close()


async def serve(config: NetemConfig, port: int = 0) -> None:
    """Run the proxy on 127.0.0.1:`port` (0: a free one) until cancelled; print the port,
    then on each SIGUSR1 the number of connections accepted so far."""
    accepted = 0

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        try:
            await _handle(config, accepted - 1, r, w)  # numbered from 0
        except Exception:  # one connection's trouble never stops the proxy
            w.close()

    def report() -> None:
        sys.stdout.write(f"{accepted}\n")
        sys.stdout.flush()

    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, report)
    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
    sys.stdout.write(f"{server.sockets[0].getsockname()[1]}\n")
    sys.stdout.flush()
    async with server:
        await server.serve_forever()


class NetemProxy:
    """The proxy in a child process; `url` is where clients connect, `cpu_seconds()` its CPU.

    Stopped by its PID on exit (SIGTERM, then SIGKILL).
    """

    def __init__(self, config: NetemConfig) -> None:
        self.config = config
        self.process: subprocess.Popen[str] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def https_url(self) -> str:
        """The same port, for a client of an upstream that speaks TLS (the proxy passes it)."""
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> NetemProxy:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "crypto_lakehouse.bench.netem", json.dumps(asdict(self.config))],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        line = self.process.stdout.readline() if self.process.stdout else ""
        if not line.strip().isdigit():
            self.stop()
            raise RuntimeError("netem proxy did not start")
        self.port = int(line)
        return self

    def connections(self) -> int:
        """TCP connections the proxy has accepted so far (clients that reconnect per request
        open about one per object; clients that keep connections alive, a few)."""
        if self.process is None or self.process.stdout is None:
            return 0
        self.process.send_signal(signal.SIGUSR1)
        return int(self.process.stdout.readline())

    def cpu_seconds(self) -> float:
        """CPU seconds (user + system) the proxy process has used so far."""
        if self.process is None:
            return 0.0
        return cpu_seconds([self.process.pid]) or 0.0

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> NetemProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="latency and fault proxy (JSON config)")
    parser.add_argument("config", help="NetemConfig fields as a JSON object")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    config = NetemConfig(**json.loads(args.config))
    asyncio.run(serve(config, args.port))  # until SIGTERM


if __name__ == "__main__":
    main()
