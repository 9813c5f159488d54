"""`bench transfer`: the engine against plain s5cmd, rclone, boto3 and its own baseline.

One process run: start two SeaweedFS servers (a public *source*, a signed *lake*) in a
temporary folder, generate each workload once, then for every round run every method on
the same data into a fresh destination prefix of a bucket that method owns (the first
copy into a new bucket is much slower, so buckets are made and warmed up before timing).
Round 0 is a warm-up and discarded; the median of the other rounds is reported, and
every ratio compares numbers from this same run. Each copy is counted afterwards (a
method that copied less than everything fails the benchmark) and its prefix deleted.
The servers are stopped by PID and the folder removed at the end.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from crypto_lakehouse.bench import baselines
from crypto_lakehouse.bench.child import run_child
from crypto_lakehouse.bench.netem import CONNECT_RTTS, NetemConfig, NetemProxy
from crypto_lakehouse.bench.proc import cpu_seconds
from crypto_lakehouse.bench.report import BenchResult, TransferMeasurement, case_label
from crypto_lakehouse.bench.tls import make_tls_files, trusting
from crypto_lakehouse.config import MIB, Settings
from crypto_lakehouse.stack.seaweed import Credentials, SeaweedServer
from crypto_lakehouse.storage import Endpoint, S3Storage, S3Url
from crypto_lakehouse.transfer import (
    EngineOptions,
    Invocation,
    Mode,
    StagingArea,
    TransferEngine,
    TransferRequest,
)

SOURCE_BUCKET = "bench-src"  # on the source server (anonymous reads)
LAKE_SOURCE_BUCKET = "bench-lsrc"  # the same data on the lake, for same-endpoint methods
# One run of a method: wall s, client CPU s, servers CPU s, connections to the source (None:
# no proxy counts them)
Timing = tuple[float, float, float, int | None]
SAME_ENDPOINT_METHODS = ("engine-direct", "s5cmd-raw-direct", "traditional")
METHODS = (  # every method a run can have (`--method` picks some)
    *SAME_ENDPOINT_METHODS,
    "engine-staged",
    "s5cmd-raw",
    "rclone",
    "naive-boto3",
    "aria2c",
    "staged-4chunks",
    "staged-4chunks-overlap",
)


@dataclass(frozen=True)
class Workload:
    name: str
    count: int
    size: int

    @property
    def prefix(self) -> str:
        return f"{self.name}/"


def workloads(quick: bool) -> list[Workload]:
    if quick:
        return [Workload("small", 500, 4096), Workload("large", 6, 32 * MIB)]
    return [Workload("small", 2000, 4096), Workload("large", 20, 32 * MIB)]


@dataclass
class _Env:
    root: Path
    source: SeaweedServer
    lake: SeaweedServer
    options: EngineOptions
    sha256: dict[str, dict[str, str]] = field(default_factory=dict)  # workload -> key -> sha
    staging_areas: list[StagingArea] = field(default_factory=list)  # closed with the servers
    proxy: NetemProxy | None = None  # latency/fault proxy in front of the source (--rtt)
    ca_bundle: Path | None = None  # the source also serves HTTPS, signed by this authority

    def raw_staging(self, total: int) -> StagingArea:
        """Where the plain-s5cmd reference stages `total` bytes: on the medium the engine's
        chunks use, so the overhead ratio compares the same copy, not two filesystems.

        The engine stages chunks of at most `chunk_bytes`, in memory when a chunk fits the
        memory cap. Plain s5cmd stages the whole set in one step, so when the engine's
        chunk goes to memory the reference gets a memory tier as large as the whole set
        (and stays on disk when the engine's chunk does).
        """
        opts = self.options
        engine_chunk = min(total, opts.chunk_bytes)
        in_memory = opts.staging_memory_root is not None and (
            0 < engine_chunk <= opts.staging_memory_cap_bytes
        )
        area = StagingArea(
            self.root / "raw-staging",
            max(opts.staging_cap_bytes, total),
            memory_root=opts.staging_memory_root if in_memory else None,
            memory_cap_bytes=total if in_memory else 0,
        )
        self.staging_areas.append(area)
        return area

    @property
    def server_pids(self) -> list[int]:
        return [pid for s in (self.source, self.lake) if (pid := s.process.running_pid())]

    @property
    def public(self) -> Endpoint:
        """The source as methods that read it see it: through the proxy when one runs."""
        if self.proxy is not None:
            url = self.proxy.https_url if self.ca_bundle is not None else self.proxy.url
            return Endpoint(url=url, anonymous=True)
        return self.source.endpoint(anonymous=True)

    @property
    def signed_lake(self) -> Endpoint:
        return self.lake.endpoint()


class TransferBench:
    def __init__(
        self,
        settings: Settings,
        *,
        quick: bool = False,
        repeats: int = 3,
        log: Callable[[str], None] = print,
        rtts: Sequence[float] = (),
        resets: float = 0.0,
        only: Sequence[str] = (),
        connect_rtts: float = CONNECT_RTTS,
        tls: bool = False,
    ) -> None:
        self.settings = settings
        self.only = set(only)  # empty: every method
        self.quick = quick
        self.repeats = max(1, repeats)
        self.log = log
        self.rtts = list(rtts)  # empty: no proxy, loopback as it is
        self.resets = resets
        self.connect_rtts = connect_rtts
        # Behind the proxy the source is read over HTTPS (HTTP/2), as the real archive is
        # (faults are injected into HTTP requests, which the proxy cannot see inside TLS).
        self.tls = tls
        self.proxy_cpu: dict[str, float] = {}  # case label -> proxy CPU seconds

    # -- the comparison ------------------------------------------------------------------

    def run(self) -> BenchResult:
        result = BenchResult()
        with self._servers() as env:
            for workload, rtt in self._cases():
                if workload.name not in env.sha256:
                    self._generate(env, workload)
                case = self._use_proxy(env, workload, rtt)
                methods = self._methods(env, workload)
                buckets = {name: f"bench-{name}" for name in methods}
                for bucket in buckets.values():
                    S3Storage(env.signed_lake).ensure_bucket(bucket)
                times: dict[str, list[Timing]] = {name: [] for name in methods}
                reruns: dict[str, list[Timing]] = {
                    name: [] for name in ("engine-direct", "engine-staged") if name in methods
                }
                for round_no in range(self.repeats + 1):
                    for name, method in methods.items():
                        prefix = f"r{round_no}/"
                        try:
                            timing = _timed(
                                lambda m=method, b=buckets[name], p=prefix: m(b, p),
                                env.server_pids,
                                env.proxy,
                            )
                            self._check_copied(env, buckets[name], prefix, workload, name)
                        except Exception as exc:
                            if not self.resets:
                                raise
                            # Under injected faults a method may give up: that is its result.
                            self._failed(env, result, case, name, round_no, buckets[name],
                                         prefix, workload, exc)  # fmt: skip
                            continue
                        if name in reruns:
                            again = _timed(
                                lambda m=method, b=buckets[name], p=prefix: m(b, p),
                                env.server_pids,
                                env.proxy,
                            )
                            if round_no:
                                reruns[name].append(again)
                        self._clear(env, buckets[name], prefix)
                        label = "warm-up" if round_no == 0 else f"run {round_no}"
                        opened = f", {timing[3]} connections" if timing[3] is not None else ""
                        self.log(
                            f"{case:5} {name:19} {label:8} {timing[0]:7.2f} s "
                            f"(client CPU {timing[1]:.2f} s, servers CPU {timing[2]:.2f} s"
                            f"{opened})"
                        )
                        if round_no:
                            times[name].append(timing)
                    env.lake.vacuum()  # untimed: deleted copies would fill the volumes
                if env.proxy is not None:
                    self.proxy_cpu[case] = env.proxy.cpu_seconds()
                    self.log(f"{case}: proxy CPU {self.proxy_cpu[case]:.2f} s for all its runs")
                for name, values in {
                    **times,
                    **{f"{k}-rerun": v for k, v in reruns.items()},
                }.items():
                    if not values:  # every run of it failed (listed in failed_runs)
                        continue
                    result.add(
                        TransferMeasurement(
                            case,
                            name,
                            statistics.median(v[0] for v in values),
                            [v[0] for v in values],
                            workload.count,
                            workload.count * workload.size,
                            cpu_seconds=statistics.median(v[1] for v in values),
                            server_cpu_seconds=statistics.median(v[2] for v in values),
                            source_connections=_median_count([v[3] for v in values]),
                        )
                    )
        return result

    def _failed(
        self,
        env: _Env,
        result: BenchResult,
        case: str,
        name: str,
        round_no: int,
        bucket: str,
        prefix: str,
        w: Workload,
        exc: Exception,
    ) -> None:
        """Record a method that failed under injected faults, with how much it copied."""
        copied = sum(1 for _ in S3Storage(env.signed_lake).list_objects(bucket, prefix))
        reason = " ".join(str(exc).split())[:240] or type(exc).__name__
        result.failed_runs.append(
            {"workload": case, "method": name, "round": round_no, "copied": copied,
             "objects": w.count, "error": f"{type(exc).__name__}: {reason}"}
        )  # fmt: skip
        self.log(f"{case:5} {name:19} FAILED after {copied} of {w.count} objects: {reason}")
        self._clear(env, bucket, prefix)

    def _cases(self) -> list[tuple[Workload, float | None]]:
        """Each workload, once per round trip asked for (None: no proxy)."""
        rtts: list[float | None] = list(self.rtts) or [None]
        return [(w, rtt) for w in workloads(self.quick) for rtt in rtts]

    def _use_proxy(self, env: _Env, w: Workload, rtt: float | None) -> str:
        """Put a fresh proxy at `rtt` ms in front of the source (or none); the case's label.

        Only methods that read the source go through it; same-endpoint methods
        (engine-direct, s5cmd-raw-direct, traditional) copy inside the lake and do not.
        """
        if env.proxy is not None:
            env.proxy.stop()
            env.proxy = None
        if rtt is None:
            return w.name
        config = NetemConfig.in_front_of(
            env.source.https_url or env.source.url,
            rtt_ms=rtt,
            resets=self.resets,
            connect_rtts=self.connect_rtts,
        )
        env.proxy = NetemProxy(config).start()
        case = case_label(w.name, rtt, self.resets)
        self.log(f"proxy {env.public.url} -> {config.upstream_port}: {case}")
        return case

    def _methods(self, env: _Env, w: Workload) -> dict[str, Callable[[str, str], object]]:
        engine = TransferEngine(env.options)
        workers = env.options.max_concurrent
        # Reading the source, every tool gets the engine's parallelism there; on loopback
        # rclone keeps the transfer count it is fastest with.
        source_workers = env.options.source_workers
        proxied = env.proxy is not None
        rclone_transfers = source_workers if proxied else baselines.RCLONE_TRANSFERS
        naive = baselines.NaiveBoto3(env.public, env.signed_lake)
        lake, public = env.signed_lake, env.public
        expected = env.sha256[w.name]

        def engine_run(
            source: Endpoint, src_bucket: str, mode: Mode, checks: bool, **knobs: object
        ) -> Callable:
            runner = TransferEngine(replace(env.options, **knobs)) if knobs else engine

            def run(bucket: str, prefix: str) -> None:
                report = runner.run(
                    TransferRequest(
                        source=source,
                        source_url=S3Url(src_bucket, w.prefix),
                        dest=lake,
                        dest_url=S3Url(bucket, prefix),
                        mode=mode,
                        expected_sha256=expected if checks else None,
                    )
                )
                summary = report.summary
                if not summary.ok:
                    reasons = sorted({r.error or "" for r in report.failures()})[:2]
                    raise baselines.BaselineError(
                        f"engine {mode}: {summary.failed} failed and {summary.corrupt} corrupt "
                        f"of {summary.objects}, each reported ({'; '.join(reasons)})"
                    )

            return run

        total = w.count * w.size
        raw_area = env.raw_staging(total)

        def raw_two_step(dest_url: str) -> None:
            raw_area.reserve(total)
            folder = raw_area.new_chunk(total)
            try:
                baselines.s5cmd_raw(
                    public,
                    f"s3://{SOURCE_BUCKET}/{w.prefix}",
                    lake,
                    dest_url,
                    folder,
                    workers,
                    source_workers,
                )
            finally:
                raw_area.release(folder, total)

        methods: dict[str, Callable[[str, str], object]] = {
            "engine-direct": engine_run(lake, LAKE_SOURCE_BUCKET, Mode.DIRECT, False),
            "s5cmd-raw-direct": lambda b, p: baselines.s5cmd_raw_direct(
                lake, f"s3://{LAKE_SOURCE_BUCKET}/{w.prefix}", f"s3://{b}/{p}", workers
            ),
            "traditional": engine_run(lake, LAKE_SOURCE_BUCKET, Mode.TRADITIONAL, False),
            "engine-staged": engine_run(public, SOURCE_BUCKET, Mode.STAGED, True),
            "s5cmd-raw": lambda b, p: raw_two_step(f"s3://{b}/{p}"),
            "rclone": lambda b, p: baselines.rclone(
                public, (SOURCE_BUCKET, w.prefix), lake, (b, p), env.root, rclone_transfers
            ),
            "naive-boto3": lambda b, p: naive.copy((SOURCE_BUCKET, w.prefix), (b, p)),
            **(
                {
                    "aria2c": lambda b, p: _aria2c_then_s5cmd(
                        public,
                        w.prefix,
                        lake,
                        f"s3://{b}/{p}",
                        env.root,
                        workers,
                        source_workers,
                        env.ca_bundle,
                    )
                }
                if shutil.which("aria2c")
                else {}
            ),
            **self._overlap_study(w, engine_run, public),
        }
        if proxied:  # copies inside the lake never see the proxy: they are loopback runs
            for name in SAME_ENDPOINT_METHODS:
                del methods[name]
        if self.only:
            methods = {name: run for name, run in methods.items() if name in self.only}
        return methods

    def _overlap_study(self, w: Workload, engine_run: Callable, public: Endpoint) -> dict:
        """Large workload only: four chunks in turn vs four chunks with download/upload overlap.

        Overlap holds two chunks, so its cap is twice the chunk size; chunking is forced by
        the cap in both, which is what decides whether overlap should be on by default.
        """
        if w.size < MIB:
            return {}
        chunk = w.count * w.size // 4 + 1
        return {
            "staged-4chunks": engine_run(
                public, SOURCE_BUCKET, Mode.STAGED, True, staging_cap_bytes=chunk, overlap=False
            ),
            "staged-4chunks-overlap": engine_run(
                public, SOURCE_BUCKET, Mode.STAGED, True, staging_cap_bytes=2 * chunk, overlap=True
            ),
        }

    # -- memory mode ---------------------------------------------------------------------

    def run_memory(self, objects: int) -> BenchResult:
        """Copy `objects` 1 KiB objects with the engine in a child process; report its peak RSS."""
        result = BenchResult()
        with self._servers() as env:
            workload = Workload("many", objects, 1024)
            self._generate(env, workload, lake_copy=False, hashes=False)
            S3Storage(env.signed_lake).ensure_bucket("bench-memory")
            spec = {
                "source_url": env.source.url,
                "dest_url": env.lake.url,
                "dest_access_key": env.lake.admin.access_key,
                "dest_secret_key": env.lake.admin.secret_key,
                "options": env.options.as_json(),  # every knob, as the comparison runs
                "source": f"s3://{SOURCE_BUCKET}/{workload.prefix}",
                "dest": "s3://bench-memory/copy/",
            }
            self.log(f"copying {objects} objects with the engine in a child process ...")
            data = run_child("crypto_lakehouse.bench.memory", spec, baselines.BaselineError)
            if data["copied"] != objects:
                raise baselines.BaselineError(f"memory run copied {data['copied']} of {objects}")
            result.memory = data
            result.add(
                TransferMeasurement(
                    "many",
                    "engine-staged",
                    data["seconds"],
                    [data["seconds"]],
                    objects,
                    data["bytes"],
                )
            )
            result.add(
                TransferMeasurement(
                    "many",
                    "engine-staged-rerun",
                    data["rerun_seconds"],
                    [data["rerun_seconds"]],
                    objects,
                    data["bytes"],
                )
            )
        return result

    # -- set-up ----------------------------------------------------------------------------

    def _servers(self) -> _ServerScope:
        return _ServerScope(self)

    def _generate(
        self, env: _Env, w: Workload, *, lake_copy: bool = True, hashes: bool = True
    ) -> None:
        """Write the workload's files once, upload them to the source (and the lake)."""
        folder = env.root / "data" / w.name
        folder.mkdir(parents=True, exist_ok=True)
        self.log(f"generating {w.count} x {w.size // 1024} KiB ({w.name}) ...")
        digests: dict[str, str] = {}
        for i in range(w.count):
            data = os.urandom(w.size)
            name = f"f{i:06d}.bin"
            (folder / name).write_bytes(data)
            if hashes:
                digests[w.prefix + name] = hashlib.sha256(data).hexdigest()
        env.sha256[w.name] = digests
        targets = [(env.source.endpoint(), SOURCE_BUCKET)]
        if lake_copy:
            targets.append((env.signed_lake, LAKE_SOURCE_BUCKET))
        for endpoint, bucket in targets:
            S3Storage(endpoint).ensure_bucket(bucket)
            baselines.upload_folder(
                endpoint,
                folder,
                f"s3://{bucket}/{w.prefix}",
                64,
                f"upload of the {w.name} workload",
            )
        shutil.rmtree(folder, ignore_errors=True)

    def _check_copied(self, env: _Env, bucket: str, prefix: str, w: Workload, name: str) -> None:
        found = sum(1 for _ in S3Storage(env.signed_lake).list_objects(bucket, prefix))
        if found != w.count:
            raise baselines.BaselineError(f"{name} copied {found} of {w.count} objects")

    def _clear(self, env: _Env, bucket: str, prefix: str) -> None:
        inv = Invocation(env.signed_lake, numworkers=64)
        subprocess.run(
            inv.argv("rm", f"s3://{bucket}/{prefix}*"),
            env=inv.env(),
            capture_output=True,
            check=False,
        )


class _ServerScope:
    """Start the source and lake servers in a temporary folder; stop them by PID on exit."""

    def __init__(self, bench: TransferBench) -> None:
        self.bench = bench
        self.root = Path(tempfile.mkdtemp(prefix="lakehouse-bench-"))
        self.servers: list[SeaweedServer] = []
        self.env: _Env | None = None
        self.trust = contextlib.ExitStack()  # the run's authority in the environment

    def __enter__(self) -> _Env:
        log = self.bench.log
        tls = make_tls_files(self.root / "tls") if self.bench.tls else None
        source = SeaweedServer(
            "bench-source",
            self.root / "source",
            admin=Credentials.generate(),
            anonymous_read=True,
            tls=(tls.cert, tls.key) if tls is not None else None,
        )
        lake = SeaweedServer("bench-lake", self.root / "lake", admin=Credentials.generate())
        try:
            for server in (source, lake):
                log(f"starting SeaweedFS {server.name} ...")
                self.servers.append(server)
                server.start()
        except BaseException:
            self.__exit__()
            raise
        options = EngineOptions.from_settings(self.bench.settings)
        options.staging_root = self.root / "staging"
        self.env = _Env(self.root, source, lake, options)
        if tls is not None:
            self.env.ca_bundle = tls.ca
            self.trust.enter_context(trusting(tls.ca))
        return self.env

    def __exit__(self, *exc: object) -> None:
        if self.env is not None:
            for area in self.env.staging_areas:
                area.close()
            if self.env.proxy is not None:
                self.env.proxy.stop()
        for server in reversed(self.servers):
            server.stop()
        self.trust.close()
        shutil.rmtree(self.root, ignore_errors=True)


def _aria2c_then_s5cmd(
    source: Endpoint,
    prefix: str,
    dest: Endpoint,
    dst_url: str,
    workdir: Path,
    workers: int,
    source_workers: int,
    ca_bundle: Path | None = None,
) -> None:
    """List the source, fetch each object's HTTP URL with aria2c into a folder, upload it.

    How the archive is commonly downloaded (plain HTTPS URLs, parallel connections), then
    `s5cmd cp 'dir/*'` into the lake; the folder is removed afterwards.
    """
    folder = Path(tempfile.mkdtemp(prefix="aria2-", dir=workdir))
    try:
        keys = [o.key for o in S3Storage(source).list_objects(SOURCE_BUCKET, prefix)]
        inputs = folder / "urls.txt"
        inputs.write_text(
            "".join(
                f"{source.url}/{SOURCE_BUCKET}/{k}\n  out={k.rsplit('/', 1)[-1]}\n" for k in keys
            )
        )
        files = folder / "files"
        proc = subprocess.run(
            [
                "aria2c",
                "-q",
                "-i",
                str(inputs),
                "-d",
                str(files),
                f"-j{source_workers}",
                "-x1",
                "--allow-overwrite=true",
                "--auto-file-renaming=false",
                "--max-tries=5",
                *([f"--ca-certificate={ca_bundle}"] if ca_bundle is not None else []),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise baselines.BaselineError(f"aria2c failed: {proc.stderr.strip()[-300:]}")
        baselines.upload_folder(dest, files, dst_url, workers, "s5cmd upload after aria2c")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _cpu() -> float:
    """CPU seconds of this process plus its finished children (s5cmd, rclone)."""
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _timed(
    action: Callable[[], object], server_pids: list[int], proxy: NetemProxy | None = None
) -> Timing:
    """(wall seconds, client CPU seconds, both servers' CPU seconds, connections opened
    through the proxy (None without one)) of one run.

    On two cores the servers and the client compete for the same CPU, so a method's wall
    time depends on the servers' work it causes as much as on its own.
    """
    opened = proxy.connections() if proxy is not None else 0
    cpu, servers, started = _cpu(), cpu_seconds(server_pids) or 0.0, time.perf_counter()
    action()
    wall = time.perf_counter() - started
    used, served = _cpu() - cpu, (cpu_seconds(server_pids) or 0.0) - servers
    return wall, used, served, (proxy.connections() - opened if proxy is not None else None)


def _median_count(counts: list[int | None]) -> int | None:
    known = [n for n in counts if n is not None]
    return int(statistics.median(known)) if known else None
