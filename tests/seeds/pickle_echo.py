#!/usr/bin/env python3
"""Round-trips pickled objects through echod's framed mode (seeds 000/001).

Usage: pickle_echo.py HOST PORT

Sends several pickled objects (a dict, a list, a str, ~100 KB of bytes) over
one connection, each framed as in the seed server:
    f"{len(msg):<10}".encode() + msg
then reads the echoed frames back with the seed's recv(10) loop, unpickles
each and checks it equals what was sent. Prints "ok N" and exits 0 when all
N came back equal; otherwise prints what went wrong on stderr and exits 1.

The frames are sent from a second thread, then the sending side is shut
down (half-close), so that a server applying backpressure cannot deadlock
against a client that sends everything before reading.
"""
import pickle
import socket
import sys
import threading

a = 10  # header length, as in the seed

OBJECTS = [
    {1: "Client", 2: "Server"},
    [1, 2, 'abc'],
    "Socket Programming in Python",
    bytes(range(256)) * 400,  # 102,400 bytes: many recv(10) calls, many reads server side
    {"nested": [(1, 2.5, None), {"k": b"\x00\xff"}], "unicode": "안녕 你好"},
]


def frame(obj):
    msg = pickle.dumps(obj)
    return f"{len(msg):<10}".encode() + msg


def recv_frames(s, count):
    """The seed's recv(10) loop, fixed: header accumulated before parsing,
    bytes past the end of one frame kept for the next, EOF detected."""
    frames = []
    complete_info = b''
    rec_msg = True
    x = 0
    while len(frames) < count:
        mymsg = s.recv(10)
        if len(mymsg) <= 0:
            raise EOFError(f"connection closed after {len(frames)} of {count} frames")
        complete_info += mymsg
        while True:
            if rec_msg and len(complete_info) >= a:
                x = int(complete_info[:a])
                rec_msg = False
            if not rec_msg and len(complete_info) - a >= x:
                frames.append(complete_info[a:a + x])
                complete_info = complete_info[a + x:]
                rec_msg = True
                continue
            break
    return frames


def main():
    if len(sys.argv) != 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    host, port = sys.argv[1], int(sys.argv[2])
    try:
        s = socket.create_connection((host, port), timeout=10)
    except OSError as e:
        print(f"cannot connect to {host}:{port}: {e}", file=sys.stderr)
        return 1

    payload = b''.join(frame(o) for o in OBJECTS)
    send_error = []

    def send_all():
        try:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
        except OSError as e:
            send_error.append(e)

    sender = threading.Thread(target=send_all, daemon=True)
    sender.start()
    try:
        frames = recv_frames(s, len(OBJECTS))
    except (OSError, EOFError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    sender.join(timeout=10)
    if send_error:
        print(f"send error: {send_error[0]}", file=sys.stderr)
        return 1
    for i, (sent, got) in enumerate(zip(OBJECTS, frames)):
        try:
            back = pickle.loads(got)
        except Exception as e:  # a corrupted echo can raise almost anything
            print(f"frame {i}: does not unpickle: {e!r}", file=sys.stderr)
            return 1
        if back != sent:
            print(f"frame {i}: sent {sent!r:.60} got {back!r:.60}", file=sys.stderr)
            return 1
    s.close()
    print(f"ok {len(frames)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
