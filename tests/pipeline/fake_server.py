"""A tiny stand-in for the model server, for runner tests that need control over answers.

Speaks the inference contract (``/ping``, ``/execution-parameters``,
``/invocations``) over real HTTP/1.1 keep-alive on 127.0.0.1. Its "prediction" for
a CSV row is the row's first field, so tests can check order and completeness.
Misbehaviour on demand:

- a row containing ``BAD`` -> 400 naming the row;
- a row containing ``BOOM`` -> 500 every time;
- a row containing ``MODEL`` -> 500 marked ``X-Model-Error: deterministic`` with a
  one-line body, as ``serve`` answers an exception in the model's predict;
- a row containing ``CRASH`` -> the connection is dropped unanswered (a worker that
  died holding the request);
- ``fail_first=N`` -> the first N requests answer 503;
- a row containing ``DROP``, or a blank row -> no output line for it (a wrong line
  count, as from a server that skips blank lines);
- ``delay`` seconds before each answer;
- ``execution_parameters`` -> the JSON for /execution-parameters (None: 404);
- ``close_after_answer`` -> drop the connection after each answer without saying
  so (what an idle keep-alive timeout looks like to the client);
- ``announce_close`` -> answer ``Connection: close`` (the real server does with
  several workers) and close.

Run as a script it behaves like ``serve`` (reads ``SAGEMAKER_BIND_TO_PORT``,
``SERVING_HOST``; ``FAKE_*`` variables for the knobs) so process-management tests
can start it as the server command.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (Ctrl-C tests) is expected, not worth a traceback."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeModelServer:
    """Configurable fake; ``requests`` records every /invocations body in arrival order."""

    def __init__(
        self,
        *,
        fail_first: int = 0,
        delay: float = 0.0,
        execution_parameters: dict[str, Any] | None = None,
        port: int = 0,
        host: str = "127.0.0.1",
        close_after_answer: bool = False,
        announce_close: bool = False,
    ) -> None:
        self.announce_close = announce_close
        self.fail_first = fail_first
        self.close_after_answer = close_after_answer
        self.delay = delay
        self.execution_parameters = execution_parameters
        self.requests: list[bytes] = []
        self.statuses: list[int] = []
        self.headers: list[dict[str, str]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._server = _QuietServer((host, port), self._handler())
        self.port = self._server.server_address[1]
        self._thread: threading.Thread | None = None

    def __enter__(self) -> FakeModelServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def serve_forever(self) -> None:
        """Block serving (script mode)."""
        self._server.serve_forever()

    def answer(self, body: bytes, content_type: str = "text/csv") -> tuple[int, bytes]:
        """Status and body for one /invocations request."""
        with self._lock:
            self.requests.append(body)
            number = len(self.requests)
        if number <= self.fail_first:
            return 503, b"warming up\n"
        if not content_type.startswith("text/"):  # a whole binary file: its size
            if b"BAD" in body:
                return 400, b"cannot read the file as NPY\n"
            return 200, f"{len(body)}\n".encode()
        out = []
        for row, line in enumerate(body.split(b"\n"), start=1):
            if b"BAD" in line:
                return 400, f"row {row}: could not convert a value to float\n".encode()
            if b"BOOM" in line:
                return 500, b"internal error\n"
            if b"MODEL" in line:
                return 500, f"model error in predict ({row} rows): RuntimeError: boom\n".encode()
            if b"CRASH" in line:
                return 0, b""
            if b"DROP" in line or not line.strip():
                continue
            out.append(line.split(b",", 1)[0].rstrip(b"\r"))
        return 200, b"\n".join(out) + b"\n"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in two writes: without this, Nagle plus
                # delayed ACKs add ~40 ms to every small answer.
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, body: bytes, content_type: str = "text/csv") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                if status == 500 and body.startswith(b"model error"):
                    self.send_header("X-Model-Error", "deterministic")
                if fake.announce_close and self.command == "POST":
                    self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path == "/ping":
                    self._send(200, b"")
                elif self.path == "/execution-parameters" and fake.execution_parameters:
                    body = json.dumps(fake.execution_parameters).encode()
                    self._send(200, body, "application/json")
                else:
                    self._send(404, b"not found\n", "text/plain")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with fake._lock:
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                    fake.headers.append(dict(self.headers.items()))
                try:
                    if fake.delay:
                        time.sleep(fake.delay)
                    status, answer = fake.answer(body, self.headers.get("Content-Type", ""))
                finally:
                    with fake._lock:
                        fake.in_flight -= 1
                fake.statuses.append(status)
                if status == 0:  # a dead worker answers nothing
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                self._send(status, answer, "text/csv" if status == 200 else "text/plain")
                if fake.close_after_answer:
                    self.close_connection = True

        return Handler


def main() -> None:
    """Script mode: a `serve` look-alike configured by environment variables.

    ``FAKE_PID_FILE`` receives "<pid> <child pid>" once listening; ``FAKE_DUMP_ENV``
    the environment as JSON; ``FAKE_IGNORE_TERM=1`` ignores SIGTERM (to prove the
    SIGKILL fallback); ``FAKE_CHILD=1`` starts a worker-like child in the same group.
    """
    import signal
    import subprocess

    if os.environ.get("FAKE_IGNORE_TERM") == "1":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if os.environ.get("FAKE_DUMP_ENV"):
        with open(os.environ["FAKE_DUMP_ENV"], "w") as dump:  # noqa: PTH123
            json.dump(dict(os.environ), dump)
    params = os.environ.get("FAKE_EXECUTION_PARAMETERS")
    server = FakeModelServer(
        fail_first=int(os.environ.get("FAKE_FAIL_FIRST", "0")),
        delay=float(os.environ.get("FAKE_DELAY", "0")),
        execution_parameters=json.loads(params) if params else None,
        port=int(os.environ.get("SAGEMAKER_BIND_TO_PORT", "8080")),
        host=os.environ.get("SERVING_HOST", "127.0.0.1"),
    )
    child = 0
    if os.environ.get("FAKE_CHILD") == "1":
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"]).pid
    if os.environ.get("FAKE_PID_FILE"):
        with open(os.environ["FAKE_PID_FILE"], "w") as pid_file:  # noqa: PTH123
            pid_file.write(f"{os.getpid()} {child}")
    print(f"fake serve on port {server.port}, pid {os.getpid()}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
