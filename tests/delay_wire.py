#!/usr/bin/env python3
"""A network cable with a fixed delay, for tests/netem_slow.sh on kernels without sch_netem.

Why it exists: the test's slow link needs 100 ms of delay each way, and this kernel has no
qdisc that can add it (no netem, fq or etf; modules cannot be loaded). So this script is the
cable: it creates two TAP devices, A and B (the test then moves one into the hospital's
network namespace and puts the other on the bridge), and copies every Ethernet frame that
leaves one out of the other DELAY seconds after it left, in order. The delay is on the
packets, so TCP on the link sees the full round trip (retransmission timeouts, congestion
window growth), as it would over netem; the test's tbf qdiscs and nftables loss rule still
act on the two devices, so rate, loss and delay apply together.

Usage (as root, in the namespace where both devices are to appear):
    delay_wire.py NAME_A NAME_B DELAY_SECONDS
Prints "ready" once both devices exist; runs until killed; the devices go with it. On
SIGTERM/SIGINT it prints how many frames it carried and how many it dropped (a device that
was down), then exits 0. Standard library only.
"""
import collections
import fcntl
import os
import select
import signal
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TAP, IFF_NO_PI = 0x0002, 0x1000


def open_tap(name):
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
    return fd


def main():
    name_a, name_b, delay = sys.argv[1], sys.argv[2], float(sys.argv[3])
    fd_a, fd_b = open_tap(name_a), open_tap(name_b)
    peer = {fd_a: fd_b, fd_b: fd_a}
    # One FIFO per direction of (due time, frame): the delay is constant, so due times are
    # already in order and the head of each queue is the next frame to go out that way.
    queues = {fd_a: collections.deque(), fd_b: collections.deque()}
    stats = {"carried": 0, "dropped": 0}

    def stop(*_):
        print(f"delay_wire: carried {stats['carried']} frames, dropped {stats['dropped']}", flush=True)
        sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("ready", flush=True)

    while True:
        now = time.monotonic()
        for src, q in queues.items():
            while q and q[0][0] <= now:
                try:
                    os.write(peer[src], q.popleft()[1])
                    stats["carried"] += 1
                except OSError:  # the far device is down (being moved, or not up yet): lost
                    stats["dropped"] += 1
        due = [q[0][0] for q in queues.values() if q]
        timeout = max(0.0, min(due) - time.monotonic()) if due else None
        readable, _, _ = select.select([fd_a, fd_b], [], [], timeout)
        now = time.monotonic()
        for fd in readable:
            while True:
                try:
                    frame = os.read(fd, 65536)
                except BlockingIOError:
                    break
                queues[fd].append((now + delay, frame))


if __name__ == "__main__":
    main()
