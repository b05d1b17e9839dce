#!/usr/bin/env python3
"""Drives MCP tasks on the workers, each family as its specification says.

    mcp_tasks.py --worker URL [--other URL] --family extension|experimental [--api-key KEY]

extension: the tasks extension of 2026-07-28 (io.modelcontextprotocol/tasks), through the
official Python SDK's `Client` with a `ClientExtension` that claims `resultType: "task"` and
resolves it by polling `tasks/get` (on --other when given: any worker serves any task). A
query runs as a task and its answer comes back as the call's result; get_repository_info is
answered directly; a task cancelled with `tasks/cancel` ends `cancelled`.

experimental: the tasks of revision 2025-11-25, over plain HTTP as its specification writes
them: the capability and each tool's `execution.taskSupport`, `tools/call` with `params.task`,
`tasks/get` until it ends, `tasks/result`, `tasks/list`, a cancel of an ended task refused
(-32602), a task asked of a tool that forbids it refused (-32601).

Prints one JSON object (ok, ...) and exits 0, or prints the failure and exits 1.
"""
import argparse
import asyncio
import json
import sys
from typing import Any, Literal

import httpx2
import interop_report
from interop_report import answer_of, check
from mcp_types import CallToolResult, Request, RequestParams, Result
from pydantic import Field, TypeAdapter

from mcp import Client
from mcp.client.extension import ClaimContext, ClientExtension, ResultClaim
from mcp.client.streamable_http import streamable_http_client

REPOSITORY = {"remote": "github", "repository": "acme/widgets"}
TASKS = "io.modelcontextprotocol/tasks"
RAW = TypeAdapter(dict[str, Any])


# --- The tasks extension, as a client extension of the SDK -------------------------------------
class CreatedTask(Result):
    """`CreateTaskResult`: the task in place of the call's result."""

    result_type: Literal["task"] = "task"
    task_id: str = Field(alias="taskId")
    status: str
    status_message: str | None = None
    poll_interval_ms: int | None = None
    ttl_ms: int | None = None


class TaskIDParams(RequestParams):
    task_id: str = Field(alias="taskId")


class GetTask(Request[TaskIDParams, Literal["tasks/get"]]):
    method: Literal["tasks/get"] = "tasks/get"
    name_param = "taskId"


class CancelTask(Request[TaskIDParams, Literal["tasks/cancel"]]):
    method: Literal["tasks/cancel"] = "tasks/cancel"
    name_param = "taskId"


class TasksExtension(ClientExtension):
    """Resolves a task by polling `tasks/get` (honouring `pollIntervalMs`) until it ends."""

    identifier = TASKS

    def __init__(self, statuses):
        self.statuses = statuses

    def claims(self):
        return [ResultClaim(result_type="task", model=CreatedTask, resolve=self.resolve)]

    async def resolve(self, created: CreatedTask, context: ClaimContext) -> CallToolResult:
        self.statuses.append(("created", created.task_id, created.status))
        while True:
            task = await get_task(context.session, created.task_id)
            self.statuses.append(("polled", task["taskId"], task["status"]))
            check(task["taskId"] == created.task_id, "tasks/get answered another task: %s" % task)
            check(task["resultType"] == "complete", "tasks/get's resultType: %s" % task)
            if task["status"] == "completed":
                return CallToolResult.model_validate(task["result"])
            check(task["status"] == "working", "the task ended %s: %s" % (task["status"], task))
            await asyncio.sleep(task.get("pollIntervalMs", 1000) / 1000)


async def get_task(session, task_id):
    return await session.send_request(GetTask(params=TaskIDParams(taskId=task_id)), RAW)


async def extension(args):
    headers = {"Authorization": "Bearer " + args.api_key} if args.api_key else {}
    report = {"family": "extension"}
    statuses = []
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=120)) as http:
        transport = streamable_http_client(args.worker + "/mcp", http_client=http)
        async with Client(transport, mode="2026-07-28", extensions=[TasksExtension(statuses)]) as client:
            answer = answer_of(await client.call_tool("query_repository", {"query": "what does the router do?", "repositories": [REPOSITORY]}))
            check(answer["message"] and answer["_session_id"], "the task's answer: %s" % answer)
            report["answer"] = answer["message"]
            report["session_id"] = answer["_session_id"]
            check([s for s in statuses if s[0] == "created"], "the query was not answered as a task: %s" % statuses)
            report["statuses"] = [status for _, _, status in statuses]
            # The short tools answer directly.
            info = answer_of(await client.call_tool("get_repository_info", dict(REPOSITORY, branch="main")))
            check(info["repository"] == "acme/widgets", "info %s" % info)
            # A task cancelled: the claimed shape taken as it is, then tasks/cancel, then tasks/get.
            created = await client.session.call_tool(
                "query_repository", {"query": "a question to cancel", "repositories": [REPOSITORY]}, allow_claimed=True)
            check(isinstance(created, CreatedTask), "not a task: %r" % created)
            acknowledged = await client.session.send_request(CancelTask(params=TaskIDParams(taskId=created.task_id)), RAW)
            check(acknowledged.get("resultType") == "complete", "tasks/cancel's acknowledgement: %s" % acknowledged)
            ended = await get_task(client.session, created.task_id)
            check(ended["status"] == "cancelled", "after tasks/cancel: %s" % ended)
            report["cancelled"] = created.task_id
    if args.other:
        # Any worker serves any task: the first task read again elsewhere.
        first = next(task_id for kind, task_id, _ in statuses if kind == "created")
        async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
            transport = streamable_http_client(args.other + "/mcp", http_client=http)
            async with Client(transport, mode="2026-07-28", extensions=[TasksExtension([])]) as client:
                elsewhere = await get_task(client.session, first)
                check(elsewhere["status"] == "completed" and elsewhere["result"]["structuredContent"]["message"] == report["answer"],
                      "the task read on the other worker: %s" % elsewhere)
                report["read_elsewhere"] = True
    return report


