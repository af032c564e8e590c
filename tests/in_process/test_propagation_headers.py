"""`extract_headers` on the headers objects real Python servers hand out, not just dicts."""

import email
import http.client
import http.server
import io
import logging
import threading

import pytest
from opentelemetry import baggage, trace
from opentelemetry.context import Context

from otel_session._propagation import extract_headers

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
BOTH = {"session.id": "s-1", "user.id": "u-1"}


def _trace_id(ctx: Context) -> int:
    return trace.get_current_span(ctx).get_span_context().trace_id


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "otel_session._propagation" and r.levelno == logging.WARNING]


def test_an_http_message_with_two_baggage_lines():
    raw = (b"Host: example.test\r\nTraceParent: " + TRACEPARENT.encode() + b"\r\n"
           b"baggage: session.id=s-1\r\nBAGGAGE: user.id=u-1\r\n\r\n")
    headers = http.client.parse_headers(io.BytesIO(raw))
    assert isinstance(headers, http.client.HTTPMessage)
    ctx = extract_headers(headers)
    assert _trace_id(ctx) == TRACE_ID and dict(baggage.get_all(ctx)) == BOTH


def test_an_email_message_is_read_the_same_way():
    text = f"traceparent: {TRACEPARENT}\nBaggage: session.id=s-1\nbaggage: user.id=u-1\n\n"
    message = email.message_from_string(text)
    ctx = extract_headers(message)
    assert _trace_id(ctx) == TRACE_ID and dict(baggage.get_all(ctx)) == BOTH


def test_a_request_to_a_stdlib_http_server():
    seen: dict[str, object] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ctx = extract_headers(self.headers)
            seen.update(trace_id=_trace_id(ctx), baggage=dict(baggage.get_all(ctx)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
        connection.putrequest("GET", "/")
        connection.putheader("Traceparent", TRACEPARENT)
        connection.putheader("Baggage", "session.id=s-1")
        connection.putheader("baggage", "user.id=u-1")
        connection.endheaders()
        assert connection.getresponse().status == 204
        connection.close()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert seen == {"trace_id": TRACE_ID, "baggage": BOTH}


ASGI_HEADERS = [
    (b"host", b"example.test"),
    (b"traceparent", TRACEPARENT.encode()),
    (b"baggage", b"session.id=s-1"),
    (b"baggage", b"user.id=u-1"),
]


def test_starlette_headers_with_a_repeated_baggage_header():
    from starlette.datastructures import Headers

    headers = Headers(raw=ASGI_HEADERS)
    assert headers.getlist("baggage") == ["session.id=s-1", "user.id=u-1"]
    ctx = extract_headers(headers)
    assert _trace_id(ctx) == TRACE_ID and dict(baggage.get_all(ctx)) == BOTH


def test_a_raw_asgi_header_list_and_a_list_of_text_pairs():
    ctx = extract_headers(ASGI_HEADERS)
    assert _trace_id(ctx) == TRACE_ID and dict(baggage.get_all(ctx)) == BOTH
    mixed = [("TraceParent", TRACEPARENT), ("Baggage", "session.id=s-1"), ("BAGGAGE", b"user.id=u-1")]
    ctx = extract_headers(tuple(mixed))
    assert _trace_id(ctx) == TRACE_ID and dict(baggage.get_all(ctx)) == BOTH


def test_bytes_are_decoded_as_latin_1():
    ctx = extract_headers([(b"baggage", "session.id=s-1,user.name=Jos\xe9".encode("latin-1"))])
    assert dict(baggage.get_all(ctx)) == {"session.id": "s-1", "user.name": "José"}


def test_multidict_case_insensitive_and_case_sensitive():
    multidict = pytest.importorskip("multidict")
    ci = multidict.CIMultiDict([("Traceparent", TRACEPARENT), ("Baggage", "session.id=s-1"),
                                ("baggage", "user.id=u-1")])
    ctx = extract_headers(ci)
    assert _trace_id(ctx) == TRACE_ID and dict(baggage.get_all(ctx)) == BOTH
    cs = multidict.MultiDict([("Baggage", "session.id=s-1"), ("Baggage", "user.id=u-1")])
    assert dict(baggage.get_all(extract_headers(cs))) == BOTH


def test_a_case_insensitive_mapping():
    structures = pytest.importorskip("requests.structures")
    headers = structures.CaseInsensitiveDict({"Traceparent": TRACEPARENT, "Baggage": "session.id=s-1,user.id=u-1"})
    ctx = extract_headers(headers)
    assert _trace_id(ctx) == TRACE_ID and dict(baggage.get_all(ctx)) == BOTH


@pytest.mark.parametrize("headers", [None, 42, "traceparent: x", b"baggage: session.id=s", object()])
def test_what_is_not_headers_gives_an_empty_context_and_one_warning(headers, caplog):
    ctx = extract_headers(headers)  # type: ignore[arg-type]
    assert ctx == Context() and dict(baggage.get_all(ctx)) == {}
    assert len(_warnings(caplog)) == 1


def test_malformed_pairs_are_skipped_with_one_warning(caplog):
    ctx = extract_headers([("baggage", "session.id=s-1"), "junk", (b"x",), 7, ("traceparent", TRACEPARENT)])
    assert _trace_id(ctx) == TRACE_ID and dict(baggage.get_all(ctx)) == {"session.id": "s-1"}
    (warning,) = _warnings(caplog)
    assert "3 header entries" in warning


def test_a_headers_object_that_fails_part_way_never_raises(caplog):
    class Broken:
        def items(self):
            yield ("baggage", "session.id=s-1")
            raise RuntimeError("socket closed")

    ctx = extract_headers(Broken())  # type: ignore[arg-type]
    assert dict(baggage.get_all(ctx)) == {"session.id": "s-1"}
    (warning,) = _warnings(caplog)
    assert "not readable" in warning
