"""Local recording servers for notifier tests: an HTTP webhook endpoint and an SMTP sink.

Both bind 127.0.0.1 on an ephemeral port, run in a daemon thread and record what they receive.
"""

from __future__ import annotations

import base64
import json
import socketserver
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

MAX_LINE = 64 * 1024
POLL_INTERVAL = 0.02


@dataclass(frozen=True)
class Reply:
    """A scripted HTTP answer: ``body`` dicts/lists are sent as JSON, strings/bytes as they are."""

    status: int = 200
    body: Any = field(default_factory=lambda: {"errcode": 0, "errmsg": "ok"})
    delay: float = 0.0

    def encoded(self) -> tuple[bytes, str]:
        """Body bytes and content type."""
        if isinstance(self.body, bytes):
            return self.body, "application/octet-stream"
        if isinstance(self.body, str):
            return self.body.encode("utf-8"), "text/plain; charset=utf-8"
        return json.dumps(self.body, ensure_ascii=False).encode("utf-8"), "application/json; charset=utf-8"


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it; header names are lower-cased."""

    method: str
    path: str
    raw_query: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        """The body decoded as UTF-8 JSON."""
        return json.loads(self.body.decode("utf-8"))


class _HttpHandler(BaseHTTPRequestHandler):
    server: _RecordingHttpServer
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self._record_and_reply()

    def do_GET(self) -> None:
        self._record_and_reply()

    def _record_and_reply(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        recorder = self.server.recorder
        recorder._record(
            RecordedRequest(
                method=self.command,
                path=parts.path,
                raw_query=parts.query,
                query=parse_qs(parts.query, keep_blank_values=True),
                headers={name.lower(): value for name, value in self.headers.items()},
                body=body,
            )
        )
        reply = recorder._next_reply()
        if reply.delay:
            time.sleep(reply.delay)
        payload, content_type = reply.encoded()
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            pass  # the client gave up (timeout tests)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _RecordingHttpServer(ThreadingHTTPServer):
    daemon_threads = True
    recorder: HttpRecorder


class HttpRecorder:
    """HTTP server on 127.0.0.1 that records requests and answers from a script, then ``default``."""

    def __init__(self, *replies: Reply, default: Reply | None = None) -> None:
        self._lock = threading.Lock()
        self._replies: deque[Reply] = deque(replies)
        self._requests: list[RecordedRequest] = []
        self.default = default or Reply()
        self._server = _RecordingHttpServer(("127.0.0.1", 0), _HttpHandler)
        self._server.recorder = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(POLL_INTERVAL,), name="http-recorder", daemon=True
        )

    @property
    def port(self) -> int:
        """The ephemeral port the server listens on."""
        return int(self._server.server_address[1])

    def url(self, path_and_query: str = "/") -> str:
        """Absolute ``http://127.0.0.1:PORT`` URL for ``path_and_query``."""
        return f"http://127.0.0.1:{self.port}{path_and_query}"

    def script(self, *replies: Reply) -> None:
        """Queue replies for the next requests (after those already queued)."""
        with self._lock:
            self._replies.extend(replies)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Requests received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def start(self) -> Self:
        """Start serving in a daemon thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _next_reply(self) -> Reply:
        with self._lock:
            return self._replies.popleft() if self._replies else self.default


@dataclass(frozen=True)
class RecordedMail:
    """One message accepted by the SMTP sink."""

    mail_from: str
    rcpt_to: tuple[str, ...]
    data: bytes
    auth: tuple[str, str] | None

    def message(self) -> EmailMessage:
        """The message parsed with the modern email policy."""
        parsed = BytesParser(policy=policy.default).parsebytes(self.data)
        assert isinstance(parsed, EmailMessage)
        return parsed


class _SmtpHandler(socketserver.StreamRequestHandler):
    server: _SmtpServer

    def handle(self) -> None:
        sink = self.server.sink
        self._reply("220 sink.test ESMTP recorder ready")
        mail_from: str | None = None
        rcpt: list[str] = []
        auth: tuple[str, str] | None = None
        while True:
            line = self.rfile.readline(MAX_LINE)
            if not line:
                return
            command = line.decode("utf-8", "replace").rstrip("\r\n")
            verb, _, arg = command.partition(" ")
            verb = verb.upper()
            sink._log("AUTH ***" if verb == "AUTH" else command)
            if verb == "EHLO":
                features = ["sink.test", "8BITMIME", "SMTPUTF8"]
                if sink.auth_reply:
                    features.append("AUTH PLAIN LOGIN")
                self._reply(
                    *(f"250{'-' if i < len(features) - 1 else ' '}{f}" for i, f in enumerate(features))
                )
            elif verb == "HELO":
                self._reply("250 sink.test")
            elif verb == "AUTH" and sink.auth_reply:
                auth = self._auth(arg)
                if auth is None:
                    self._reply("501 5.5.4 malformed AUTH")
                else:
                    sink._record_auth(auth)
                    self._reply(sink.auth_reply)
                    if not sink.auth_reply.startswith("2"):
                        auth = None
            elif verb == "MAIL":
                mail_from, rcpt = _angle(arg), []
                self._reply("250 2.1.0 ok")
            elif verb == "RCPT":
                rcpt.append(_angle(arg))
                self._reply("250 2.1.5 ok")
            elif verb == "DATA":
                if mail_from is None or not rcpt:
                    self._reply("503 5.5.1 need MAIL and RCPT first")
                    continue
                self._reply("354 end data with <CR><LF>.<CR><LF>")
                data = self._read_data()
                answer = sink._next_data_reply()
                if answer.startswith("2"):
                    sink._record_mail(RecordedMail(mail_from, tuple(rcpt), data, auth))
                self._reply(answer)
                mail_from, rcpt = None, []
            elif verb in {"RSET", "NOOP"}:
                if verb == "RSET":
                    mail_from, rcpt = None, []
                self._reply("250 2.0.0 ok")
            elif verb == "QUIT":
                self._reply("221 2.0.0 bye")
                return
            else:
                self._reply("502 5.5.2 command not implemented")

    def _auth(self, arg: str) -> tuple[str, str] | None:
        mechanism, _, initial = arg.partition(" ")
        try:
            if mechanism.upper() == "PLAIN":
                if not initial:
                    self._reply("334 ")
                    initial = self._read_line()
                _, user, password = base64.b64decode(initial).decode("utf-8").split("\0")
                return user, password
            if mechanism.upper() == "LOGIN":
                self._reply("334 VXNlcm5hbWU6")
                user = base64.b64decode(self._read_line()).decode("utf-8")
                self._reply("334 UGFzc3dvcmQ6")
                return user, base64.b64decode(self._read_line()).decode("utf-8")
        except ValueError:
            return None
        return None

    def _read_line(self) -> str:
        return self.rfile.readline(MAX_LINE).decode("utf-8", "replace").rstrip("\r\n")

    def _read_data(self) -> bytes:
        lines: list[bytes] = []
        while True:
            line = self.rfile.readline(MAX_LINE)
            if not line or line in {b".\r\n", b".\n"}:
                return b"".join(lines)
            lines.append(line[1:] if line.startswith(b".") else line)

    def _reply(self, *lines: str) -> None:
        self.wfile.write("".join(f"{line}\r\n" for line in lines).encode("utf-8"))
        self.wfile.flush()


class _SmtpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    sink: SmtpSink


def _angle(arg: str) -> str:
    _, _, rest = arg.partition(":")
    return rest.strip().split(" ")[0].strip("<>")


class SmtpSink:
    """Minimal SMTP server (EHLO/HELO, AUTH PLAIN/LOGIN, MAIL, RCPT, DATA, RSET, NOOP, QUIT).

    ``data_replies`` scripts the answers to successive DATA commands (default ``250``);
    ``auth_reply`` is the answer to AUTH (``None`` stops advertising AUTH).
    """

    def __init__(
        self,
        *,
        data_replies: Iterable[str] = (),
        auth_reply: str | None = "235 2.7.0 authentication successful",
    ) -> None:
        self._lock = threading.Lock()
        self._data_replies: deque[str] = deque(data_replies)
        self.auth_reply = auth_reply
        self._messages: list[RecordedMail] = []
        self._auths: list[tuple[str, str]] = []
        self._transcript: list[str] = []
        self._server = _SmtpServer(("127.0.0.1", 0), _SmtpHandler)
        self._server.sink = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(POLL_INTERVAL,), name="smtp-sink", daemon=True
        )

    @property
    def host(self) -> str:
        """Always ``127.0.0.1``."""
        return "127.0.0.1"

    @property
    def port(self) -> int:
        """The ephemeral port the sink listens on."""
        return int(self._server.server_address[1])

    @property
    def messages(self) -> list[RecordedMail]:
        """Messages accepted so far."""
        with self._lock:
            return list(self._messages)

    @property
    def auths(self) -> list[tuple[str, str]]:
        """``(user, password)`` pairs presented with AUTH."""
        with self._lock:
            return list(self._auths)

    @property
    def transcript(self) -> list[str]:
        """Commands received (AUTH arguments masked, DATA content omitted)."""
        with self._lock:
            return list(self._transcript)

    def start(self) -> Self:
        """Start serving in a daemon thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _log(self, command: str) -> None:
        with self._lock:
            self._transcript.append(command)

    def _record_auth(self, auth: tuple[str, str]) -> None:
        with self._lock:
            self._auths.append(auth)

    def _record_mail(self, mail: RecordedMail) -> None:
        with self._lock:
            self._messages.append(mail)

    def _next_data_reply(self) -> str:
        with self._lock:
            return self._data_replies.popleft() if self._data_replies else "250 2.0.0 queued"
