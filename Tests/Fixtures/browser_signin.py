#!/usr/bin/env python3
"""Walks a sign-in in headless Chromium, as a person would: the identity provider's login form,
then the worker's consent page, clicking Allow. Driven over the DevTools protocol on a pipe
(`--remote-debugging-pipe`), with nothing but the standard library.

    browser_signin.py --url AUTHORIZE_URL --user EMAIL --password PW --redirect URI --screenshot FILE

Prints one JSON object: the consent page's title and text, every request the browser made to
show the consent page (its document, and nothing else: it loads nothing), the screenshot's size and how
many of its pixels have the Allow button's colour, and the query the browser was finally sent to
the client's redirect URI with (code, state, iss). Exits 0, or 1 with the failure.
"""
import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from browser_check import png_pixels  # noqa: E402

BUTTON = bytes.fromhex("1f6feb")


class DevTools:
    """Chromium's DevTools protocol over the pipe: commands out on fd 3, messages in on fd 4."""

    def __init__(self):
        to_browser_read, self.out = os.pipe()
        self.inp, from_browser_write = os.pipe()

        def wire():
            os.dup2(to_browser_read, 3)
            os.dup2(from_browser_write, 4)

        self.process = subprocess.Popen(
            ["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
             "--remote-debugging-pipe", "--user-data-dir=" + tempfile.mkdtemp(prefix="chromium-"), "--window-size=1000,800",
             "about:blank"],
            pass_fds=(3, 4, to_browser_read, from_browser_write), preexec_fn=wire, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser_read)
        os.close(from_browser_write)
        self.buffer = b""
        self.next_id = 0
        self.events = []
        self.session = None

    def send(self, method, params=None, session=True):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self.out, json.dumps(message).encode() + b"\0")
        wanted = self.next_id
        while True:
            reply = self.read()
            if reply.get("id") == wanted:
                if "error" in reply:
                    raise RuntimeError("%s: %s" % (method, reply["error"]))
                return reply.get("result", {})
            self.events.append(reply)

    def read(self, timeout=30):
        deadline = time.time() + timeout
        while b"\0" not in self.buffer:
            if time.time() > deadline:
                raise RuntimeError("the browser said nothing for %d s" % timeout)
            chunk = os.read(self.inp, 65536)
            if not chunk:
                raise RuntimeError("the browser closed its pipe")
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def wait_for(self, predicate, timeout=30):
        """The first event (already received, or coming) that `predicate` accepts."""
        deadline = time.time() + timeout
        for index, event in enumerate(self.events):
            if predicate(event):
                del self.events[index]
                return event
        while time.time() < deadline:
            event = self.read(timeout=max(1, deadline - time.time()))
            if predicate(event):
                return event
            self.events.append(event)
        raise RuntimeError("no such event within %d s" % timeout)

    def evaluate(self, expression):
        return self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}).get("result", {}).get("value")

    def close(self):
        try:
            self.send("Browser.close", session=False)
        except Exception:  # noqa: BLE001 - closing is best effort
            pass
        self.process.wait(timeout=10)


def loaded(event):
    return event.get("method") == "Page.loadEventFired"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--redirect", required=True)
    parser.add_argument("--screenshot", required=True)
    args = parser.parse_args()
    browser = DevTools()
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        browser.session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True}, session=False)["sessionId"]
        browser.send("Page.enable")
        browser.send("Network.enable")
        browser.send("Page.navigate", {"url": args.url})
        browser.wait_for(loaded)
        if not browser.evaluate("!!document.querySelector('input[name=username]')"):
            raise RuntimeError("no login form at the provider: " + str(browser.evaluate("document.body.innerText")))
        browser.events.clear()
        browser.evaluate(
            "document.querySelector('input[name=username]').value = %s; document.querySelector('input[name=password]').value = %s;"
            "document.querySelector('form').submit()" % (json.dumps(args.user), json.dumps(args.password)))
        browser.wait_for(loaded)
        # The consent page: what it says, and everything its load fetched (from its document on).
        sent = [event["params"]["request"]["url"] for event in browser.events if event.get("method") == "Network.requestWillBeSent"]
        location = browser.evaluate("location.href")
        page_requests = sent[sent.index(location):] if location in sent else sent
        browser.events.clear()
        title = browser.evaluate("document.title")
        text = browser.evaluate("document.body.innerText")
        if not browser.evaluate("!!document.querySelector('button[name=decision][value=allow]')"):
            raise RuntimeError("no consent form at %s: %s" % (location, text))
        shot = browser.send("Page.captureScreenshot", {"format": "png"})
        with open(args.screenshot, "wb") as handle:
            handle.write(base64.b64decode(shot["data"]))
        width, height, channels, rows = png_pixels(args.screenshot)
        button = sum(1 for row in rows for x in range(0, width * channels, channels) if bytes(row[x:x + 3]) == BUTTON)
        browser.evaluate("document.querySelector('button[name=decision][value=allow]').click()")
        sent = browser.wait_for(lambda event: event.get("method") == "Network.requestWillBeSent"
                                and event["params"]["request"]["url"].startswith(args.redirect))
        final = sent["params"]["request"]["url"]
        print(json.dumps({
            "ok": True, "title": title, "text": text, "consent_url": location, "requests": page_requests,
            "width": width, "height": height, "button_pixels": button,
            "redirect": dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(final).query)),
        }), flush=True)
        return 0
    except Exception as error:  # noqa: BLE001 - the test prints whatever went wrong
        print(json.dumps({"ok": False, "error": "%s: %s" % (type(error).__name__, error)}), flush=True)
        return 1
    finally:
        browser.close()


if __name__ == "__main__":
    sys.exit(main())
