"""CsvFeed: pyarrow's CSV reader gets every byte, and reads ahead only a bounded amount."""

from __future__ import annotations

import threading
import time

import pyarrow as pa
import pyarrow.csv as pacsv

from crypto_lakehouse.lake.feed import CsvFeed

LINE = b"1,84000.01,0.001,84.0,1740787200000000,true,true\n"
PIECE = LINE * 1300  # about 64 KiB


class _Pieces:
    """A stream handing out `count` pieces of CSV, one per read (like the zip inflater)."""

    def __init__(self, count: int) -> None:
        self.left = count

    def read(self, size: int = -1) -> bytes:
        if not self.left:
            return b""
        self.left -= 1
        return PIECE


def _reader(feed: CsvFeed) -> pacsv.CSVStreamingReader:
    options = pacsv.ReadOptions(column_names=list("abcdefg"), block_size=1 << 20)
    return pacsv.open_csv(feed, read_options=options)


def test_feed_bounds_what_pyarrow_reads_ahead() -> None:
    feed = CsvFeed(b"", _Pieces(120), ahead=4 * len(PIECE), stall=60.0)
    rows, most = 0, 0
    for batch in feed.paced(_reader(feed)):
        time.sleep(0.005)  # a slow consumer: unpaced, pyarrow would read 32 pieces ahead
        most = max(most, feed.held)
        rows += batch.num_rows
    assert rows == 120 * 1300
    assert most <= 5 * len(PIECE)


def test_feed_never_stalls_a_reader_whose_blocks_stay_held() -> None:
    feed = CsvFeed(LINE, _Pieces(30), ahead=1, stall=0.01)
    kept = list(feed.paced(_reader(feed)))  # every batch kept, and nothing may be read ahead
    assert sum(b.num_rows for b in kept) == 1 + 30 * 1300


def test_feed_stops_pacing_when_the_consumer_gives_up() -> None:
    feed = CsvFeed(b"", _Pieces(50), ahead=4 * len(PIECE), stall=60.0)
    for _ in feed.paced(_reader(feed)):
        break  # like NeedsLineMode or a failed write: the reader is abandoned
    got: list[pa.Buffer] = []  # held: far more than `ahead`, and nobody will release it

    def read_on() -> None:
        got.extend(feed.read_buffer(len(PIECE)) for _ in range(8))

    reading = threading.Thread(target=read_on)
    reading.start()
    reading.join(timeout=30)
    assert not reading.is_alive()
    assert feed.held >= 8 * len(PIECE) > 4 * len(PIECE)
