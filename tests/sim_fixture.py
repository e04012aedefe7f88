"""Pytest plugin: the Binance simulator as a real subprocess (``python -m ingest.cli sim --port 0``).

``sim_factory(**flags)`` starts one and returns a ``SimProcess`` (URLs, stats, fault injection, sent-log);
every simulator started in a test is stopped at teardown, and each one also stops by itself when the test
process dies (it watches its stdin) or after ``--duration``. ``sim`` is a ready-made small simulator:
the 2021 exchangeInfo (its first 20 TRADING symbols), 0.5 s arrays, seed 42, a sent-log.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
CAPTURES = REPO_ROOT.parent / "shared" / "data" / "binance-captures"
EXCHANGE_INFO_2021 = CAPTURES / "exchangeInfo-2021-10-12.json"
TEST_DATA = Path(__file__).resolve().parent / "data"
EXCHANGE_INFO_EXCERPT = TEST_DATA / "exchangeInfo-2021-10-12-excerpt.json"
START_TIMEOUT_S = 30.0
SAFETY_DURATION_S = 900.0  # no simulator outlives a test run, even if teardown never happens


def require_captures() -> Path:
    """The full 2021 exchangeInfo capture, or a skip that says where it was looked for."""
    if not EXCHANGE_INFO_2021.exists():
        pytest.skip(f"shared Binance captures not found at {CAPTURES} (clone the repo next to shared/)")
    return EXCHANGE_INFO_2021


class SimProcess:
    """A running ``ingest sim``; thin HTTP helpers around its control API."""

    def __init__(self, proc: subprocess.Popen[str], ws_url: str, http_url: str, sent_log: Path | None,
                 stderr_path: Path) -> None:
        self.proc = proc
        self.ws_url = ws_url
        self.http_url = http_url
        self.sent_log = sent_log
        self.stderr_path = stderr_path

    # -- HTTP ----------------------------------------------------------------------------------------

    def request(self, path: str, params: dict[str, Any] | None = None, method: str = "GET",
                timeout: float = 10.0) -> tuple[int, dict[str, str], Any]:
        """(status, headers, body); HTTP errors are returned, not raised.

        The body is decoded JSON, or the text itself when it is not JSON (the CDN's HTML 403 page)."""
        url = self.http_url + path
        if params:
            url += "?" + urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        req = urllib.request.Request(url, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, dict(resp.headers.items()), decode_body(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers.items()), decode_body(exc.read())

    def _control(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        status, _, body = self.request(path, params, method="POST")
        if status != 200:
            raise RuntimeError(f"simulator {path} {params} -> {status}: {body}")
        return body

    def stats(self) -> dict[str, Any]:
        return self.request("/_sim/stats")[2]

    def connections(self) -> dict[str, Any]:
        return self.request("/_sim/connections")[2]

    def fault(self, type: str, **params: Any) -> dict[str, Any]:
        """e.g. ``fault("close", code=1011)``, ``fault("malformed", kind="invalid_json", count=3)``."""
        return self._control("/_sim/fault", {"type": type, **params})

    def listing(self, symbol: str, base: str, quote: str, **params: Any) -> dict[str, Any]:
        return self._control("/_sim/listing", {"symbol": symbol, "base": base, "quote": quote, **params})

    def delisting(self, symbol: str, **params: Any) -> dict[str, Any]:
        return self._control("/_sim/delisting", {"symbol": symbol, **params})

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0,
                 interval: float = 0.05) -> dict[str, Any]:
        """Poll /_sim/stats until ``predicate(stats)`` holds; the last stats on success, AssertionError else."""
        deadline = time.monotonic() + timeout
        stats = self.stats()
        while not predicate(stats):
            if time.monotonic() > deadline:
                raise AssertionError(f"simulator stats never satisfied the condition: {stats}")
            time.sleep(interval)
            stats = self.stats()
        return stats

    def sent_records(self) -> list[dict[str, Any]]:
        """Every line of the sent-log so far (tickers and fault lines)."""
        if self.sent_log is None or not self.sent_log.exists():
            return []
        lines = self.sent_log.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    # -- lifecycle -----------------------------------------------------------------------------------

    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then SIGKILL if it does not stop; returns the exit code."""
        if self.proc.stdin and not self.proc.stdin.closed:
            self.proc.stdin.close()  # EOF on stdin is a stop request too
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        if self.proc.stdout:
            self.proc.stdout.close()
        return self.proc.returncode


def decode_body(body: bytes) -> Any:
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return body.decode("utf-8", errors="replace")


def to_flags(options: dict[str, Any]) -> list[str]:
    """{'max_lifetime': 3, 'exit_on_stdin_eof': True} -> ['--max-lifetime', '3', '--exit-on-stdin-eof']."""
    args: list[str] = []
    for key, value in options.items():
        if value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            args.append(flag)
        elif isinstance(value, list | tuple):
            for item in value:
                args += [flag, str(item)]
        else:
            args += [flag, str(value)]
    return args


def start_sim(workdir: Path, *extra: str, sent_log: bool = True, **options: Any) -> SimProcess:
    """Start ``ingest sim`` and wait for its two URL lines on stdout."""
    workdir.mkdir(parents=True, exist_ok=True)
    stamp = f"{time.monotonic_ns()}"
    log_path = workdir / f"sent-{stamp}.jsonl" if sent_log else None
    stderr_path = workdir / f"sim-{stamp}.stderr"
    options.setdefault("duration", SAFETY_DURATION_S)
    if log_path is not None:
        options["sent_log"] = log_path
    cmd = [sys.executable, "-m", "ingest.cli", "sim", "--port", "0", "--exit-on-stdin-eof", *to_flags(options), *extra]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with stderr_path.open("w") as stderr:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True,
                                cwd=REPO_ROOT, env=env)
    lines: queue.Queue[str] = queue.Queue()

    def read_stdout() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.strip())

    threading.Thread(target=read_stdout, daemon=True).start()
    urls: dict[str, str] = {}
    deadline = time.monotonic() + START_TIMEOUT_S
    while len(urls) < 2:
        try:
            line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            proc.kill()
            raise RuntimeError(f"ingest sim did not start: {' '.join(cmd)}\n{stderr_path.read_text()}") from None
        for scheme in ("ws", "http"):
            if line.startswith(scheme + "://"):
                urls[scheme] = line
    return SimProcess(proc, urls["ws"], urls["http"], log_path, stderr_path)


@pytest.fixture
def sim_factory(tmp_path: Path) -> Iterator[Callable[..., SimProcess]]:
    """Start simulators: ``sim_factory(exchange_info=..., symbols=5, interval=0.1, max_lifetime=3, ...)``.

    Keyword arguments become flags (``max_lifetime=3`` -> ``--max-lifetime 3``, ``fault=[...]`` repeats
    ``--fault``); positional strings are passed as they are; ``sent_log=False`` disables the sent-log.
    Without ``exchange_info`` and ``replay``, the full 2021 capture is used (the test skips if it is absent).
    """
    started: list[SimProcess] = []

    def factory(*extra: str, sent_log: bool = True, **options: Any) -> SimProcess:
        if not options.get("exchange_info") and not options.get("replay"):
            options["exchange_info"] = require_captures()
        sim = start_sim(tmp_path / "sim", *extra, sent_log=sent_log, **options)
        started.append(sim)
        return sim

    yield factory
    for sim in started:
        sim.stop()


@pytest.fixture
def sim(sim_factory: Callable[..., SimProcess]) -> SimProcess:
    """A small, fast, reproducible simulator: 20 TRADING symbols of the 2021 capture, 0.5 s arrays, seed 42."""
    return sim_factory(symbols=20, interval=0.5, seed=42)
