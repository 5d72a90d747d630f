#!/usr/bin/env python3
"""fake_faas.py PORT [FAILS]: a stand-in FaaS router on 127.0.0.1:PORT for tests.

POST /function/reverse   -> 200, the body reversed
POST /function/flaky     -> 503 for the first FAILS calls, then like reverse
POST /function/notfound  -> 404 "no such function"
POST /function/slow      -> sleeps 1 s, then like reverse
Each request is appended to calls.log in the working directory (path, attempt).
"""
import http.server
import sys
import time

fails = {"n": int(sys.argv[2]) if len(sys.argv) > 2 else 0}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open("calls.log", "a") as f:
            f.write("%s %s %s\n" % (self.path, self.headers.get("X-Pmesh-Attempt"),
                                     self.headers.get("X-Pmesh-Target")))
        if self.path == "/function/flaky" and fails["n"] > 0:
            fails["n"] -= 1
            return self.reply(503, b"not yet")
        if self.path == "/function/notfound":
            return self.reply(404, b"no such function")
        if self.path == "/function/slow":
            time.sleep(1)
        self.reply(200, body[::-1])

    def reply(self, code, out):
        self.send_response(code)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
