#!/usr/bin/env python3
"""marketplace.py PORT DELAY_S: a simulated human-task marketplace.

POST /tasks  {"question": "...", "callback_url": "...", "settle_token": "..."}
    -> 202; DELAY_S seconds later a "worker" answers by POSTing
       {"value": "<answer>"} to callback_url with
       "Authorization: Bearer <settle_token>", the way Mechanical Turk or a
       payment provider calls a webhook. Each event is printed on stdout.
"""
import json
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DELAY = float(sys.argv[2]) if len(sys.argv) > 2 else 2.0


def log(msg):
    print("%.3f marketplace: %s" % (time.time(), msg), flush=True)


def answer(task):
    time.sleep(DELAY)
    body = json.dumps({"value": "a human says: %s -> yes" % task["question"]}).encode()
    req = urllib.request.Request(task["callback_url"], data=body, method="POST",
                                 headers={"Content-Type": "application/json",
                                          "Authorization": "Bearer " + task["settle_token"]})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            log("called back %s -> HTTP %d" % (task["callback_url"], r.status))
    except Exception as e:  # the demo shows the failure rather than hiding it
        log("callback to %s failed: %s" % (task["callback_url"], e))


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        if self.path != "/tasks":
            self.send_response(404)
            self.end_headers()
            return
        task = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        log("task received: %r; a human will answer in %.1f s" % (task["question"], DELAY))
        threading.Thread(target=answer, args=(task,), daemon=True).start()
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
