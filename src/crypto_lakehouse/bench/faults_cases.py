"""Cases 1-5: a fault against the real local services during a real `ingest`, then a re-run.

Each case ingests the whole sample archive into its own bronze bucket and catalog
database (`Lab.target`), injects its fault once the first batch is verified (so it lands
mid-run, with batches of `BATCH` files), waits for the run to end (or calls it hung after
`RUN_TIMEOUT`), restarts what it stopped, runs `ingest` again, and audits bronze against
the source's sidecars.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from crypto_lakehouse.bench.faults_audit import Audit
from crypto_lakehouse.bench.faults_lab import SOURCE_BUCKET, Lab, Outcome, Running
from crypto_lakehouse.bench.faults_report import CaseResult
from crypto_lakehouse.bench.netem import NetemConfig, NetemProxy
from crypto_lakehouse.stack.process import ManagedProcess, port_in_use, wait_for_exit

BATCH = 100  # files per transfer task: several batches, so a fault lands between them
RUN_TIMEOUT = 300.0  # a run still going after this is hung (leases expire within ~75 s)
DOWN_SECONDS = 3.0  # how long a killed service stays down before it is started again
RESETS, SLOWDOWNS, SEED = 0.01, 0.05, 13  # case 2's proxy
STAGING_CAP = 1024 * 1024  # case 5: the smallest cap the settings accept
_CUT = re.compile(r"reset|EOF|connection broken")  # a reset as the client sees it
_RETRY_LINE = re.compile(r"retr(y|ies|ying|ied)|backoff|SlowDown|503", re.IGNORECASE)


def _finish(result: CaseResult, run: Outcome, rerun: Outcome, audit: Audit) -> CaseResult:
    """Fill the row from the two runs and the audit; the verdict as documented."""
    result.run, result.rerun = run.describe(), rerun.describe()
    result.lost, result.corrupt = audit.lost, audit.corrupt
    converged = rerun.exit_code == 0 and audit.verified == audit.expected and not audit.repeated
    result.held = audit.clean and converged and not run.hung
    if audit.lying:
        result.findings.append(f"{audit.lying} manifest rows say verified, bronze disagrees")
    if audit.repeated:
        result.findings.append(f"{audit.repeated} files verified more than once (version > 1)")
    if audit.stray:
        result.findings.append(f"{audit.stray} stray objects in bronze: {audit.examples['stray']}")
    for which, outcome in (("the run", run), ("the re-run", rerun)):
        if outcome.traceback:
            result.findings.append(f"{which} printed a Python traceback: {outcome.traceback}")
    if run.hung:
        result.findings.append(f"the run hung and was killed after {run.seconds:.0f} s")
    if not converged:
        result.findings.append(
            f"the re-run did not converge: {audit.verified} of {audit.expected} verified"
        )
    result.details.update(run=run.as_json(), rerun=rerun.as_json(), audit=audit.as_json())
    return result


def _kill(process: ManagedProcess) -> int | None:
    """SIGKILL the service's recorded PID and wait for it to exit; the PID, or None."""
    pid = process.running_pid()
    if pid is not None:
        os.kill(pid, signal.SIGKILL)
        wait_for_exit(pid, 30)
    return pid


def _mid_run(
    lab: Lab, name: str, env: dict[str, str], fault: Callable[[], str]
) -> tuple[Running, str]:
    """Start the ingest; once a batch is verified, inject `fault` (returns what it did)."""
    child = lab.start(env, "ingest", "--batch-files", str(BATCH))
    if lab.wait_for(name, BATCH, child):
        done = lab.verified(name)
        return child, f"{fault()} after {done} of {len(lab.source)} files verified"
    return child, f"no fault: the run ended before {BATCH} files were verified"