# --- 2025-11-25's tasks, over plain HTTP ---------------------------------------------------------
class Session:
    def __init__(self, http, base):
        self.http = http
        self.base = base
        self.session_id = None
        self.next_id = 0

    async def post(self, method, params, base=None):
        self.next_id += 1
        headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
        if self.session_id:
            headers.update({"MCP-Session-Id": self.session_id, "MCP-Protocol-Version": "2025-11-25"})
        body = {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params}
        response = await self.http.post((base or self.base) + "/mcp", headers=headers, content=json.dumps(body))
        if method == "initialize":
            self.session_id = response.headers["MCP-Session-Id"]
        check(response.status_code == 200, "%s: HTTP %d %s" % (method, response.status_code, response.text))
        return response.json()

    async def result(self, method, params, base=None):
        reply = await self.post(method, params, base)
        check("result" in reply, "%s: %s" % (method, reply))
        return reply["result"]


async def experimental(args):
    headers = {"Authorization": "Bearer " + args.api_key} if args.api_key else {}
    report = {"family": "experimental"}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=300)) as http:
        session = Session(http, args.worker)
        initialized = await session.result(
            "initialize", {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "tasks-2025-11-25", "version": "1"}})
        check(initialized["capabilities"].get("tasks", {}).get("requests", {}).get("tools", {}).get("call") == {},
              "capabilities: %s" % initialized["capabilities"])
        await session.http.post(args.worker + "/mcp", content=json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}), headers={
            "Content-Type": "application/json", "Accept": "application/json, text/event-stream", "MCP-Session-Id": session.session_id,
            "MCP-Protocol-Version": "2025-11-25"})
        tools = {tool["name"]: tool for tool in (await session.result("tools/list", {}))["tools"]}
        check(tools["query_repository"]["execution"]["taskSupport"] == "optional", "query_repository: %s" % tools["query_repository"])
        check(tools["list_conversations"]["execution"]["taskSupport"] == "forbidden", "list_conversations")
        created = await session.result("tools/call", {
            "name": "query_repository", "arguments": {"query": "how is it built?", "repositories": [REPOSITORY]}, "task": {"ttl": 60000}})
        task = created["task"]
        check(task["status"] == "working" and task["ttl"] == 60000 and task["pollInterval"] > 0, "created: %s" % task)
        report["task"] = task["taskId"]
        polls = 0
        other = args.other or args.worker
        while task["status"] == "working":
            await asyncio.sleep(task["pollInterval"] / 1000)
            # A session's requests may go to any worker.
            task = await session.result("tasks/get", {"taskId": task["taskId"]}, base=other if polls % 2 else None)
            polls += 1
        check(task["status"] == "completed", "ended: %s" % task)
        report["polls"] = polls
        result = await session.result("tasks/result", {"taskId": task["taskId"]})
        check(result["_meta"]["io.modelcontextprotocol/related-task"]["taskId"] == task["taskId"], "tasks/result's _meta: %s" % result)
        check(result["structuredContent"]["message"], "tasks/result: %s" % result)
        report["links"] = len([item for item in result["content"] if item["type"] == "resource_link"])
        listed = await session.result("tasks/list", {})
        check(task["taskId"] in [item["taskId"] for item in listed["tasks"]], "tasks/list: %s" % listed)
        refused = await session.post("tasks/cancel", {"taskId": task["taskId"]})
        check(refused.get("error", {}).get("code") == -32602, "cancelling an ended task: %s" % refused)
        forbidden = await session.post("tools/call", {"name": "list_conversations", "arguments": {}, "task": {}})
        check(forbidden.get("error", {}).get("code") == -32601, "a task of a tool that forbids it: %s" % forbidden)
        unknown = await session.post("tasks/get", {"taskId": "0" * 32})
        check(unknown.get("error", {}).get("code") == -32602, "an unknown task: %s" % unknown)
    return report


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", required=True)
    parser.add_argument("--other", default="")
    parser.add_argument("--family", choices=["extension", "experimental"], required=True)
    parser.add_argument("--api-key", default="")
    args = parser.parse_args()
    return interop_report.report(extension if args.family == "extension" else experimental, args)


if __name__ == "__main__":
    sys.exit(main())
