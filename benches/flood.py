#!/usr/bin/env python3
"""Connection flood for benches/load.sh: many idle connections plus slowloris ones.

It holds IDLE connections that never send a byte and SLOW connections that send the
start of a request head (request line and Host) and then one more byte of a header
field every SLOW_INTERVAL seconds, never finishing the head. Whenever the server closes
one (keep-alive timeout, head deadline, eviction at its connection cap), it is opened
again at once, so the flood keeps its size for as long as the script runs: this is what
an attacker does, and the server under test has to serve newcomers anyway.

The script only floods. Measuring how long a new client waits is left to a separate
process (load.sh uses curl), so the measurement does not share this interpreter's lock
with a busy event loop.

Output on stdout, one line each:
  FLOOD_READY opened=N seconds=S      when every connection has been opened once
                                      (or after --ready-timeout, with what there is)
  FLOOD_STATS t=S open=N idle=N slow=N reconnects=N connect_errors=N   every second
  FLOOD_RESULT seconds=S open_min=N open_max=N open_last=N reconnects=N
               reconnects_per_s=F connect_errors=N bytes_sent=N
                                      on exit (SIGTERM, SIGINT or --duration)

Example: python3 benches/flood.py --port 18093 --idle 3000 --slow 500 --duration 60
"""

import argparse
import errno
import heapq
import resource
import selectors
import signal
import socket
import sys
import time

# The part of a request head a slowloris sends at once; the rest never comes.
SLOW_HEAD_START = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n"
# What it then trickles, one byte at a time, cycling; never a blank line.
SLOW_TRICKLE = b"X-Slow-Loris: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"
# After a failed connect, wait this long before the next try, so a server that
# refuses does not turn the flooder into a busy loop.
RETRY_AFTER_ERROR = 0.1


class Conn:
    """One flood connection: its socket, kind and slowloris progress."""

    __slots__ = ("sock", "slow", "connected", "trickled")

    def __init__(self, sock, slow):
        self.sock = sock
        self.slow = slow
        self.connected = False
        self.trickled = 0


