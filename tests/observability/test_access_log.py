"""The access log batches lines into few writes, never delays one past its deadline, and quotes safely."""

from __future__ import annotations

import asyncio
import io

from reprise.observability.logs import FLUSH_DELAY, FLUSH_LINES, AccessLog, format_line, logfmt_value


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


async def test_lines_emitted_together_share_one_write_after_the_delay() -> None:
    stream = CountingStream()
    log = AccessLog(json_lines=True, stream=stream)
    for i in range(10):
        log.emit(f'{{"n":{i}}}')
    assert stream.getvalue() == ""  # held for company
    await asyncio.sleep(FLUSH_DELAY * 3)
    assert stream.getvalue().splitlines() == [f'{{"n":{i}}}' for i in range(10)]
    assert stream.writes == 1


async def test_a_full_batch_is_written_at_once_and_nothing_is_lost() -> None:
    stream = CountingStream()
    log = AccessLog(json_lines=True, stream=stream)
    for i in range(FLUSH_LINES + 3):
        log.emit(str(i))
    assert len(stream.getvalue().splitlines()) == FLUSH_LINES
    log.flush()  # what shutdown does
    assert stream.getvalue().splitlines() == [str(i) for i in range(FLUSH_LINES + 3)]
    await asyncio.sleep(FLUSH_DELAY * 3)  # the pending timer finds nothing to write twice
    assert len(stream.getvalue().splitlines()) == FLUSH_LINES + 3


def test_without_a_loop_lines_are_written_at_once_with_the_logging_layout() -> None:
    stream = CountingStream()
    AccessLog(json_lines=False, stream=stream).emit("cache=hit")
    assert stream.getvalue().endswith(" INFO reprise.access: cache=hit\n")


def test_logfmt_quotes_what_needs_it_also_when_memoised() -> None:
    for _ in range(2):
        assert logfmt_value("gpt-4o") == "gpt-4o"
        assert logfmt_value('a "b" c') == '"a \\"b\\" c"'
        assert logfmt_value("x=y") == '"x=y"'
        assert logfmt_value("") == '""'
        assert logfmt_value("line\nbreak") == '"line\\nbreak"'
    assert format_line({"a": 1, "b": None, "c": "two words"}, json_lines=False) == 'a=1 c="two words"'
