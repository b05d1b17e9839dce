#!/usr/bin/env python3
"""Signs in to a worker with the official MCP Python SDK's OAuth client (`OAuthClientProvider`),
the way a person at a browser would, then calls tools.

    mcp_signin.py --front URL --user EMAIL --password PW [--cimd-url URL] [--auth-method METHOD]
                  [--refresh-after SECONDS] [--mode auto|legacy] [--state FILE] [--phase sign-in|resume]
    mcp_signin.py --walk AUTHORIZE_URL --user EMAIL --password PW [--decision allow|deny]

The SDK does discovery (the 401's WWW-Authenticate, protected resource metadata, authorization
server metadata), registration (Dynamic Client Registration, or a Client ID Metadata Document
with --cimd-url), PKCE and the token exchange. Its redirect handler is a browser's part, played
by an HTTP client with a cookie jar: it follows the redirects to the identity provider, logs in
there (a form), comes back to the worker, answers the consent form with "allow", and catches the
redirect to the client's loopback URI. With --state the client's registration and tokens are
kept in FILE, so a second run (--phase resume) goes on with them: its access token forgotten, it
refreshes first, on whichever worker nginx picks. Prints one JSON object and exits 0, or prints the failure and exits 1.

With --walk, only the browser's part is played, from an authorization URL a test made itself:
the JSON says where it ended (the client's redirect, with its query) or the page it stopped at.
"""
import argparse
import html.parser
import json
import os
import sys
import time
import urllib.parse

import httpx2
import interop_report
from interop_report import answer_of, check

from mcp import Client
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

REPOSITORY = {"remote": "github", "repository": "acme/widgets"}
REDIRECT = "http://127.0.0.1:45871/callback"


class Forms(html.parser.HTMLParser):
    """The forms of a page: action, method, and their inputs' names and values."""

    def __init__(self):
        super().__init__()
        self.forms = []

    def handle_starttag(self, tag, attributes):
        attributes = dict(attributes)
        if tag == "form":
            self.forms.append({"action": attributes.get("action") or "", "method": (attributes.get("method") or "get").lower(), "fields": {}})
        elif tag in ("input", "button") and self.forms and attributes.get("name"):
            self.forms[-1]["fields"].setdefault(attributes["name"], attributes.get("value") or "")


class Browser:
    """A person's browser: cookies, redirects followed by hand, forms answered."""

    def __init__(self, user, password, decision="allow", redirect=REDIRECT):
        self.redirect = redirect
        self.user = user
        self.password = password
        self.decision = decision
        self.http = httpx2.Client(follow_redirects=False, timeout=30)
        self.result = None
        self.pages = []  # what was shown on the way: (url, status)
        self.consent = None

    def walk(self, url):
        for _ in range(20):
            if url.startswith(self.redirect):
                query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
                self.result = query
                return
            response = self.http.get(url)
            url = self.follow(url, response)
            if url is None:
                return
        raise RuntimeError("too many redirects")

    def follow(self, url, response):
        self.pages.append((url, response.status_code))
        if response.status_code in (301, 302, 303, 307):
            return urllib.parse.urljoin(url, response.headers["location"])
        if response.status_code != 200:
            raise RuntimeError("HTTP %d at %s: %s" % (response.status_code, url, response.text[:3000]))
        forms = Forms()
        forms.feed(response.text)
        if not forms.forms:
            raise RuntimeError("a page without a form at %s: %s" % (url, response.text[:300]))
        form = forms.forms[0]
        fields = dict(form["fields"])
        if "username" in fields:
            fields.update(username=self.user, password=self.password)
        elif "decision" in fields:
            self.consent = {"url": url, "html": response.text, "csp": response.headers.get("content-security-policy")}
            fields["decision"] = self.decision
        target = urllib.parse.urljoin(url, form["action"]) if form["action"] else url
        posted = self.http.post(target, data=fields, headers={"Referer": url})
        return self.follow(target, posted)

    async def redirect_handler(self, url):
        self.walk(url)

    async def callback_handler(self):
        if not self.result or "code" not in self.result:
            raise RuntimeError("no code came back: %s" % self.result)
        return AuthorizationCodeResult(code=self.result["code"], state=self.result.get("state"), iss=self.result.get("iss"))


