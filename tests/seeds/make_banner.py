#!/usr/bin/env python3
"""Writes the seeds' banner object, pickled, to a file for echod --banner-file.

Usage: make_banner.py PATH

The file holds the raw pickle of {1: "Client", 2: "Server"} (the object the
seed 000/001 server sends), without a header: in framed mode echod adds the
10-byte length header itself and sends the banner as one frame.
"""
import pickle
import sys


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    m = {1: "Client", 2: "Server"}
    with open(sys.argv[1], "wb") as f:
        f.write(pickle.dumps(m))
    return 0


if __name__ == "__main__":
    sys.exit(main())
