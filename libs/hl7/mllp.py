"""Sending an HL7 v2 message over MLLP and reading its ACK (python-hl7's asyncio MLLP streams).

Original-mode acknowledgement (MSA-1): AA / CA accepted; AE / CE an application error, sent again
(the receiver may be busy or restarting), with the same control id; AR / CR rejected, not sent
again (the message itself is refused: the reason is recorded). No ACK within the timeout, a refused
or dropped connection: sent again. `retries` re-sends with a doubling delay, then HL7Unavailable.
"""

from __future__ import annotations

import asyncio
import logging

import hl7
import hl7.mllp

from libs.core.config import Hl7Destination
from libs.core.retry import attempts

log = logging.getLogger(__name__)


class HL7Unavailable(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class HL7Rejected(HL7Unavailable):
    """The receiver answered AR / CR: re-sending the same message cannot help."""


async def _exchange(dest: Hl7Destination, message: str) -> hl7.Message:
    reader, writer = await asyncio.wait_for(hl7.mllp.open_hl7_connection(dest.host, dest.port), dest.timeout_s)
    try:
        writer.writemessage(message)
        await writer.drain()
        return await asyncio.wait_for(reader.readmessage(), dest.timeout_s)
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (ConnectionError, OSError):
            pass


def send(dest: Hl7Destination, message: str, control_id: str) -> str:
    """Sends `message` (ER7, segments separated by CR); returns a detail line or raises HL7Unavailable."""
    last = "no attempt"
    for attempt in attempts(dest.retries, dest.backoff_s):
        try:
            ack = asyncio.run(_exchange(dest, message))
        except (asyncio.TimeoutError, TimeoutError):
            last = f"no ACK within {dest.timeout_s:g} s"
        except (ConnectionError, OSError, asyncio.IncompleteReadError) as exc:
            last = f"unreachable ({type(exc).__name__})"
        except hl7.exceptions.HL7Exception as exc:
            last = f"unreadable ACK ({type(exc).__name__})"
        else:
            code, acked, text = _msa(ack)
            if acked != control_id:
                last = f"ACK for another message ({acked or 'no MSA-2'})"
            elif code in ("AA", "CA"):
                return f"accepted ({code})"
            elif code in ("AR", "CR"):
                raise HL7Rejected(f"HL7 destination {dest.name!r} rejected the ORU^R01 ({code}{': ' + text if text else ''})")
            else:
                last = f"application error ACK ({code or 'no MSA-1'}{': ' + text if text else ''})"
        log.warning("ORU^R01 to %s (%s:%d): %s (attempt %d)", dest.name, dest.host, dest.port, last, attempt + 1)
    raise HL7Unavailable(f"HL7 destination {dest.name!r} ({dest.host}:{dest.port}): {last}, "
                         f"after {dest.retries + 1} attempt(s)")


def _msa(ack: hl7.Message) -> tuple[str, str, str]:
    try:
        msa = ack.segment("MSA")
    except KeyError:
        return "", "", ""
    def field(i: int) -> str:  # noqa: E306
        return str(msa[i]) if len(msa) > i else ""
    return field(1), field(2), field(3)[:200]
