#!/usr/bin/env python3
"""An independent implementation of the ring's placement (Sources/HashRing/HashRing.swift),
for tests and benchmarks that must not trust the product's own code to tell them which host
owns an id.

    ring_owners.py --nodes host-1,host-2,host-3 ID [ID ...]     prints "ID OWNER RUNNER-UP" per line

Rendezvous hashing: a node's score for an id is mix(fnv1a64(key) ^ fnv1a64(name)), where key
is the id up to its first '~', fnv1a64 is FNV-1a over the UTF-8 bytes finalized with the
SplitMix64 mixer, and the highest score owns the id (ties to the smaller name); the runner-up
is the owner among the other nodes.
"""
import argparse
import sys

MASK = (1 << 64) - 1


def mix(value):
    z = (value + 0x9E3779B97F4A7C15) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def fnv1a(text):
    value = 0xCBF29CE484222325
    for byte in text.encode("utf-8"):
        value ^= byte
        value = (value * 0x100000001B3) & MASK
    return mix(value)


def ranking(identifier, nodes):
    """Nodes from the owner down."""
    key = fnv1a(identifier.split("~", 1)[0])
    return sorted(sorted(set(nodes)), key=lambda name: -mix(key ^ fnv1a(name)))


def owner(identifier, nodes):
    ranked = ranking(identifier, nodes)
    return ranked[0] if ranked else None


def runner_up(identifier, nodes):
    ranked = ranking(identifier, nodes)
    return ranked[1] if len(ranked) > 1 else None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", required=True)
    parser.add_argument("ids", nargs="*")
    args = parser.parse_args()
    nodes = [name for name in args.nodes.split(",") if name]
    identifiers = args.ids or [line.strip() for line in sys.stdin if line.strip()]
    for identifier in identifiers:
        print("%s %s %s" % (identifier, owner(identifier, nodes), runner_up(identifier, nodes) or "-"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
