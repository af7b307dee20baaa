"""The multipart/related parser: RFC 2046 framing, binary content, malformed bodies."""

from __future__ import annotations

import random

import pytest

from services.gateway.multipart import MultipartError, check_boundary, parse_media_type, parse_multipart

CRLF = b"\r\n"


def build(parts: list[tuple[list[str], bytes]], boundary: str, preamble: bytes = b"", epilogue: bytes = b"") -> bytes:
    b = boundary.encode()
    out = bytearray(preamble + CRLF if preamble else b"")
    for headers, content in parts:
        out += b"--" + b + CRLF
        for h in headers:
            out += h.encode() + CRLF
        out += CRLF + content + CRLF
    out += b"--" + b + b"--" + epilogue
    return bytes(out)


def test_two_parts_with_headers_and_binary_content() -> None:
    a = bytes(range(256)) * 4 + b"\r\n\r\n--" + b"\x00\xff"
    b = b"DICM" + b"\r\n--not-the-boundary\r\n" + b"\x00" * 10
    body = build([(["Content-Type: application/dicom"], a), (["content-type: application/dicom", "X-Extra: 1"], b)],
                 "abc")
    parts = parse_multipart(body, "abc")
    assert [p.content for p in parts] == [a, b]
    assert parts[0].headers == {"content-type": "application/dicom"}
    assert parts[1].headers == {"content-type": "application/dicom", "x-extra": "1"}
    assert parts[0].content_type.type == "application/dicom"


def test_preamble_epilogue_and_transport_padding_are_ignored() -> None:
    body = (b"This is a preamble.\r\n--xyz \t\r\nContent-Type: application/dicom\r\n\r\nONE\r\n"
            b"--xyz\r\n\r\nTWO\r\n--xyz--\r\nthis is the epilogue\r\n--xyz\r\nnot a part\r\n")
    parts = parse_multipart(body, "xyz")
    assert [p.content for p in parts] == [b"ONE", b"TWO"]
    assert parts[1].headers == {} and parts[1].content_type is None


def test_boundary_prefix_inside_content_is_content() -> None:
    # "--abcdef" and "--abcX-" start with the dash-boundary "--abc" but are not delimiters (a
    # delimiter is followed by "--" or by padding and CRLF), so they stay inside the part.
    content = b"head\r\n--abcdef\r\nmiddle\r\n--abcX-\r\n--abc\ttail"
    [part] = parse_multipart(b"--abc\r\n\r\n" + content + b"\r\n--abc--", "abc")
    assert part.content == content


def test_folded_and_repeated_headers() -> None:
    body = (b"--b\r\nContent-Type: application/dicom;\r\n transfer-syntax=1.2.840.10008.1.2.1\r\n"
            b"X-A: 1\r\nX-A: 2\r\n\r\nDATA\r\n--b--")
    [part] = parse_multipart(body, "b")
    assert part.headers["content-type"] == "application/dicom; transfer-syntax=1.2.840.10008.1.2.1"
    assert part.headers["x-a"] == "1, 2"
    assert part.content_type.params == {"transfer-syntax": "1.2.840.10008.1.2.1"}


def test_empty_content_and_no_parts() -> None:
    assert [p.content for p in parse_multipart(b"--b\r\n\r\n\r\n--b--", "b")] == [b""]
    assert parse_multipart(b"--b--\r\n", "b") == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"no delimiter here at all", "no boundary delimiter"),
        (b"--b\r\nContent-Type: application/dicom\r\n\r\nDATA", "not terminated"),
        (b"--b\r\nContent-Type: application/dicom\r\n\r\nDATA\r\n--b\r\n", "not terminated"),
        (b"--b\r\nContent-Type application/dicom\r\n\r\nDATA\r\n--b--", "malformed header"),
        (b"--b\r\nContent-Type: application/dicom\r\nDATA\r\n--b--", "not followed by an empty line"),
        (b"--b\r\n continuation\r\n\r\nDATA\r\n--b--", "continuation"),
    ],
)
def test_malformed_bodies(body: bytes, message: str) -> None:
    with pytest.raises(MultipartError, match=message):
        parse_multipart(body, "b")


