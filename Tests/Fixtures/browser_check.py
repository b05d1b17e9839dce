#!/usr/bin/env python3
"""Loads a page of a worker in headless Chromium, as a person's browser would, and reports
what it shows.

    browser_check.py --url URL --key KEY --screenshot FILE [--color RRGGBB]

A browser cannot be told to send `Authorization: Bearer`, so the page is loaded through a
small proxy on loopback that adds it to every request (and forwards nothing else anywhere).
Prints one JSON object: the DOM Chromium rendered, the screenshot's size in pixels, and how
many of its pixels have `--color` (the chart's bars); exits 0, or 1 with the failure.
"""
import argparse
import http.server
import json
import struct
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
import zlib


def proxy(target, key):
    """A server on a free loopback port relaying GETs to `target` with the bearer key added."""

    class Relay(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            request = urllib.request.Request(target + self.path, headers={"Authorization": "Bearer " + key})
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    status, headers, body = response.status, response.headers, response.read()
            except urllib.error.HTTPError as error:
                status, headers, body = error.code, error.headers, error.read()
            self.send_response(status)
            for name in ("Content-Type", "Content-Security-Policy"):
                if headers.get(name):
                    self.send_header(name, headers[name])
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Relay)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def chromium(arguments):
    base = ["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
            "--user-data-dir=" + tempfile.mkdtemp(prefix="chromium-"), "--window-size=1280,900"]
    done = subprocess.run(base + arguments, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError("chromium failed (%d): %s" % (done.returncode, done.stderr[-2000:]))
    return done.stdout


def png_pixels(path):
    """(width, height, rows of RGB(A) tuples) of an 8-bit PNG, unfiltered: enough to count colors."""
    with open(path, "rb") as handle:
        data = handle.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise RuntimeError("the screenshot is not a PNG")
    position, chunks, header = 8, [], None
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        body = data[position + 8:position + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            chunks.append(body)
        position += 12 + length
    width, height, depth, color_type = header[0], header[1], header[2], header[3]
    if depth != 8 or color_type not in (2, 6):
        raise RuntimeError("unexpected PNG format (depth %d, color type %d)" % (depth, color_type))
    channels = 3 if color_type == 2 else 4
    raw = zlib.decompress(b"".join(chunks))
    stride = width * channels
    rows, previous = [], bytearray(stride)
    for index in range(height):
        line = raw[index * (stride + 1):(index + 1) * (stride + 1)]
        kind, row = line[0], bytearray(line[1:])
        for x in range(stride):
            left = row[x - channels] if x >= channels else 0
            up = previous[x]
            corner = previous[x - channels] if x >= channels else 0
            if kind == 1:
                row[x] = (row[x] + left) & 255
            elif kind == 2:
                row[x] = (row[x] + up) & 255
            elif kind == 3:
                row[x] = (row[x] + (left + up) // 2) & 255
            elif kind == 4:
                estimate = left + up - corner
                distances = (abs(estimate - left), abs(estimate - up), abs(estimate - corner))
                row[x] = (row[x] + (left if distances[0] <= distances[1] and distances[0] <= distances[2]
                                    else up if distances[1] <= distances[2] else corner)) & 255
        rows.append(row)
        previous = row
    return width, height, channels, rows


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--screenshot", required=True)
    parser.add_argument("--color", default="2b6cb0")
    args = parser.parse_args()
    try:
        target = urllib.parse.urlsplit(args.url)
        server = proxy("%s://%s" % (target.scheme, target.netloc), args.key)
        local = "http://127.0.0.1:%d%s" % (server.server_address[1], target.path + ("?" + target.query if target.query else ""))
        dom = chromium(["--dump-dom", local])
        chromium(["--screenshot=" + args.screenshot, local])
        width, height, channels, rows = png_pixels(args.screenshot)
        wanted = bytes.fromhex(args.color)
        colored = sum(1 for row in rows for x in range(0, width * channels, channels) if bytes(row[x:x + 3]) == wanted)
        print(json.dumps({"ok": True, "dom": dom, "width": width, "height": height, "colored_pixels": colored}), flush=True)
        return 0
    except Exception as error:  # noqa: BLE001 - the test prints whatever went wrong
        print(json.dumps({"ok": False, "error": "%s: %s" % (type(error).__name__, error)}), flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
