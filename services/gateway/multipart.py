"""A small, binary-safe parser for `multipart/related` bodies (RFC 2046 §5.1, RFC 2387), as STOW-RS sends.

Grammar handled (RFC 2046 §5.1.1):

    body        := [preamble CRLF] dash-boundary padding CRLF part
                   *(CRLF dash-boundary padding CRLF part) CRLF dash-boundary "--" [epilogue]
    part        := [header-lines] CRLF content
    padding     := *(SP / HTAB)

- Delimiters are CRLF-based, as the RFC requires; a part's content is everything between the CRLF
  that ends its headers and the CRLF that starts the next delimiter, byte for byte (DICOM is binary).
- A line that merely *starts* with the boundary (`--abcX`) is not a delimiter: the boundary must be
  followed by "--" or optional padding and CRLF, so such bytes stay inside the part.
- The preamble (before the first delimiter) and the epilogue (after the close delimiter) are ignored.
- Header names are case-insensitive; folded (continued) header lines are unfolded.
- A missing close delimiter means the body was cut short: that is an error, never a silently
  shortened last part.

Nothing here decodes Content-Transfer-Encoding: DICOMweb sends parts as binary.

One parser, `MultipartParser`, reads a body as a stream of chunks of any size (STOW-RS feeds it
the request as it arrives and writes each part to a file, services/gateway/stow.py); the result
never depends on where the chunks are cut. `parse_multipart` runs it over a body held in memory.
Unlike the grammar, it bounds what it buffers: a header block over MAX_HEADER_BLOCK bytes and a
delimiter line with more than MAX_PADDING bytes of padding are errors. A body with several defects
is reported by the first one met in reading order (a malformed header line before a missing close
delimiter further on).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol


class MultipartError(ValueError):
    """The body or the Content-Type header is not well-formed multipart; the message says where."""


@dataclass(frozen=True)
class MediaType:
    """A parsed Content-Type: `type/subtype` lower-cased, parameter names lower-cased, values unquoted."""

    type: str
    params: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Part:
    headers: dict[str, str]
    content: bytes

    @property
    def content_type(self) -> MediaType | None:
        value = self.headers.get("content-type")
        return parse_media_type(value) if value else None


_TOKEN_SEPARATORS = set('()<>@,;:\\"/[]?={} \t')


def _is_token(value: str) -> bool:
    return bool(value) and all(33 <= ord(c) <= 126 and c not in _TOKEN_SEPARATORS for c in value)


def parse_media_type(value: str) -> MediaType:
    """Parses `type/subtype *(; name=value)` where values are tokens or quoted strings (RFC 9110 §8.3.1)."""
    s = value.strip()
    i = 0
    n = len(s)
    while i < n and s[i] != ";":
        i += 1
    mtype = s[:i].strip().lower()
    if mtype.count("/") != 1 or not all(_is_token(p) for p in mtype.split("/")):
        raise MultipartError(f"malformed media type {mtype!r}")
    params: dict[str, str] = {}
    while i < n:
        assert s[i] == ";"
        i += 1
        while i < n and s[i] in " \t":
            i += 1
        if i >= n:
            break  # a trailing ";" is tolerated
        start = i
        while i < n and s[i] not in "=;":
            i += 1
        name = s[start:i].strip().lower()
        if i >= n or s[i] != "=" or not _is_token(name):
            raise MultipartError(f"malformed parameter {s[start:i].strip()!r} in media type")
        i += 1  # skip "="
        while i < n and s[i] in " \t":
            i += 1
        if i < n and s[i] == '"':
            i += 1
            chars: list[str] = []
            while True:
                if i >= n:
                    raise MultipartError(f"unterminated quoted value for parameter {name!r}")
                c = s[i]
                if c == "\\" and i + 1 < n:
                    chars.append(s[i + 1])
                    i += 2
                    continue
                if c == '"':
                    i += 1
                    break
                chars.append(c)
                i += 1
            param_value = "".join(chars)
        else:
            start = i
            while i < n and s[i] != ";":
                i += 1
            param_value = s[start:i].strip()
            if not _is_token(param_value):
                raise MultipartError(f"malformed value for parameter {name!r}")
        while i < n and s[i] in " \t":
            i += 1
        if i < n and s[i] != ";":
            raise MultipartError(f"unexpected text after parameter {name!r}")
        params[name] = param_value
    return MediaType(mtype, params)


# RFC 2046 allows 1 to 70 characters, but real senders exceed it: Orthanc's DICOMweb plugin (1.7,
# Debian 12) sends two UUIDs joined by "-" (73). Accept longer ones, within reason.
MAX_BOUNDARY = 200


def check_boundary(boundary: str) -> bytes:
    """1 to MAX_BOUNDARY characters (RFC 2046 says 70; see above), not ending with a space; as ASCII bytes."""
    if not 1 <= len(boundary) <= MAX_BOUNDARY or boundary.endswith(" "):
        raise MultipartError(f"the boundary must be 1 to {MAX_BOUNDARY} characters long and must not end with a space")
    try:
        return boundary.encode("ascii")
    except UnicodeEncodeError:
        raise MultipartError("the boundary must be ASCII") from None


def _parse_headers(block: bytes, index: int) -> dict[str, str]:
    headers: dict[str, str] = {}
    last: str | None = None
    for raw in block.split(b"\r\n"):
        line = raw.decode("latin-1")
        if line[:1] in (" ", "\t"):
            if last is None:
                raise MultipartError(f"part {index}: header block starts with a continuation line")
            headers[last] = f"{headers[last]} {line.strip()}".strip()
            continue
        name, sep, value = line.partition(":")
        name = name.strip().lower()
        if not sep or not _is_token(name):
            raise MultipartError(f"part {index}: malformed header line")
        # Repeated headers are joined, as RFC 9110 §5.3 allows for list-valued fields.
        headers[name] = f"{headers[name]}, {value.strip()}" if name in headers else value.strip()
        last = name
    return headers


class PartSink(Protocol):
    """Receives the parts of a body as the parser finds them, content in pieces of any size."""

    def start_part(self, index: int, headers: dict[str, str]) -> None: ...

    def write(self, data: bytes) -> None: ...

    def end_part(self) -> None: ...


# Bounds on what the parser holds in memory besides the bytes of one feed() call: a header block
# is collected whole (it is parsed as a unit), and a possible delimiter line is held until it is
# known to be one. RFC 2046 puts no bound on either; these are far above what any sender writes.
MAX_HEADER_BLOCK = 64 * 1024
MAX_PADDING = 1024

_CRLF = b"\r\n"
_BLANK_LINE = b"\r\n\r\n"
# After a dash-boundary: what completes a delimiter line so far, without the line's end.
_UNDECIDED_TAIL = re.compile(rb"-|[ \t]*\r?")


class _State(Enum):
    PREAMBLE = "preamble"
    PART = "part"
    EPILOGUE = "epilogue"


class MultipartParser:
    """A push parser: `feed()` chunks as they arrive, then `close()`; parts go to a PartSink.

    Memory held between feeds is at most a delimiter's length (bytes that may start one), or a
    delimiter line with its padding (MAX_PADDING), or one part's header block (MAX_HEADER_BLOCK).
    Content is handed to the sink as soon as it is known not to be part of a delimiter.

    The body is scanned for the delimiter CRLF "--" boundary; a CRLF is put in front of the body
    so that a delimiter opening the body (no preamble) is found by the same search. Between two
    delimiters lies a part's raw text: headers, a blank line, the content (see _feed_raw).
    """

    def __init__(self, boundary: str, sink: PartSink) -> None:
        self._delim = _CRLF + b"--" + check_boundary(boundary)
        # A delimiter is followed by "--" (the close delimiter) or by padding and CRLF; a padding
        # run past MAX_PADDING is matched too ("long"), to be refused whatever follows it, so that
        # the answer never depends on how the body was cut into chunks.
        self._delimiter_line = re.compile(
            re.escape(self._delim)
            + rb"(?:(?P<close>--)|(?P<pad>[ \t]*)\r\n|(?P<long>[ \t]{%d}))" % (MAX_PADDING + 1)
        )
        self._sink = sink
        self._buf = bytearray(_CRLF)
        self._state = _State.PREAMBLE
        self._index = -1  # the part being read
        self._head: bytearray | None = None  # the part's raw text while its headers are not known yet
        self._closed = False

    @property
    def parts(self) -> int:
        """How many parts were started so far."""
        return self._index + 1

    @property
    def buffered(self) -> int:
        """Bytes held between feeds (the bound in the class docstring; tests check it)."""
        return len(self._buf) + (len(self._head) if self._head is not None else 0)

    def feed(self, chunk: bytes) -> None:
        if self._closed:
            raise RuntimeError("feed() after close()")
        if self._state is _State.EPILOGUE:
            return  # the epilogue is ignored; not even kept
        self._buf += chunk
        self._scan(final=False)

    def close(self) -> None:
        """The body has ended: raises MultipartError unless the close delimiter was seen."""
        if self._closed:
            return
        self._closed = True
        self._scan(final=True)
        if self._state is _State.PREAMBLE:
            raise MultipartError("the body holds no boundary delimiter matching the Content-Type boundary")
        if self._state is _State.PART:
            raise MultipartError(f"part {self._index} is not terminated: the body ends without a closing boundary")

    # ---- finding delimiters

    def _scan(self, *, final: bool) -> None:
        buf = self._buf
        while self._state is not _State.EPILOGUE:
            # The regular expression finds the first complete delimiter line in C, skipping the
            # near-misses ("--boundaryX") a body may hold any number of.
            found = self._delimiter_line.search(buf)
            if found is None:
                self._emit_and_drop(len(buf) if final else self._undecided_from())
                return
            if found.group("long") is not None or len(found.group("pad") or b"") > MAX_PADDING:
                raise MultipartError(f"a boundary delimiter line has more than {MAX_PADDING} bytes of padding")
            self._emit_and_drop(found.start())
            del buf[: found.end() - found.start()]
            self._on_delimiter(is_close=found.group("close") is not None)
        buf.clear()

    def _undecided_from(self) -> int:
        """Where the bytes that may still turn out to be a delimiter begin (the rest is content).

        Either a delimiter whose line is not complete yet (followed by nothing, "-", or padding and
        maybe a CR; only the last one can be), or the last len(delimiter) - 1 bytes, which may be
        the start of one.
        """
        buf = self._buf
        last = buf.rfind(self._delim)
        if last >= 0 and _UNDECIDED_TAIL.fullmatch(buf, last + len(self._delim)):
            return last
        return max(0, len(buf) - (len(self._delim) - 1))

    def _emit_and_drop(self, n: int) -> None:
        if n <= 0:
            return
        if self._state is _State.PART:
            with memoryview(self._buf) as view:  # one copy, not two (a slice, then bytes of it)
                data = bytes(view[:n])
            self._feed_raw(data)
        del self._buf[:n]  # PREAMBLE: ignored

    def _on_delimiter(self, is_close: bool) -> None:
        if self._state is _State.PART:
            self._end_raw()
        if is_close:
            self._state = _State.EPILOGUE
            return
        self._state = _State.PART
        self._index += 1
        self._head = bytearray()

    # ---- a part's raw text: [headers] CRLF content

    def _feed_raw(self, data: bytes) -> None:
        if self._head is None:
            self._sink.write(data)
            return
        head = self._head
        searched = max(0, len(head) - 3)  # a blank line may straddle the previous piece
        head += data
        if len(head) < 2:
            return
        if head.startswith(_CRLF):
            self._begin_content({}, 2)
            return
        end = head.find(_BLANK_LINE, searched)
        if end > MAX_HEADER_BLOCK or (end < 0 and len(head) > MAX_HEADER_BLOCK + len(_BLANK_LINE)):
            raise MultipartError(f"part {self._index}: the header block is longer than {MAX_HEADER_BLOCK} bytes")
        if end >= 0:
            self._begin_content(_parse_headers(bytes(head[:end]), self._index), end + len(_BLANK_LINE))

    def _begin_content(self, headers: dict[str, str], content_start: int) -> None:
        assert self._head is not None
        rest = bytes(self._head[content_start:])
        self._head = None
        self._sink.start_part(self._index, headers)
        if rest:
            self._sink.write(rest)

    def _end_raw(self) -> None:
        if self._head is not None:
            if self._head:
                raise MultipartError(f"part {self._index}: headers are not followed by an empty line")
            # "--b CRLF" directly followed by the next delimiter: an empty part without even the
            # blank line the grammar asks for; tolerated as an empty part.
            self._head = None
            self._sink.start_part(self._index, {})
        self._sink.end_part()


class _Collect:
    """A PartSink that keeps every part in memory, for parse_multipart."""

    def __init__(self) -> None:
        self.parts: list[Part] = []
        self._headers: dict[str, str] = {}
        self._content = bytearray()

    def start_part(self, index: int, headers: dict[str, str]) -> None:
        self._headers, self._content = headers, bytearray()

    def write(self, data: bytes) -> None:
        self._content += data

    def end_part(self) -> None:
        self.parts.append(Part(headers=self._headers, content=bytes(self._content)))


def parse_multipart(body: bytes, boundary: str) -> list[Part]:
    """Splits a whole multipart body held in memory into parts; raises MultipartError naming what is wrong."""
    sink = _Collect()
    parser = MultipartParser(boundary, sink)
    parser.feed(body)
    parser.close()
    return sink.parts