class Flood:
    def __init__(self, args):
        self.addr = (args.host, args.port)
        self.args = args
        self.sel = selectors.DefaultSelector()
        self.conns = set()
        # (when, sequence, kind) reconnects waiting out RETRY_AFTER_ERROR.
        self.retry = []
        # (when, sequence, conn) next slowloris byte.
        self.trickle = []
        self.seq = 0
        self.reconnects = 0
        self.connect_errors = 0
        self.bytes_sent = 0
        self.opened_once = 0

    def open(self, slow):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        err = sock.connect_ex(self.addr)
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            self.connect_failed(slow)
            return
        conn = Conn(sock, slow)
        self.conns.add(conn)
        self.sel.register(sock, selectors.EVENT_WRITE, conn)

    def connect_failed(self, slow):
        self.connect_errors += 1
        self.seq += 1
        heapq.heappush(self.retry, (time.monotonic() + RETRY_AFTER_ERROR, self.seq, slow))

    def drop(self, conn, reopen=True):
        """Closes `conn` and, unless told not to, opens a replacement of the same kind."""
        if conn not in self.conns:
            return
        self.conns.discard(conn)
        try:
            self.sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()
        if reopen:
            self.reconnects += 1
            self.open(conn.slow)

    def on_writable(self, conn):
        err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err != 0:
            self.drop(conn, reopen=False)
            self.connect_failed(conn.slow)
            return
        conn.connected = True
        self.opened_once += 1
        self.sel.modify(conn.sock, selectors.EVENT_READ, conn)
        if conn.slow:
            if self.send(conn, SLOW_HEAD_START):
                self.schedule_trickle(conn)

    def on_readable(self, conn):
        try:
            data = conn.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        # Whatever the server sends (a 408 after the head deadline, a 503) is
        # followed by a close; a close is the signal to reconnect.
        if not data:
            self.drop(conn)

    def send(self, conn, data):
        try:
            sent = conn.sock.send(data)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            self.drop(conn)
            return False
        self.bytes_sent += sent
        return True

    def schedule_trickle(self, conn):
        # Spread the connections' bytes over the interval instead of sending in bursts.
        self.seq += 1
        delay = self.args.slow_interval * (0.5 + (self.seq % 100) / 100)
        heapq.heappush(self.trickle, (time.monotonic() + delay, self.seq, conn))

    def run_timers(self, now):
        while self.retry and self.retry[0][0] <= now:
            _, _, slow = heapq.heappop(self.retry)
            self.reconnects += 1
            self.open(slow)
        while self.trickle and self.trickle[0][0] <= now:
            _, _, conn = heapq.heappop(self.trickle)
            if conn not in self.conns:
                continue
            byte = SLOW_TRICKLE[conn.trickled % len(SLOW_TRICKLE)]
            conn.trickled += 1
            if self.send(conn, bytes([byte])):
                self.schedule_trickle(conn)

    def counts(self):
        open_idle = sum(1 for c in self.conns if c.connected and not c.slow)
        open_slow = sum(1 for c in self.conns if c.connected and c.slow)
        return open_idle, open_slow

    def run(self, stop):
        args = self.args
        start = time.monotonic()
        # Open everything at once, like an attacker would; the kernel queues
        # what the server has not accepted yet.
        for i in range(args.idle + args.slow):
            self.open(slow=i >= args.idle)
        ready = False
        next_stats = start + 1
        open_min = None
        open_max = 0
        open_last = 0
        while not stop["now"]:
            now = time.monotonic()
            if args.duration and now - start >= args.duration:
                break
            timeout = 0.05
            if self.trickle:
                timeout = max(0.0, min(timeout, self.trickle[0][0] - now))
            for key, events in self.sel.select(timeout):
                conn = key.data
                if conn not in self.conns:
                    continue
                if not conn.connected:
                    if events & selectors.EVENT_WRITE:
                        self.on_writable(conn)
                elif events & selectors.EVENT_READ:
                    self.on_readable(conn)
            now = time.monotonic()
            self.run_timers(now)
            if not ready and (
                self.opened_once >= args.idle + args.slow or now - start >= args.ready_timeout
            ):
                ready = True
                emit(f"FLOOD_READY opened={self.opened_once} seconds={now - start:.1f}")
            if now >= next_stats:
                next_stats += 1
                idle, slow = self.counts()
                open_last = idle + slow
                if ready:
                    open_min = open_last if open_min is None else min(open_min, open_last)
                    open_max = max(open_max, open_last)
                emit(
                    f"FLOOD_STATS t={now - start:.0f} open={open_last} idle={idle} "
                    f"slow={slow} reconnects={self.reconnects} "
                    f"connect_errors={self.connect_errors}"
                )
        seconds = time.monotonic() - start
        emit(
            f"FLOOD_RESULT seconds={seconds:.1f} open_min={open_min or 0} open_max={open_max} "
            f"open_last={open_last} reconnects={self.reconnects} "
            f"reconnects_per_s={self.reconnects / seconds:.0f} "
            f"connect_errors={self.connect_errors} bytes_sent={self.bytes_sent}"
        )
        for conn in list(self.conns):
            self.drop(conn, reopen=False)


def emit(line):
    print(line, flush=True)


def raise_fd_limit(needed):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    if soft < needed:
        sys.exit(f"flood.py: need {needed} file descriptors, the hard limit is {hard}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--idle", type=int, default=3000, help="idle connections")
    parser.add_argument("--slow", type=int, default=500, help="slowloris connections")
    parser.add_argument(
        "--slow-interval",
        type=float,
        default=3.0,
        help="mean seconds between a slowloris connection's bytes",
    )
    parser.add_argument(
        "--duration", type=float, default=0, help="seconds to run; 0 = until SIGTERM"
    )
    parser.add_argument(
        "--ready-timeout",
        type=float,
        default=30,
        help="print FLOOD_READY after this many seconds even if not all opened",
    )
    args = parser.parse_args()
    raise_fd_limit(args.idle + args.slow + 64)

    stop = {"now": False}

    def on_signal(_signum, _frame):
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    Flood(args).run(stop)


if __name__ == "__main__":
    main()
