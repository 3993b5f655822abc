"""A webhook receiver for the tests, on 127.0.0.1: every delivery is verified with the
`standardwebhooks` package (the Standard Webhooks reference implementation, written by no
one here), then answered.

    receiver.py <port-file>          listens on a free port, writes it to <port-file>

Control (JSON over HTTP, same port):
    POST /control   {"secrets": ["whsec_…", …], "fail_for_seconds": 3.5}
                    verify with any of these secrets; answer 500 until that many seconds
                    from now (deliveries are still verified and logged)
                    {"status": 410, "retry_after": "2"}: answer every valid delivery with
                    this status (and Retry-After); {"status": null} ends it
                    {"hang_seconds": 60}: hold every delivery that long before answering
                    (its arrival is logged at once, with "answered": false until then)
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
state = {"secrets": [], "fail_until": 0.0, "received": [], "status": None, "retry_after": None,
         "hang": 0.0}


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
                if "fail_for_seconds" in c:
                    state["fail_until"] = time.time() + float(c["fail_for_seconds"])
                for key in ("status", "retry_after"):
                    if key in c:
                        state[key] = c[key]
                if "hang_seconds" in c:
                    state["hang"] = float(c["hang_seconds"])
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
            if ready and valid and state["status"] is not None:
                status = int(state["status"])
            retry_after = state["retry_after"] if ready else "1"
            hang = state["hang"]
            try:
                event = json.loads(body)
            except ValueError:
                event = None
            record = {"id": headers.get("webhook-id"), "valid": valid, "error": error, "at": time.time(),
                      "status": status, "signatures": len(headers.get("webhook-signature", "").split()),
                      "event": event, "answered": hang <= 0}
            state["received"].append(record)
        if hang > 0:
            time.sleep(hang)
            with lock:
                record["answered"] = True
        try:
            if status in (429, 503) and retry_after is not None:
                self.send_response(status)
                self.send_header("retry-after", str(retry_after))
                self.send_header("content-length", "0")
                self.end_headers()
                return
            self.reply(status)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the sender gave up waiting (its timeout)


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    import os
    os.replace(sys.argv[1] + ".tmp", sys.argv[1])
    server.serve_forever()


if __name__ == "__main__":
    main()
