#!/usr/bin/env python3
"""Seeds 000/001's pickle client, fixed into working Python 3.

Usage: pickle_client.py HOST PORT

Connects, reads one framed message (a 10-byte length header, then a pickled
object) with the seed's recv(10) loop, prints repr() of the unpickled object
and exits 0. Exits 1 if the connection ends before a whole frame arrived or
nothing comes within 5 seconds. Progress lines go to stderr, as the seed
printed them, so stdout holds only the object.

Fixes to the seed: it was indented wrongly and used socket.gethostname();
it parsed the length from the first recv(10), which may return fewer than 10
bytes (now the header is accumulated first); it looped forever, even after
the server closed (now an empty recv ends it).

Run against echod in framed mode with a pickled banner and --once:
    python3 tests/seeds/make_banner.py /tmp/banner.pickle
    echod --mode framed --banner-file /tmp/banner.pickle --once &
    python3 tests/seeds/pickle_client.py 127.0.0.1 12345
    {1: 'Client', 2: 'Server'}
"""
import pickle
import socket
import sys

a = 10  # header length, as in the seed


def main():
    if len(sys.argv) != 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    host, port = sys.argv[1], int(sys.argv[2])
    try:
        s = socket.create_connection((host, port), timeout=5)
    except OSError as e:
        print(f"cannot connect to {host}:{port}: {e}", file=sys.stderr)
        return 1

    complete_info = b''
    rec_msg = True
    x = 0
    while True:
        try:
            mymsg = s.recv(10)
        except OSError as e:  # socket.timeout included
            print(f"error waiting for the frame: {e}", file=sys.stderr)
            return 1
        if len(mymsg) <= 0:
            print(f"connection closed after {len(complete_info)} bytes, "
                  "before a whole frame", file=sys.stderr)
            return 1
        complete_info += mymsg
        if rec_msg and len(complete_info) >= a:
            print(f"The length of message = {complete_info[:a]}", file=sys.stderr)
            x = int(complete_info[:a])
            rec_msg = False
        if not rec_msg and len(complete_info) - a >= x:
            print("Recieved the complete info", file=sys.stderr)
            m = pickle.loads(complete_info[a:a + x])
            print(repr(m))
            s.close()
            return 0


if __name__ == "__main__":
    sys.exit(main())
