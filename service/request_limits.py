"""How large a request may be: its body, and the strings, lists, keys and nesting of a job's settings.

The body limit is an ASGI middleware, so a body past it is refused with 413 before any of it is parsed, or even
kept: a declared Content-Length over the limit is refused at once, and a body sent without one is read up to
the limit and refused as it passes it.  Uploads (PUT /v1/sources/...) stream to disk under their own cap
(files.py) and are left alone here.
"""
import json
from typing import Any, Callable, List, Optional

#: Past these, a job's overrides are refused with 422, whatever the body limit allows.
MAX_DEPTH = 6
MAX_KEYS = 500
MAX_KEY = 200
MAX_STRING = 4096
MAX_LIST = 256


def _streamed(scope) -> bool:
    return scope["method"] == "PUT" and scope["path"].startswith("/v1/sources/")


class BodyLimit:
    """Refuse a request body over ``limit`` bytes with 413, before the application sees any of it."""

    def __init__(self, app, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or _streamed(scope):
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await self._refuse(send)
            return
        body, more = [], True
        size = 0
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            size += len(message.get("body", b""))
            if size > self.limit:
                await self._refuse(send)
                return
            body.append(message.get("body", b""))
            more = message.get("more_body", False)
        whole = b"".join(body)
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:  # the body was read: what is left is to wait for the client to go
                return await receive()
            replayed = True
            return {"type": "http.request", "body": whole, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, send) -> None:
        detail = (f"the request body is over {self.limit} bytes, this service's limit for a request "
                  "(--max-request; uploads to /v1/sources have their own)")
        payload = json.dumps({"detail": detail}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": payload})


def overrides_problem(value: Any) -> Optional[str]:
    """What makes a job's overrides too large (too deep, too many keys, a string or list too long), or None."""
    keys: List[int] = [0]

    def walk(node: Any, depth: int, where: Callable[[], str]) -> Optional[str]:
        if depth > MAX_DEPTH:
            return f"{where()}: nested deeper than {MAX_DEPTH} levels"
        if isinstance(node, dict):
            for key, item in node.items():
                keys[0] += 1
                if keys[0] > MAX_KEYS:
                    return f"more than {MAX_KEYS} keys in all"
                if len(str(key)) > MAX_KEY:
                    return f"a key longer than {MAX_KEY} characters"
                found = walk(item, depth + 1, lambda key=key: f"{where()}.{key}" if where() else str(key))
                if found:
                    return found
        elif isinstance(node, list):
            if len(node) > MAX_LIST:
                return f"{where()}: a list of more than {MAX_LIST} items"
            for item in node:
                found = walk(item, depth + 1, where)
                if found:
                    return found
        elif isinstance(node, str) and len(node) > MAX_STRING:
            return f"{where()}: a string longer than {MAX_STRING} characters"
        return None

    return walk(value, 0, lambda: "")