def lake_killed(lab: Lab) -> CaseResult:
    """Case 1: the lake's SeaweedFS SIGKILLed mid-ingest, started again 3 s later."""
    result = CaseResult(1, "lake S3 server killed mid-ingest", "ran")
    started = time.monotonic()
    name = "c1"
    env = lab.target(name)
    lake = lab.stack.lake
    attempts: list[str] = []

    def fault() -> str:
        pid = _kill(lake.process)
        time.sleep(DOWN_SECONDS)
        for _ in range(2):  # a start right after a kill has needed a second try
            try:
                lake.start(timeout=60)
                attempts.append("started")
                break
            except Exception as exc:  # recorded, then tried once more
                attempts.append(f"start failed: {str(exc).splitlines()[0]}")
        return f"SIGKILL to the lake's weed (PID {pid}), restarted {DOWN_SECONDS:g} s later"

    child, result.happened = _mid_run(lab, name, env, fault)
    run = child.wait(RUN_TIMEOUT)
    lake.start(timeout=60)  # no-op when it runs
    rerun = lab.run(env, "ingest", timeout=RUN_TIMEOUT)
    result.details["lake_starts"] = attempts
    if len(attempts) > 1:
        result.findings.append(f"restarting the lake took {len(attempts)} tries: {attempts}")
    result.seconds = time.monotonic() - started
    return _finish(result, run, rerun, lab.audit(name))


def source_faults(lab: Lab) -> CaseResult:
    """Case 2: 1% resets and 5% 503 SlowDown from the source (proxy) during an ingest."""
    result = CaseResult(2, "source resets + 503 SlowDown", "ran")
    started = time.monotonic()
    name = "c2"
    env = lab.target(name)
    config = NetemConfig.in_front_of(
        lab.stack.source.url, resets=RESETS, slowdowns=SLOWDOWNS, seed=SEED
    )
    with NetemProxy(config) as proxy:
        through = {**env, "SOURCE_ENDPOINT": proxy.url, "PREFECT_LOGGING_LEVEL": "INFO"}
        run = lab.run(through, "ingest", "--verbose", timeout=RUN_TIMEOUT)
        rerun = lab.run(through, "ingest", timeout=RUN_TIMEOUT)
        probe = _s5cmd_retries(proxy.url, lab.home / "probe-c2")
        cpu = proxy.cpu_seconds()
    result.happened = (
        f"proxy in front of the source: {RESETS:.0%} of requests reset mid-response, "
        f"{SLOWDOWNS:.0%} answered 503 SlowDown (seed {SEED}); proxy CPU {cpu:.1f} s"
    )
    log = Path(run.log).read_text(errors="replace") + Path(run.log).with_suffix(".err").read_text(
        errors="replace"
    )
    retries = [line.strip() for line in log.splitlines() if _RETRY_LINE.search(line)]
    result.details.update(proxy_cpu_seconds=round(cpu, 2), retry_lines=len(retries),
                          retry_examples=retries[:5], s5cmd_probe=probe)  # fmt: skip
    if not retries:
        result.findings.append(
            "no retry or back-off is visible in the ingest's --verbose log: s5cmd retries "
            "inside (debug-level 'retryable error' lines the engine does not report); the "
            f"same copy by s5cmd --log debug through the proxy: {probe['summary']}"
        )
    result.seconds = time.monotonic() - started
    return _finish(result, run, rerun, lab.audit(name))


def _s5cmd_retries(proxy_url: str, dest: Path) -> dict[str, object]:
    """The engine's s5cmd, as the engine runs it, copying the archive through the proxy with
    `--log debug`: how many requests it retried, by cause, and how many objects failed."""
    from crypto_lakehouse.storage.endpoint import Endpoint
    from crypto_lakehouse.transfer import Invocation

    invocation = Invocation(Endpoint(url=proxy_url, anonymous=True), log_level="debug")
    argv = invocation.argv("cp", f"s3://{SOURCE_BUCKET}/data/*", f"{dest}/")
    proc = subprocess.run(
        argv, env=invocation.env(), capture_output=True, text=True, timeout=300, check=False
    )
    lines = (proc.stdout + proc.stderr).splitlines()
    retried = [line for line in lines if "retryable error" in line]
    kinds = Counter(
        "SlowDown" if "SlowDown" in line else "cut connection" if _CUT.search(line) else "other"
        for line in retried
    )
    copied = sum('"success":true' in line.replace(" ", "") for line in lines)
    failed = sum('"error"' in line and "retryable error" not in line for line in lines)
    shutil.rmtree(dest, ignore_errors=True)
    summary = (
        f"{len(retried)} retried requests ({', '.join(f'{n} {k}' for k, n in kinds.items())}), "
        f"{copied} objects copied, {failed} failed, exit {proc.returncode}"
    )
    others = [line[:300] for line in retried if "SlowDown" not in line][:3]  # cut, as seen
    return {"retried": len(retried), "by_cause": dict(kinds), "copied": copied,
            "failed": failed, "exit_code": proc.returncode, "summary": summary,
            "not_slowdown_examples": others}  # fmt: skip


