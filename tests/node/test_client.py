"""DaemonClient against a daemon that dies mid-answer or reports an error mid-stream.

http.client ends an iteration quietly when a chunked body is cut short; a CLI that
trusted that would print "pinned" for a pin the daemon never stored (the crash
harness caught it). These tests serve such answers from a raw socket."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from node.client import DaemonClient, DaemonError


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


@pytest.fixture
def serve() -> Iterator:
    listeners: list[socket.socket] = []

    def start(body: bytes) -> DaemonClient:
        listener = socket.create_server(("127.0.0.1", 0))
        listeners.append(listener)

        def answer() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n"
                             b"content-type: application/x-ndjson\r\n\r\n" + body)

        threading.Thread(target=answer, daemon=True).start()
        port = listener.getsockname()[1]
        return DaemonClient(f"http://127.0.0.1:{port}", token="t")

    yield start
    for listener in listeners:
        listener.close()


def test_lines_of_a_complete_answer(serve) -> None:
    body = _chunk(b'{"Progress": 1}\n{"Pi') + _chunk(b'ns": ["x"]}\n') + b"0\r\n\r\n"
    assert list(serve(body).lines("pin/add")) == [{"Progress": 1}, {"Pins": ["x"]}]


def test_lines_cut_short_raise(serve) -> None:
    client = serve(_chunk(b'{"Progress": 1}\n'))  # no last chunk: the daemon died
    got = []
    with pytest.raises(DaemonError, match="cut short"):
        for line in client.lines("pin/add"):
            got.append(line)
    assert got == [{"Progress": 1}]


def test_an_error_line_raises_with_the_daemons_message(serve) -> None:
    body = _chunk(b'{"Progress": 1}\n{"Message": "no route to block", "Code": 0, '
                  b'"Type": "error"}\n') + b"0\r\n\r\n"
    with pytest.raises(DaemonError, match="no route to block"):
        list(serve(body).lines("pin/add"))


def test_stream_cut_short_raises(serve) -> None:
    client = serve(_chunk(b"some bytes"))
    with pytest.raises(DaemonError, match="cut short"):
        b"".join(client.stream("cat"))
