#!/usr/bin/env python3
"""Seed 002's UDP client, fixed into working Python 3.

Usage: udp_client.py HOST PORT

Sends b"Hello, World!" to HOST:PORT, waits up to 2 seconds for the echo,
prints it and exits 0 if it equals what was sent, 1 otherwise (no reply, or
a different one). The seed's "UDP target" lines go to stderr.

Fixes to the seed: Python 3 print(), bytes not str for sendto(), a reply is
actually awaited (the seed only sent), with a timeout, and IPv6 works.
The socket is bound by the kernel to an ephemeral port (>= 1024), so echod's
reflection guard answers it.
"""
import socket
import sys

MESSAGE = b"Hello, World!"


def main():
    if len(sys.argv) != 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    UDP_IP, UDP_PORT = sys.argv[1], int(sys.argv[2])
    print("UDP target IP:", UDP_IP, file=sys.stderr)
    print("UDP target port:", UDP_PORT, file=sys.stderr)
    print("message:", MESSAGE.decode(), file=sys.stderr)

    try:
        family, _, _, _, addr = socket.getaddrinfo(UDP_IP, UDP_PORT, type=socket.SOCK_DGRAM)[0]
        sock = socket.socket(family, socket.SOCK_DGRAM)  # UDP
        sock.settimeout(2)
        sock.sendto(MESSAGE, addr)
        data, _ = sock.recvfrom(65535)
    except socket.timeout:
        print("no reply within 2 s", file=sys.stderr)
        return 1
    except OSError as e:  # e.g. ICMP port unreachable
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(data.decode("utf-8", "replace"))
    return 0 if data == MESSAGE else 1


if __name__ == "__main__":
    sys.exit(main())