def test_truncated_body_is_an_error_not_a_short_part() -> None:
    body = build([([], b"x" * 1000)], "bnd")
    for cut in (len(body) - 1, len(body) - 8, 500):
        with pytest.raises(MultipartError):
            parse_multipart(body[:cut], "bnd")


def test_random_binary_round_trip() -> None:
    rng = random.Random(1234)
    for _ in range(50):
        boundary = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789'()+_,-./:=?") for _ in range(rng.randint(1, 70)))
        boundary = boundary.rstrip(" ") or "x"
        contents = []
        for _ in range(rng.randint(1, 4)):
            data = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 3000)))
            # Sprinkle CRLFs and dashes so the parser sees near-delimiters.
            data = data.replace(b"\x01", b"\r\n--").replace(b"\x02", b"\r\n")
            if (b"\r\n--" + boundary.encode()) in data:
                continue
            contents.append(data)
        body = build([(["Content-Type: application/dicom"], c) for c in contents], boundary,
                     preamble=b"pre" if rng.random() < 0.5 else b"", epilogue=b"\r\nepi" if rng.random() < 0.5 else b"")
        assert [p.content for p in parse_multipart(body, boundary)] == contents


def test_boundary_rules() -> None:
    with pytest.raises(MultipartError):
        check_boundary("")
    with pytest.raises(MultipartError):
        check_boundary("x" * 201)
    with pytest.raises(MultipartError):
        check_boundary("ends with space ")
    with pytest.raises(MultipartError):
        check_boundary("naïve")
    assert check_boundary("x" * 70) == b"x" * 70
    # Longer than RFC 2046's 70, as Orthanc's STOW-RS client sends it (two UUIDs joined by "-").
    orthanc = "5d967eb4-2bca-4bc4-94a4-fdced685615a-5d967eb4-2bca-4bc4-94a4-fdced685615a"
    assert check_boundary(orthanc) == orthanc.encode()


@pytest.mark.parametrize(
    ("value", "mtype", "params"),
    [
        ('multipart/related; type="application/dicom"; boundary=abc', "multipart/related",
         {"type": "application/dicom", "boundary": "abc"}),
        ('Multipart/Related;Boundary="a b;c=d";TYPE="application/dicom"', "multipart/related",
         {"boundary": "a b;c=d", "type": "application/dicom"}),
        ('multipart/related ; boundary = "q\\"uoted" ; ', "multipart/related", {"boundary": 'q"uoted'}),
        ("application/json", "application/json", {}),
    ],
)
def test_parse_media_type(value: str, mtype: str, params: dict[str, str]) -> None:
    media = parse_media_type(value)
    assert media.type == mtype
    assert media.params == params


@pytest.mark.parametrize("value", ["multipart", 'multipart/related; boundary="open', "a/b; =x", "a/b; x=y z",
                                   "a/b; x"])
def test_parse_media_type_rejects(value: str) -> None:
    with pytest.raises(MultipartError):
        parse_media_type(value)


# ---------------------------------------------------------------- the streaming parser
#
# parse_multipart runs MultipartParser over a whole body. The tests below feed the same bodies in
# pieces cut everywhere (every byte position of every delimiter, 1-byte chunks, random cuts) and
# compare with the whole-body result; `_reference` is the whole-body parser this module had before
# it streamed, kept here as an oracle so that the rewrite is checked against the old behaviour.


class _Recorder:
    """A PartSink remembering parts, and how much content arrived before each part was complete."""

    def __init__(self) -> None:
        self.parts: list[tuple[dict[str, str], bytes]] = []
        self.events: list[str] = []
        self._content = bytearray()
        self._headers: dict[str, str] = {}

    def start_part(self, index: int, headers: dict[str, str]) -> None:
        assert index == len(self.parts)
        self.events.append(f"start {index}")
        self._headers, self._content = headers, bytearray()

    def write(self, data: bytes) -> None:
        assert data, "empty writes are pointless"
        self._content += data

    def end_part(self) -> None:
        self.events.append("end")
        self.parts.append((self._headers, bytes(self._content)))


