#!/usr/bin/env python3
"""logsink.py SOCKET OUTFILE — a syslog receiver for a sandbox's private /dev/log.

Binds a unix datagram socket at SOCKET (what tests/lib/sandbox.sh binds over /dev/log),
appends every datagram as one line to OUTFILE (newlines inside a message become "\\n"),
and keeps draining until SIGTERM/SIGINT. It drains promptly, so the senders never block on
a full queue: logging costs what it costs with a real syslog daemon that keeps up.
The socket file is removed on exit.
"""
import os
import signal
import socket
import sys


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: logsink.py SOCKET OUTFILE")
    path, out = sys.argv[1], sys.argv[2]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    os.chmod(path, 0o666)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    except OSError:
        pass

    def stop(*_):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        with open(out, "ab", buffering=0) as f:
            while True:
                data = sock.recv(65536)
                f.write(data.replace(b"\n", b"\\n") + b"\n")
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass


if __name__ == "__main__":
    main()