class FileStorage:
    """The client's registration and tokens, kept in a file between runs (or in memory)."""

    def __init__(self, path, forget_access=False):
        self.path = path
        self.data = json.load(open(path)) if path and os.path.exists(path) else {}
        # A client that kept only its refresh token (its access token expired): it refreshes first.
        self.forget_access = forget_access

    def save(self):
        if self.path:
            with open(self.path, "w") as handle:
                json.dump(self.data, handle)

    async def get_tokens(self):
        if "tokens" not in self.data:
            return None
        tokens = dict(self.data["tokens"])
        if self.forget_access:
            tokens["access_token"] = ""
            self.forget_access = False
        return OAuthToken(**tokens)

    async def set_tokens(self, tokens):
        self.data["tokens"] = tokens.model_dump(mode="json", exclude_none=True)
        self.data.setdefault("token_history", []).append(tokens.access_token)
        self.save()

    async def get_client_info(self):
        return OAuthClientInformationFull(**self.data["client"]) if "client" in self.data else None

    async def set_client_info(self, info):
        self.data["client"] = info.model_dump(mode="json", exclude_none=True)
        self.save()


async def scenario(args):
    browser = Browser(args.user, args.password)
    storage = FileStorage(args.state, forget_access=args.phase == "resume")
    metadata = OAuthClientMetadata(
        client_name="interop sign-in", redirect_uris=[REDIRECT], grant_types=["authorization_code", "refresh_token"], response_types=["code"],
        token_endpoint_auth_method=args.auth_method)
    provider = OAuthClientProvider(
        server_url=args.front + "/mcp", client_metadata=metadata, storage=storage, redirect_handler=browser.redirect_handler,
        callback_handler=browser.callback_handler, client_metadata_url=args.cimd_url)
    report = {"phase": args.phase}
    tokens_before = list(storage.data.get("token_history", []))
    async with httpx2.AsyncClient(auth=provider, timeout=httpx2.Timeout(30, read=120)) as http:
        transport = streamable_http_client(args.front + "/mcp", http_client=http)
        async with Client(transport, mode=args.mode) as client:
            tools = await client.list_tools()
            check(len(tools.tools) == 7, "tools %s" % [tool.name for tool in tools.tools])
            info = answer_of(await client.call_tool("get_repository_info", dict(REPOSITORY, branch="main")))
            check(info["repository"] == "acme/widgets", "info %s" % info)
            answer = answer_of(await client.call_tool(
                "query_repository", {"query": "a question after signing in (%s)" % args.phase, "repositories": [REPOSITORY], "session_id": "signed-in"}))
            report["answer"] = answer["message"]
            if args.refresh_after:
                time.sleep(args.refresh_after)
                listed = answer_of(await client.call_tool("list_conversations", {}))
                report["conversations"] = [item["session_id"] for item in listed["conversations"]]
    report["consent_shown"] = browser.consent is not None
    report["consent_csp"] = browser.consent and browser.consent["csp"]
    report["pages"] = browser.pages
    report["client_id"] = storage.data.get("client", {}).get("client_id")
    report["tokens_issued"] = len(storage.data.get("token_history", [])) - len(tokens_before)
    report["refresh_token"] = storage.data.get("tokens", {}).get("refresh_token")
    report["access_token"] = storage.data.get("tokens", {}).get("access_token")
    report["signed_in_now"] = bool(browser.result)
    return report


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--front")
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--cimd-url")
    parser.add_argument("--auth-method", default=None)
    parser.add_argument("--refresh-after", type=float, default=0)
    parser.add_argument("--mode", default="auto")
    parser.add_argument("--state")
    parser.add_argument("--phase", default="sign-in")
    parser.add_argument("--walk")
    parser.add_argument("--decision", default="allow")
    args = parser.parse_args()
    if args.walk:
        asked = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(args.walk).query))
        browser = Browser(args.user, args.password, decision=args.decision, redirect=asked.get("redirect_uri") or REDIRECT)
        try:
            browser.walk(args.walk)
            outcome = {"ok": True, "redirect": browser.result}
        except RuntimeError as error:
            outcome = {"ok": True, "redirect": None, "stopped": str(error)}
        outcome.update(pages=browser.pages, consent_shown=browser.consent is not None)
        print(json.dumps(outcome), flush=True)
        return 0
    return interop_report.report(scenario, args)


if __name__ == "__main__":
    sys.exit(main())
