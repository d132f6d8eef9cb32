"""A minimal Lambda Runtime API (what `cargo lambda watch` and the Lambda service
provide to a bootstrap), for measuring cold starts: hands one event to a freshly started
bootstrap and records when its answer arrives.

time_first_response(bootstrap, event, env) -> (seconds from exec to the response, body)"""
import http.server, json, os, socketserver, subprocess, threading, time


def time_first_response(bootstrap, event, env, timeout=60):
    done = threading.Event()
    result = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            if not self.path.endswith("/invocation/next"):
                self.send_error(404)
                return
            if result.get("served"):
                done.wait(timeout)  # the next event never comes: the process is killed
                return
            result["served"] = True
            body = json.dumps(event).encode()
            self.send_response(200)
            self.send_header("Lambda-Runtime-Aws-Request-Id", "req-1")
            self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 60_000))
            self.send_header("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:bench")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            length = int(self.headers.get("Content-Length", 0))
            body = self.rfile.read(length)
            result["at"] = time.perf_counter()
            result["kind"] = "error" if "error" in self.path else "response"
            result["body"] = body.decode(errors="replace")
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()
            done.set()

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True

    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    full_env = dict(os.environ, **env, AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{server.server_address[1]}",
                    AWS_LAMBDA_FUNCTION_NAME="bench", AWS_LAMBDA_FUNCTION_MEMORY_SIZE="512",
                    AWS_LAMBDA_FUNCTION_VERSION="$LATEST")
    start = time.perf_counter()
    proc = subprocess.Popen([bootstrap], env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not done.wait(timeout):
            raise RuntimeError(f"{bootstrap} answered nothing in {timeout} s")
    finally:
        proc.kill()
        proc.wait()
        server.shutdown()
    return result["at"] - start, result["kind"], result["body"]
