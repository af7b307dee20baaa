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