def _stream(body: bytes, boundary: str, cuts: list[int]) -> list[tuple[dict[str, str], bytes]]:
    from services.gateway.multipart import MultipartParser

    sink = _Recorder()
    parser = MultipartParser(boundary, sink)
    last = 0
    for cut in sorted(cuts) + [len(body)]:
        parser.feed(body[last:cut])
        last = cut
    parser.close()
    return sink.parts


def _whole(body: bytes, boundary: str) -> list[tuple[dict[str, str], bytes]]:
    return [(p.headers, p.content) for p in parse_multipart(body, boundary)]


def _reference(body: bytes, boundary: str) -> list[tuple[dict[str, str], bytes]]:
    """The previous whole-body parser (same grammar, same messages), for differential tests."""
    from services.gateway.multipart import _parse_headers

    dash = b"--" + check_boundary(boundary)
    delim = b"\r\n" + dash

    def delimiter_end(after: int) -> tuple[int, bool] | None:
        if body.startswith(b"--", after):
            return after + 2, True
        i = after
        while i < len(body) and body[i] in (0x20, 0x09):
            i += 1
        return (i + 2, False) if body.startswith(b"\r\n", i) else None

    def next_delimiter(search: int, missing: str) -> tuple[int, tuple[int, bool]]:
        while True:
            at = body.find(delim, search)
            if at < 0:
                raise MultipartError(missing)
            found = delimiter_end(at + len(delim))
            if found is not None:
                return at, found
            search = at + 1

    if body.startswith(dash) and (first := delimiter_end(len(dash))) is not None:
        pos, closed = first
    else:
        _, (pos, closed) = next_delimiter(0, "the body holds no boundary delimiter matching the Content-Type boundary")
    parts: list[tuple[dict[str, str], bytes]] = []
    while not closed:
        index = len(parts)
        at, found = next_delimiter(pos, f"part {index} is not terminated: the body ends without a closing boundary")
        raw = body[pos:at]
        if not raw:
            parts.append(({}, b""))
        elif raw.startswith(b"\r\n"):
            parts.append(({}, raw[2:]))
        else:
            end = raw.find(b"\r\n\r\n")
            if end < 0:
                raise MultipartError(f"part {index}: headers are not followed by an empty line")
            parts.append((_parse_headers(raw[:end], index), raw[end + 4:]))
        pos, closed = found
    return parts


def _outcome(parse, *args):  # noqa: ANN001, ANN002, ANN202 - a parse function and its arguments
    try:
        return parse(*args)
    except MultipartError as exc:
        return ("error", str(exc))


_BODIES = [
    (build([(["Content-Type: application/dicom"], bytes(range(256)) * 3 + b"\r\n--abc"),
            (["content-type: application/dicom", "X-Extra: 1"], b"DICM\r\n--abcX\r\n--abc \r")], "abc"), "abc"),
    (b"This is a preamble.\r\n--xyz \t\r\nContent-Type: application/dicom\r\n\r\nONE\r\n"
     b"--xyz\r\n\r\nTWO\r\n--xyz--\r\nthis is the epilogue\r\n--xyz\r\nnot a part\r\n", "xyz"),
    (b"--abc\r\n\r\nhead\r\n--abcdef\r\nmiddle\r\n--abcX-\r\n--abc\ttail\r\n--abc--", "abc"),
    (b"--b\r\nContent-Type: application/dicom;\r\n transfer-syntax=1.2\r\nX-A: 1\r\nX-A: 2\r\n\r\nDATA\r\n--b--", "b"),
    (b"--b\r\n\r\n\r\n--b--", "b"),
    (b"--b\r\n\r\n--b\r\n\r\n\r\n--b--", "b"),  # an empty part without its blank line, then an empty part
    (b"--b--\r\n", "b"),
    (b"\r\n--b\r\n\r\nx\r\n--b--", "b"),  # an empty preamble and its CRLF
    (b"--b\r\nH: v\r\n\r\n--b\r\n\r\nx\r\n--b--", "b"),  # the blank line's CRLF opens the delimiter
    (b"--b\r\n\rx\r\n--b--", "b"),
    (b"--b\r\n\r\r\n--b--", "b"),
    # malformed: the same message as before, wherever the body is cut
    (b"no delimiter here at all", "b"),
    (b"--b\r\nContent-Type: application/dicom\r\n\r\nDATA", "b"),
    (b"--b\r\nContent-Type: application/dicom\r\n\r\nDATA\r\n--b\r\n", "b"),
    (b"--b\r\nContent-Type: application/dicom\r\n\r\nDATA\r\n--b  ", "b"),
    (b"--b\r\nContent-Type application/dicom\r\n\r\nDATA\r\n--b--", "b"),
    (b"--b\r\nContent-Type: application/dicom\r\nDATA\r\n--b--", "b"),
    (b"--b\r\n continuation\r\n\r\nDATA\r\n--b--", "b"),
    (b"--b\r\n\r\r\n--b-", "b"),
]


