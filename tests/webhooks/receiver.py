"""A webhook receiver for the tests, on 127.0.0.1: every delivery is verified with the
`standardwebhooks` package (the Standard Webhooks reference implementation, written by no
one here), then answered.

    receiver.py <port-file>          listens on a free port, writes it to <port-file>

Control (JSON over HTTP, same port):
    POST /control   {"secrets": ["whsec_…", …], "fail_for_seconds": 3.5}
                    verify with any of these secrets; answer 500 until that many seconds
                    from now (deliveries are still verified and logged)
    GET  /received  every delivery so far: [{"id", "valid", "error", "status", "event"}]
Until the first /control gives it secrets, it answers deliveries 503 with Retry-After
(logged with "valid": null): a receiver not yet set up, as the webhook's own
`webhook.created` can arrive before the test has read the secret from the answer.
    POST /verify    {"headers": {…}, "body": "…"}: {"valid": bool, "error": "…"} (no logging)
Any other POST is a delivery.
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook

lock = threading.Lock()
state = {"secrets": [], "fail_until": 0.0, "received": []}


def verify(body: bytes, headers: dict) -> tuple:
    """(valid, error): valid when any configured secret verifies (signature and timestamp)."""
    errors = []
    for secret in state["secrets"]:
        try:
            Webhook(secret).verify(body, headers)
            return True, None
        except Exception as e:  # the library raises WebhookVerificationError
            errors.append(str(e))
    return False, "; ".join(errors) or "no secret configured"


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, payload=None):
        body = json.dumps(payload).encode() if payload is not None else b""
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/received":
            with lock:
                return self.reply(200, state["received"])
        self.reply(404, {})

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.path == "/control":
            c = json.loads(body)
            with lock:
                state["secrets"] = c.get("secrets", state["secrets"])
                state["fail_until"] = time.time() + float(c.get("fail_for_seconds", 0))
            return self.reply(200, {})
        if self.path == "/verify":
            c = json.loads(body)
            valid, error = verify(c["body"].encode(), c["headers"])
            return self.reply(200, {"valid": valid, "error": error})
        headers = {k.lower(): v for k, v in self.headers.items()}
        with lock:
            ready = bool(state["secrets"])
        valid, error = verify(body, headers) if ready else (None, "not set up yet")
        with lock:
            failing = time.time() < state["fail_until"]
            status = 503 if not ready else 400 if not valid else 500 if failing else 204
            try:
                event = json.loads(body)
            except ValueError:
                event = None
            state["received"].append({"id": headers.get("webhook-id"), "valid": valid, "error": error, "at": time.time(),
                                      "status": status, "signatures": len(headers.get("webhook-signature", "").split()),
                                      "event": event})
        if status == 503:
            self.send_response(503)
            self.send_header("retry-after", "1")
            self.send_header("content-length", "0")
            self.end_headers()
            return
        self.reply(status)


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    import os
    os.replace(sys.argv[1] + ".tmp", sys.argv[1])
    server.serve_forever()


if __name__ == "__main__":
    main()
