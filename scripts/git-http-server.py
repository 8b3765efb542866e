#!/usr/bin/env python3
"""A local git server over smart HTTP, for Flux's source-controller.

Serves every bare repository under --root at http://127.0.0.1:PORT/<name>.git
(and /healthz for a liveness probe) by running `git http-backend` (git's own CGI program) for each request. Flux
refuses file:// URLs and cannot clone over git's "dumb" HTTP protocol, so
this is the smallest real git server that it accepts. Read-only unless
--allow-push is given; meant for loopback only, no authentication.

    git-http-server.py --root DIR --port PORT [--bind 127.0.0.1] [--allow-push]
"""

import argparse
import http.server
import os
import shutil
import subprocess
import sys
import urllib.parse


def git_http_backend():
    exec_path = subprocess.run(
        ["git", "--exec-path"], check=True, capture_output=True, text=True
    ).stdout.strip()
    path = os.path.join(exec_path, "git-http-backend")
    if not os.access(path, os.X_OK):
        sys.exit("git-http-backend not found in %s (install git)" % exec_path)
    return path


class Handler(http.server.BaseHTTPRequestHandler):
    # HTTP/1.0: every response ends by closing the connection, so the CGI
    # output can be passed on as it is, without a Content-Length.
    protocol_version = "HTTP/1.0"
    server_version = "stepwise-git-http/1"
    backend = None
    root = None
    allow_push = False

    def do_GET(self):
        if self.path == "/healthz":
            body = b"ok\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.run_backend()

    def do_POST(self):
        self.run_backend()

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    # Trailers end with an empty line.
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def run_backend(self):
        url = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(url.path)
        if ".." in path.split("/"):
            self.send_error(400, "bad path")
            return
        if not self.allow_push and (
            "git-receive-pack" in path or "service=git-receive-pack" in url.query
        ):
            self.send_error(403, "this server is read-only")
            return
        body = self.read_body() if self.command == "POST" else b""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": self.root,
            "GIT_HTTP_EXPORT_ALL": "1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "SERVER_SOFTWARE": self.server_version,
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": str(self.server.server_address[1]),
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": url.query,
            "REMOTE_ADDR": self.client_address[0],
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
        }
        if self.allow_push:
            env["REMOTE_USER"] = "local"  # http-backend allows push to a known user
        for key, value in self.headers.items():
            name = "HTTP_" + key.upper().replace("-", "_")
            if name not in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
                env[name] = value
        proc = subprocess.run([self.backend], input=body, env=env, capture_output=True)
        if proc.stderr:
            sys.stderr.write(proc.stderr.decode(errors="replace"))
        head, sep, payload = proc.stdout.partition(b"\r\n\r\n")
        if not sep:
            head, sep, payload = proc.stdout.partition(b"\n\n")
        if not sep:
            self.send_error(502, "git http-backend gave no response (exit %d)" % proc.returncode)
            return
        status, headers = 200, []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            else:
                headers.append((name.strip(), value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.log_date_time_string(), fmt % args))
        sys.stderr.flush()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", required=True, help="directory holding the bare repositories")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--bind", default="127.0.0.1")
    p.add_argument("--allow-push", action="store_true")
    a = p.parse_args()
    if shutil.which("git") is None:
        sys.exit("git is not on PATH")
    Handler.backend = git_http_backend()
    Handler.root = os.path.abspath(a.root)
    Handler.allow_push = a.allow_push
    os.makedirs(Handler.root, exist_ok=True)
    server = http.server.ThreadingHTTPServer((a.bind, a.port), Handler)
    server.daemon_threads = True
    sys.stderr.write("serving git repositories in %s at http://%s:%d/\n" % (Handler.root, a.bind, a.port))
    sys.stderr.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