@pytest.mark.parametrize(("body", "boundary"), _BODIES)
def test_streaming_equals_whole_body_and_the_previous_parser(body: bytes, boundary: str) -> None:
    expected = _outcome(_reference, body, boundary)
    assert _outcome(_whole, body, boundary) == expected
    assert _outcome(_stream, body, boundary, list(range(1, len(body)))) == expected  # 1-byte chunks


@pytest.mark.parametrize(("body", "boundary"), _BODIES)
def test_every_cut_gives_the_same_result(body: bytes, boundary: str) -> None:
    """A body cut in two at each position (so inside every delimiter, at each of its bytes), and in three."""
    expected = _outcome(_reference, body, boundary)
    for cut in range(len(body) + 1):
        assert _outcome(_stream, body, boundary, [cut]) == expected, cut
    for a in range(0, len(body) + 1, 3):
        for b in range(a, min(len(body), a + 12) + 1):
            assert _outcome(_stream, body, boundary, [a, b]) == expected, (a, b)


def test_cuts_at_every_byte_of_every_delimiter_with_long_content() -> None:
    boundary = "5d967eb4-2bca-4bc4-94a4-fdced685615a-5d967eb4-2bca-4bc4-94a4-fdced685615a"
    contents = [bytes(range(256)) * 40, b"", b"\r\n--" + boundary.encode() + b"X" + b"\x00" * 5000]
    body = build([(["Content-Type: application/dicom"], c) for c in contents], boundary, preamble=b"pre",
                 epilogue=b"\r\nepilogue")
    delimiter = b"\r\n--" + boundary.encode()
    positions = []
    at = body.find(delimiter)
    while at >= 0:
        positions += range(at, at + len(delimiter) + 4)
        at = body.find(delimiter, at + 1)
    expected = _reference(body, boundary)
    assert [c for _, c in expected] == contents
    for cut in positions:
        assert _stream(body, boundary, [cut]) == expected, cut
        assert _stream(body, boundary, [cut - 1, cut, cut + 1]) == expected, cut


def test_random_bodies_in_random_chunks_match_the_previous_parser() -> None:
    rng = random.Random(2046)
    for _ in range(3000):
        boundary = rng.choice(["b", "abc", "x-y", "bnd"])
        # Bodies built from pieces that matter to the grammar, so most are near-valid.
        pieces = [b"\r\n", b"--", boundary.encode(), b" ", b"\t", b"X", b"H: v", b"\r", b"\n", b"-"]
        body = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 40)))
        if rng.random() < 0.5:
            body = f"--{boundary}\r\n".encode() + body + f"\r\n--{boundary}--".encode()
        cuts = sorted(rng.sample(range(len(body) + 1), min(len(body) + 1, rng.randint(0, 6))))
        expected = _outcome(_reference, body, boundary)
        got = _outcome(_stream, body, boundary, cuts)
        if expected != got and "not terminated" in str(expected):
            # A body with two defects: the streaming parser reports the one it reads first (a bad
            # header line) where the whole-body parser looked for the missing close delimiter first.
            assert got[0] == "error", (body, boundary, cuts)
            continue
        assert got == expected, (body, boundary, cuts)


