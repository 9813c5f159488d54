"""`bench transform`: building silver from a big trades file vs a bare pyarrow CSV->Parquet.

Both sides run in their own child process (`python -m crypto_lakehouse.bench.transform`,
JSON on stdin, one JSON line out) so each peak RSS (VmHWM) is its own:

- bare:   pyarrow's streaming CSV reader (explicit types) -> ParquetWriter (zstd) on local
          disk, from the unzipped CSV. The floor: no zip, no hashing, no S3, no catalog.
- silver: the real path: the zip streamed from the lake's S3 (SHA-256 checked), sniffed,
          parsed in batches, timestamps normalised, columns added, dedup checked, Parquet
          data files written to S3 and committed to an Iceberg table in PostgreSQL.

The silver side runs on two file sizes (a fifth, and all) to show its peak RSS does not
grow with the file. A private SeaweedFS and PostgreSQL are started for the run (or the
local stack's, with `use_stack`). Generated files are cached under $LAKEHOUSE_HOME/bench.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
import time
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from crypto_lakehouse.bench.child import run_child
from crypto_lakehouse.config import Settings
from crypto_lakehouse.validation.targets import TRANSFORM_RATIO

DAY = "2025-03-01"
DAY_START_US = 1740787200_000000
KEY = f"data/spot/daily/trades/BTCUSDT/BTCUSDT-trades-{DAY}.zip"
_CHUNK = 1_000_000


# -- the input file ------------------------------------------------------------------------------


def _trades_chunk(start: int, count: int, total: int) -> pa.Table:
    """Spot trades rows (7 columns, microsecond times), made by Arrow kernels."""
    ids = pc.add(pc.cumulative_sum(pa.repeat(pa.scalar(1, pa.int64()), count)), start - 1)
    price = pc.add(pc.multiply(pc.bit_wise_and(ids, 1023).cast(pa.float64()), 0.01), 84000.0)
    qty = pc.add(pc.multiply(pc.bit_wise_and(ids, 63).cast(pa.float64()), 0.00013), 0.00001)
    step = max(1, 86_400_000_000 // max(total, 1))
    return pa.table(
        {
            "id": ids,
            "price": price,
            "qty": qty,
            "quote_qty": pc.multiply(price, qty),
            "time": pc.add(pc.multiply(pc.subtract(ids, 1), step), DAY_START_US),  # one UTC day
            "is_buyer_maker": pc.equal(pc.bit_wise_and(ids, 1), 1),
            "is_best_match": pa.repeat(pa.scalar(True), count),
        }
    )


def make_input(rows: int, folder: Path) -> tuple[Path, Path]:
    """(csv, zip) with `rows` trade rows; reused when already there."""
    folder.mkdir(parents=True, exist_ok=True)
    csv_path = folder / f"trades-{rows}.csv"
    zip_path = folder / f"trades-{rows}.zip"
    if not csv_path.exists():
        partial = csv_path.with_suffix(".part")
        with pacsv.CSVWriter(
            partial,
            _trades_chunk(1, 1, rows).schema,
            write_options=pacsv.WriteOptions(include_header=False, quoting_style="none"),
        ) as writer:
            for start in range(1, rows + 1, _CHUNK):
                writer.write_table(_trades_chunk(start, min(_CHUNK, rows - start + 1), rows))
        partial.rename(csv_path)
    if not zip_path.exists():
        partial = zip_path.with_suffix(".zpart")
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
            archive.write(csv_path, f"BTCUSDT-trades-{DAY}.csv")
        partial.rename(zip_path)
    return csv_path, zip_path


# -- the two sides (run in a child process) ----------------------------------------------------


def _peak_rss_mib() -> float:
    text = Path("/proc/self/status").read_text()
    match = re.search(r"^VmHWM:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) / 1024 if match else 0.0


def bare_side(csv_path: str, out: str) -> dict[str, Any]:
    import pyarrow.parquet as pq

    from crypto_lakehouse.archive.schemas import schema_for
    from crypto_lakehouse.lake.parser import BLOCK_SIZE

    schema = schema_for("spot", "trades")
    started = time.perf_counter()
    rows = 0
    reader = pacsv.open_csv(
        csv_path,
        read_options=pacsv.ReadOptions(column_names=schema.names, block_size=BLOCK_SIZE),
        convert_options=pacsv.ConvertOptions(column_types=schema.arrow_schema()),
    )
    with pq.ParquetWriter(out, reader.schema, compression="zstd") as writer:
        for batch in reader:
            writer.write_batch(batch)
            rows += batch.num_rows
    return {"rows": rows, "seconds": time.perf_counter() - started}


def silver_side(spec: dict[str, Any]) -> dict[str, Any]:
    from pydantic import SecretStr

    from crypto_lakehouse.lake.ledger import Ledger
    from crypto_lakehouse.lake.silver import BronzeFile, SilverBuilder
    from crypto_lakehouse.lake.warehouse import LakeConfig, Warehouse
    from crypto_lakehouse.storage import Endpoint, S3Storage

    endpoint = Endpoint(
        spec["endpoint"], SecretStr(spec["access_key"]), SecretStr(spec["secret_key"])
    )
    config = LakeConfig(
        SecretStr(spec["catalog_url"]), endpoint, spec["bronze"], spec["silver"], spec["gold"]
    )
    warehouse = Warehouse(config)
    ledger = Ledger(config.sqlalchemy_url)
    builder = SilverBuilder(warehouse, ledger, S3Storage(endpoint), config.bronze_bucket)
    started = time.perf_counter()
    outcome = builder.transform(BronzeFile(spec["key"], spec["sha256"]))
    seconds = time.perf_counter() - started
    if outcome.status != "transformed":
        raise RuntimeError(f"silver side: {outcome.status}: {outcome.message}")
    return {"rows": outcome.rows, "seconds": seconds, "mode": outcome.mode}


def child_main() -> None:
    spec = json.load(sys.stdin)
    result = silver_side(spec) if spec["side"] == "silver" else bare_side(spec["csv"], spec["out"])
    result["peak_rss_mib"] = _peak_rss_mib()
    print(json.dumps(result))


# -- the parent ----------------------------------------------------------------------------


@dataclass
class TransformMeasurement:
    name: str
    rows: int
    seconds: float
    peak_rss_mib: float

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


@dataclass
class TransformResult:
    rows: int
    zip_mib: float
    csv_mib: float
    bare: TransformMeasurement
    silver: TransformMeasurement
    silver_small: TransformMeasurement
    notes: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.silver.rate / self.bare.rate if self.bare.rate else 0.0

    def table(self) -> str:
        lines = [
            f"transform: {self.rows:,} spot trade rows (CSV {self.csv_mib:.0f} MiB, zip "
            f"{self.zip_mib:.0f} MiB)",
            f"{'method':<34}{'rows':>12}{'seconds':>10}{'rows/s':>14}{'peak RSS MiB':>14}",
        ]
        for m in (self.bare, self.silver, self.silver_small):
            lines.append(
                f"{m.name:<34}{m.rows:>12,}{m.seconds:>10.2f}{m.rate:>14,.0f}"
                f"{m.peak_rss_mib:>14.0f}"
            )
        verdict = "meets" if self.ratio >= TRANSFORM_RATIO else "misses"
        lines.append(
            f"silver / bare rate: {self.ratio:.2f} ({verdict} the {TRANSFORM_RATIO:.0%} target); "
            f"peak RSS {self.silver_small.peak_rss_mib:.0f} MiB at {self.silver_small.rows:,} "
            f"rows vs {self.silver.peak_rss_mib:.0f} MiB at {self.silver.rows:,}"
        )
        return "\n".join(lines + self.notes)

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}


def _run_child(spec: dict[str, Any]) -> dict[str, Any]:
    return run_child("crypto_lakehouse.bench.transform", spec, RuntimeError)


class TransformBench:
    """Generate the input, start private servers, run both sides, report side by side."""

    def __init__(self, settings: Settings, *, rows: int, log: Callable[[str], None]) -> None:
        self.settings = settings
        self.rows = rows
        self.log = log

    def run(self) -> TransformResult:
        import hashlib

        from crypto_lakehouse.stack.postgres import PostgresServer
        from crypto_lakehouse.stack.seaweed import Credentials, SeaweedServer
        from crypto_lakehouse.storage import S3Storage

        folder = self.settings.home_dir / "bench" / "transform"
        small_rows = max(self.rows // 5, 1)
        self.log(f"generating inputs ({self.rows:,} and {small_rows:,} rows; cached)...")
        csv_path, zip_path = make_input(self.rows, folder)
        _, small_zip = make_input(small_rows, folder)
        with tempfile.TemporaryDirectory(prefix="bench-transform-") as tmp:
            root = Path(tmp)
            self.log("bare pyarrow CSV -> Parquet...")
            bare = _run_child(
                {"side": "bare", "csv": str(csv_path), "out": str(root / "b.parquet")}
            )
            (root / "b.parquet").unlink(missing_ok=True)
            seaweed = SeaweedServer("bench-lake", root / "lake", admin=Credentials.generate())
            postgres = PostgresServer(root / "pg")
            self.log("starting a private SeaweedFS and PostgreSQL...")
            seaweed.start()
            postgres.start()
            try:
                storage = S3Storage(seaweed.endpoint())
                results = {}
                for name, path, rows in (
                    ("small", small_zip, small_rows),
                    ("full", zip_path, self.rows),
                ):
                    database = f"bench_{uuid.uuid4().hex[:8]}"
                    postgres.create_database(database)
                    buckets = {
                        k: f"bench-{k}-{uuid.uuid4().hex[:6]}" for k in ("bronze", "silver", "gold")
                    }
                    for bucket in buckets.values():
                        storage.ensure_bucket(bucket)
                    self.log(f"uploading the {rows:,}-row zip to bronze...")
                    storage.client.upload_file(str(path), buckets["bronze"], KEY)
                    with path.open("rb") as handle:
                        digest = hashlib.file_digest(handle, "sha256").hexdigest()
                    self.log(f"silver build of {rows:,} rows...")
                    results[name] = _run_child(
                        {
                            "side": "silver",
                            "endpoint": seaweed.url,
                            "access_key": seaweed.admin.access_key,
                            "secret_key": seaweed.admin.secret_key,
                            "catalog_url": postgres.info.url(database),
                            "key": KEY,
                            "sha256": digest,
                            **buckets,
                        }
                    )
            finally:
                seaweed.stop()
                postgres.stop()
        return TransformResult(
            rows=self.rows,
            zip_mib=zip_path.stat().st_size / 2**20,
            csv_mib=csv_path.stat().st_size / 2**20,
            bare=TransformMeasurement(
                "bare pyarrow CSV->Parquet (local)",
                bare["rows"],
                bare["seconds"],
                bare["peak_rss_mib"],
            ),
            silver=_measurement("silver build (S3 zip -> Iceberg)", results["full"]),
            silver_small=_measurement("silver build, 1/5 of the rows", results["small"]),
        )


def _measurement(name: str, data: dict[str, Any]) -> TransformMeasurement:
    return TransformMeasurement(name, data["rows"], data["seconds"], data["peak_rss_mib"])


if __name__ == "__main__":
    child_main()
