#!/usr/bin/env python3
"""Finds past conversations with the official MCP Python SDK, as a client that restarted would.

    mcp_resources.py --worker URL --mode legacy|auto --api-key KEY --prefix P

Asks three questions in three conversations (P-1, P-2, P-3), then with a new client: lists
the resources page by page (the worker is started with a page of 2), reads one as Markdown
and as JSON, lists the resource templates, and reads a URI that names nothing. Prints one
JSON object (ok, pages, titles, ...) and exits 0, or prints the failure and exits 1.
"""
import argparse
import json
import sys

import httpx2
import interop_report
from interop_report import answer_of, check

from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client

REPOSITORY = {"remote": "github", "repository": "acme/widgets"}


def connect(args, http):
    return Client(streamable_http_client(args.worker + "/mcp", http_client=http), mode=args.mode)


async def scenario(args):
    headers = {"Authorization": "Bearer " + args.api_key}
    report = {"mode": args.mode}
    questions = ["How is routing done in %s?" % args.prefix, "Where are requests parsed?", "What tests cover the parser?"]
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=120)) as http:
        async with connect(args, http) as client:
            check(client.server_capabilities.resources is not None, "the server must offer resources")
            for index, question in enumerate(questions, start=1):
                answer_of(await client.call_tool(
                    "query_repository", {"query": question, "repositories": [REPOSITORY], "session_id": "%s-%d" % (args.prefix, index)}))

        # A client that restarted: it remembers nothing, and finds its threads again.
        async with connect(args, http) as client:
            report["protocol_version"] = client.protocol_version
            pages = []
            cursor = None
            while True:
                listed = await client.list_resources(cursor=cursor)
                pages.append([resource.uri for resource in listed.resources])
                resources = listed.resources
                report.setdefault("titles", []).extend(resource.title for resource in resources)
                report.setdefault("mime_types", []).extend(resource.mime_type for resource in resources)
                cursor = listed.next_cursor
                if not cursor:
                    break
            report["pages"] = pages
            uri = "conversation://%s-2" % args.prefix
            check(uri in sum(pages, []), "%s is listed: %s" % (uri, pages))
            read = await client.read_resource(uri)
            by_type = {content.mime_type: content.text for content in read.contents}
            check(set(by_type) == {"text/markdown", "application/json"}, "both forms: %s" % list(by_type))
            report["markdown"] = by_type["text/markdown"]
            document = json.loads(by_type["application/json"])
            report["json_session_id"] = document["session_id"]
            report["json_roles"] = [message["role"] for message in document["messages"]]
            templates = await client.list_resource_templates()
            report["templates"] = [template.uri_template for template in templates.resource_templates]
            try:
                await client.read_resource("conversation://%s-missing" % args.prefix)
                report["missing"] = "read"
            except MCPError as error:
                report["missing"] = error.error.code
    return report


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", required=True)
    parser.add_argument("--mode", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--prefix", required=True)
    return interop_report.report(scenario, parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