def test_content_is_handed_on_as_it_arrives_and_the_buffer_stays_small() -> None:
    from services.gateway.multipart import MAX_PADDING, MultipartParser

    boundary = "boundary-of-some-length"
    sink = _Recorder()
    parser = MultipartParser(boundary, sink)
    parser.feed(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode())
    # Its last bytes could still open a delimiter ("\r\n--boundary..."), which would make the part
    # header-only and malformed: they are held until the next bytes tell.
    assert sink.events == []
    chunk = bytes(range(256)) * 256  # 64 KiB, with CRLFs and dashes, never the delimiter
    held = []
    for _ in range(64):  # 4 MiB
        parser.feed(chunk)
        assert sink.events == ["start 0"]
        held.append(parser.buffered)
    assert max(held) < len(boundary) + 4  # at most what may start a delimiter
    assert len(sink._content) > 4 * 1024 * 1024 - len(boundary) - 4
    parser.feed(b"\r\n--" + boundary.encode() + b" " * 100)  # a delimiter line being padded
    assert parser.buffered <= len(boundary) + 4 + MAX_PADDING
    parser.feed(b"\r\n\r\nx\r\n--" + boundary.encode() + b"--" + b"epilogue" * 1000)
    assert parser.buffered == 0
    parser.close()
    assert len(sink.parts) == 2 and sink.parts[1] == ({}, b"x")


def test_the_bounds_on_what_is_buffered_are_errors_past_them() -> None:
    from services.gateway.multipart import MAX_HEADER_BLOCK, MAX_PADDING

    long_header = b"X-Long: " + b"a" * MAX_HEADER_BLOCK
    with pytest.raises(MultipartError, match="header block is longer"):
        parse_multipart(b"--b\r\n" + long_header + b"\r\n\r\nDATA\r\n--b--", "b")
    with pytest.raises(MultipartError, match="header block is longer"):
        _stream(b"--b\r\n" + long_header * 4, "b", list(range(0, 4 * len(long_header), 1000)))
    with pytest.raises(MultipartError, match="padding"):
        parse_multipart(b"--b" + b" " * (MAX_PADDING + 1) + b"\r\n\r\nDATA\r\n--b--", "b")
    # Up to the bounds, both are fine.
    [part] = parse_multipart(b"--b" + b"\t" * MAX_PADDING + b"\r\nX: " + b"a" * (MAX_HEADER_BLOCK - 3)
                             + b"\r\n\r\nDATA\r\n--b--", "b")
    assert part.content == b"DATA"


def test_a_sink_error_stops_the_parser() -> None:
    from services.gateway.multipart import MultipartParser

    class Full(_Recorder):
        def start_part(self, index: int, headers: dict[str, str]) -> None:
            if index == 1:
                raise OverflowError("no room")
            super().start_part(index, headers)

    parser = MultipartParser("b", Full())
    with pytest.raises(OverflowError):
        parser.feed(build([([], b"one"), ([], b"two")], "b"))


def test_long_padding_is_refused_wherever_the_body_is_cut() -> None:
    from services.gateway.multipart import MAX_PADDING

    long_run = b" \t" * (MAX_PADDING // 2) + b" "  # one byte over the bound
    bodies = [
        b"--b\r\n\r\nx\r\n--b" + long_run + b"\r\n\r\ny\r\n--b--",  # a delimiter line
        b"--b\r\n\r\nx\r\n--b" + long_run + b"X\r\n--b--",  # a near-miss: refused all the same
    ]
    for body in bodies:
        for cut in list(range(0, len(body), 97)) + [len(body) - 9, len(body) - 11]:
            with pytest.raises(MultipartError, match="padding"):
                _stream(body, "b", [cut])
    ok = b"--b\r\n\r\nx\r\n--b" + long_run[:-1] + b"\r\n\r\ny\r\n--b--"
    for cut in range(0, len(ok), 53):
        assert _stream(ok, "b", [cut]) == [({}, b"x"), ({}, b"y")]
