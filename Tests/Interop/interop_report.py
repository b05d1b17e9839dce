"""What the interoperability scripts share: run a scenario, print one JSON report line."""
import asyncio
import json


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def answer_of(result):
    """The JSON answer of a successful tool call; fails on an `isError` result."""
    text = "".join(getattr(block, "text", "") for block in result.content)
    check(not result.is_error, "tool failed: " + text)
    return json.loads(text)


def report(scenario, args):
    """Runs `scenario(args)` and prints its report with ok: true, or the failure; returns the exit status."""
    try:
        outcome = asyncio.run(scenario(args))
    except BaseException as error:  # noqa: BLE001 - the test prints whatever went wrong
        while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
            error = error.exceptions[0]
        print(json.dumps({"ok": False, "error": "%s: %s" % (type(error).__name__, error)}), flush=True)
        return 1
    outcome["ok"] = True
    print(json.dumps(outcome), flush=True)
    return 0