def postgres_restarted(lab: Lab) -> CaseResult:
    """Case 3: PostgreSQL (manifest, catalog, Prefect's database) restarted mid-ingest."""
    result = CaseResult(3, "PostgreSQL restarted mid-ingest", "ran")
    started = time.monotonic()
    name = "c3"
    env = lab.target(name)
    postgres = lab.stack.postgres

    def fault() -> str:
        pid = postgres.process.running_pid()
        postgres.stop()  # fast shutdown: every client connection is cut
        time.sleep(DOWN_SECONDS)
        postgres.start()
        return f"fast shutdown of PostgreSQL (PID {pid}), started {DOWN_SECONDS:g} s later"

    child, result.happened = _mid_run(lab, name, env, fault)
    run = child.wait(RUN_TIMEOUT)
    rerun = lab.run(env, "ingest", timeout=RUN_TIMEOUT)
    result.seconds = time.monotonic() - started
    return _finish(result, run, rerun, lab.audit(name))


def prefect_restarted(lab: Lab) -> CaseResult:
    """Case 4: the Prefect server SIGKILLed mid-flow and started again."""
    result = CaseResult(4, "Prefect server restarted mid-flow", "ran")
    started = time.monotonic()
    name = "c4"
    env = lab.target(name)
    prefect = lab.stack.prefect

    def fault() -> str:
        pid = _kill(prefect.process)
        time.sleep(DOWN_SECONDS)
        deadline = time.monotonic() + 30
        while port_in_use(prefect.port) and time.monotonic() < deadline:
            time.sleep(0.2)
        prefect.start(timeout=180)
        return f"SIGKILL to the Prefect server (PID {pid}), restarted {DOWN_SECONDS:g} s later"

    child, result.happened = _mid_run(lab, name, env, fault)
    run = child.wait(RUN_TIMEOUT)
    rerun = lab.run(env, "ingest", timeout=RUN_TIMEOUT)
    result.seconds = time.monotonic() - started
    return _finish(result, run, rerun, lab.audit(name))


def staging_too_small(lab: Lab) -> CaseResult:
    """Case 5: a 1 MiB staging cap with files above it: a clear error, nothing partial."""
    result = CaseResult(5, "staging cap too small", "ran")
    started = time.monotonic()
    name = "c5"
    env = lab.target(name)
    staging = lab.home / "staging-c5"
    small = {**env, "STAGING_CAP_BYTES": str(STAGING_CAP), "STAGING_MEMORY_DIR": "",
             "STAGING_DIR": str(staging)}  # fmt: skip
    too_big = {key for key, p in lab.source.items() if p.size > STAGING_CAP}
    run = lab.run(small, "ingest", timeout=RUN_TIMEOUT)
    first = lab.audit(name, expected=set(lab.source) - too_big)
    left = sorted(  # files, or a run folder: empty parent folders are fine
        str(p.relative_to(staging))
        for p in staging.rglob("*")
        if p.is_file() or p.name.startswith("run-")
    )
    rerun = lab.run(env, "ingest", timeout=RUN_TIMEOUT)
    result.happened = (
        f"STAGING_CAP_BYTES={STAGING_CAP} (disk only); {len(too_big)} of "
        f"{len(lab.source)} files are larger; staging left after the run: {len(left)} entries"
    )
    result.details.update(too_big=len(too_big), staging_left=left, first_audit=first.as_json())
    if not too_big:
        result.findings.append("no file is above the cap: the cap was not exercised")
    if left:
        result.findings.append(f"staging not cleaned after the run: {left[:5]}")
    partial = first.corrupt + first.stray + first.unasked
    if run.exit_code not in (3,) or first.lost or partial:
        result.findings.append(
            f"with the small cap: exit {run.exit_code}, {first.lost} smaller files missing, "
            f"{partial} partial or stray objects"
        )
    _finish(result, run, rerun, lab.audit(name))
    result.held = bool(result.held and not left and run.exit_code == 3 and not partial)
    result.seconds = time.monotonic() - started
    return result


CASES: dict[int, Callable[[Lab], CaseResult]] = {
    1: lake_killed,
    2: source_faults,
    3: postgres_restarted,
    4: prefect_restarted,
    5: staging_too_small,
}
