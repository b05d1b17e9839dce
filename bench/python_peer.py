#!/usr/bin/env python3
"""The anchor of the worker benchmark: the same four tools served by the official MCP Python
SDK (MCPServer over Streamable HTTP, sessions and conversations in memory), calling the same
Greptile-shaped upstream with httpx2. Not part of the product.

    python_peer.py --port PORT --upstream http://127.0.0.1:UPSTREAM
"""
import argparse

import httpx2
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
parser.add_argument("--upstream", required=True)
args = parser.parse_args()

server = MCPServer("greptile-peer")
client = httpx2.AsyncClient(base_url=args.upstream, headers={"Authorization": "Bearer key", "X-GitHub-Token": "token"})
conversations: dict[str, list[dict]] = {}


def repository_id(remote: str, repository: str, branch: str) -> str:
    return "%s%%3A%s%%3A%s" % (remote, branch, repository.replace("/", "%2F"))


@server.tool()
async def index_repository(remote: str, repository: str, branch: str = "main", reload: bool = True, notify: bool = False) -> dict:
    response = await client.post("/v2/repositories", json={"remote": remote, "repository": repository, "branch": branch, "reload": reload, "notify": notify})
    return response.json()


@server.tool()
async def get_repository_info(remote: str, repository: str, branch: str = "main") -> dict:
    response = await client.get("/v2/repositories/" + repository_id(remote, repository, branch))
    return response.json()


@server.tool()
async def query_repository(query: str, repositories: list[dict], session_id: str | None = None, stream: bool = False, genius: bool = True) -> dict:
    history = conversations.setdefault(session_id or "default", [])
    messages = (history + [{"role": "user", "content": query}])[-20:]
    response = await client.post("/v2/query", json={"messages": messages, "repositories": repositories, "sessionId": session_id, "stream": False, "genius": genius})
    answer = response.json()
    history.extend([{"role": "user", "content": query}, {"role": "assistant", "content": answer["message"]}])
    return {"message": answer["message"], "sources": answer.get("sources", []), "_session_id": session_id}


@server.tool()
async def search_repository(query: str, repositories: list[dict], session_id: str | None = None, genius: bool = True) -> dict:
    response = await client.post("/v2/search", json={"query": query, "repositories": repositories, "sessionId": session_id})
    return {"results": response.json()}


# Behind nginx the Host header is the front's: the SDK's DNS-rebinding check would refuse it.
server.run("streamable-http", host="127.0.0.1", port=args.port, json_response=True, max_sessions=100000,
           transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False))
