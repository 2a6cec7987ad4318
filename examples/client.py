#!/usr/bin/env python3
"""A client of freezeframe's commit service, with Python's standard library only.

    client.py [--socket PATH] commit SESSION [--output NAME] [--tag TAG]
              [--pause auto|full|none] [--owner OWNER] [--no-wait]
    client.py [--socket PATH] status ID
    client.py [--socket PATH] events ID
    client.py [--socket PATH] list [--session ID] [--state STATE]
    client.py [--socket PATH] cancel ID

`commit` starts a commit and, unless --no-wait, follows its events to the end
and prints the final task; it exits 0 if the task is done, 1 otherwise. Errors
are printed as the API's JSON error ({"code", "message", "field"}) with exit 2.
"""

import argparse
import http.client
import json
import socket
import sys
import urllib.parse

DEFAULT_SOCKET = "/run/freezeframe/freezeframe.sock"


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP/1.1 over a Unix socket."""

    def __init__(self, path, timeout=60):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


class ApiError(Exception):
    def __init__(self, status, body):
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


class Client:
    def __init__(self, socket_path=DEFAULT_SOCKET):
        self.socket_path = socket_path

    def _send(self, method, path, body=None):
        conn = UnixHTTPConnection(self.socket_path)
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=headers)
        return conn, conn.getresponse()

    def call(self, method, path, body=None):
        conn, resp = self._send(method, path, body)
        try:
            raw = resp.read()
        finally:
            conn.close()
        value = json.loads(raw) if raw else None
        if resp.status >= 400:
            raise ApiError(resp.status, value)
        return value

    def commit(self, session, **fields):
        body = {"session": session}
        body.update({k: v for k, v in fields.items() if v is not None})
        return self.call("POST", "/v1/commits", body)

    def status(self, task_id):
        return self.call("GET", f"/v1/commits/{urllib.parse.quote(task_id)}")

    def list(self, session=None, state=None):
        query = {k: v for k, v in (("session", session), ("state", state)) if v}
        suffix = "?" + urllib.parse.urlencode(query) if query else ""
        return self.call("GET", "/v1/commits" + suffix)

    def cancel(self, task_id):
        return self.call("DELETE", f"/v1/commits/{urllib.parse.quote(task_id)}")

    def events(self, task_id):
        """Yields each event until the task ends (the last one is `end`)."""
        conn, resp = self._send("GET", f"/v1/commits/{urllib.parse.quote(task_id)}/events")
        try:
            if resp.status >= 400:
                raw = resp.read()
                raise ApiError(resp.status, json.loads(raw) if raw else None)
            for line in resp:
                if line.strip():
                    yield json.loads(line)
        finally:
            conn.close()


def main(argv=None):
    p = argparse.ArgumentParser(description="freezeframe commit service client")
    p.add_argument("--socket", default=DEFAULT_SOCKET)
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("commit")
    c.add_argument("session")
    c.add_argument("--output")
    c.add_argument("--tag")
    c.add_argument("--pause", choices=["auto", "full", "none"])
    c.add_argument("--owner")
    c.add_argument("--no-wait", action="store_true")
    for name in ("status", "events", "cancel"):
        sub.add_parser(name).add_argument("id")
    ls = sub.add_parser("list")
    ls.add_argument("--session")
    ls.add_argument("--state")
    a = p.parse_args(argv)

    client = Client(a.socket)
    try:
        if a.command == "commit":
            task = client.commit(a.session, output=a.output, tag=a.tag, pause=a.pause, owner=a.owner)
            if not a.no_wait:
                for event in client.events(task["id"]):
                    if event["event"] == "end":
                        task = event["task"]
                    else:
                        prog = event["progress"]
                        print(f"{event['state']}: {prog['files']} entries, {prog['bytes_written']} bytes written",
                              file=sys.stderr)
            print(json.dumps(task, indent=2))
            return 0 if a.no_wait or task["state"] == "done" else 1
        if a.command == "status":
            print(json.dumps(client.status(a.id), indent=2))
        elif a.command == "events":
            for event in client.events(a.id):
                print(json.dumps(event))
        elif a.command == "list":
            print(json.dumps(client.list(a.session, a.state), indent=2))
        elif a.command == "cancel":
            print(json.dumps(client.cancel(a.id), indent=2))
        return 0
    except ApiError as e:
        print(json.dumps(e.body), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
