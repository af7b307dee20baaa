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
"""

from __future__ import annotations

from dataclasses import dataclass, field


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


def _delimiter_end(body: bytes, after: int) -> tuple[int, bool] | None:
    """Checks what follows a dash-boundary at `after`.

    Returns (position of the first byte after the delimiter line, is_close) or None when the bytes
    there do not complete a delimiter (so the boundary text was part of the content).
    """
    if body.startswith(b"--", after):
        return after + 2, True
    i = after
    while i < len(body) and body[i] in (0x20, 0x09):
        i += 1
    if body.startswith(b"\r\n", i):
        return i + 2, False
    return None


def parse_multipart(body: bytes, boundary: str) -> list[Part]:
    """Splits a multipart body into parts; raises MultipartError naming what is wrong."""
    dash = b"--" + check_boundary(boundary)
    delim = b"\r\n" + dash

    # The first delimiter may open the body (no preamble) or follow a preamble and its CRLF.
    if body.startswith(dash) and (found := _delimiter_end(body, len(dash))) is not None:
        pos, closed = found
    else:
        search = 0
        while True:
            at = body.find(delim, search)
            if at < 0:
                raise MultipartError("the body holds no boundary delimiter matching the Content-Type boundary")
            found = _delimiter_end(body, at + len(delim))
            if found is not None:
                pos, closed = found
                break
            search = at + 1

    parts: list[Part] = []
    while not closed:
        index = len(parts)
        # Find the delimiter that ends this part.
        search = pos
        while True:
            at = body.find(delim, search)
            if at < 0:
                raise MultipartError(f"part {index} is not terminated: the body ends without a closing boundary")
            found = _delimiter_end(body, at + len(delim))
            if found is not None:
                break
            search = at + 1
        raw = body[pos:at]
        if not raw:
            # "--b CRLF" directly followed by the next delimiter: an empty part without even the
            # blank line the grammar asks for; tolerated as an empty part.
            headers: dict[str, str] = {}
            content = b""
        elif raw.startswith(b"\r\n"):
            headers = {}
            content = raw[2:]
        else:
            end = raw.find(b"\r\n\r\n")
            if end < 0:
                raise MultipartError(f"part {index}: headers are not followed by an empty line")
            headers = _parse_headers(raw[:end], index)
            content = raw[end + 4:]
        parts.append(Part(headers=headers, content=content))
        pos, closed = found
    return parts
