"""Binance REST calls the worker needs, inside the request-weight budget.

Binance bans IPs that ignore limits (HTTP 418, for minutes to days), so every request first reserves its
weight from a per-minute budget (the limit comes from exchangeInfo's ``REQUEST_WEIGHT`` rate limit, default
6000, minus a safety margin). When the budget is spent the request *waits for the next minute* instead of
being sent. The server's own count (``X-MBX-USED-WEIGHT-1M``) corrects our estimate after every response,
so weight used by other processes on the same IP is respected too. 429, 418 and 403 (a WAF rule) block every
request until their ``Retry-After`` has passed; 5xx and network errors are retried with capped, jittered
backoff. 451 (Binance refuses this location) blocks every request for ``--location-refused-retry-s`` (minutes)
and fails the call at once: one clear ERROR line, a /readyz reason, never a retry storm.

No extra HTTP dependency: ``urllib.request`` runs in a worker thread (``asyncio.to_thread``) with a timeout,
and the JSON is parsed in that thread too, so a 1.6 MB all-symbol ticker never stalls the event loop.
Nothing secret is sent (market data needs no API key) and only the path and parameter names are logged.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import math
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, NamedTuple
from urllib.parse import urlencode, urlsplit

import orjson

from ingest import metrics
from ingest.backoff import Backoff
from ingest.binance.limits import LocationRefusal
from ingest.config import Settings

log = logging.getLogger(__name__)

EXCHANGE_INFO = "/api/v3/exchangeInfo"
TICKER_24HR = "/api/v3/ticker/24hr"
TICKER_PRICE = "/api/v3/ticker/price"

EXCHANGE_INFO_WEIGHT = 20
DEFAULT_WEIGHT_LIMIT = 6000
SAFETY_MARGIN = 0.1
"""Fraction of the minute's weight we never use: room for clock skew between us and Binance's minute."""
MINUTE_SLACK_S = 1.0
"""Wait this much past our minute boundary, because Binance's clock decides when its minute starts."""
DEFAULT_RETRY_AFTER_S = 60.0
TIMEOUT_S = 15.0
MAX_ATTEMPTS = 5


def ticker_24hr_weight(count: int | None) -> int:
    """Binance's weight of ``GET /api/v3/ticker/24hr`` for ``count`` symbols (None = all symbols)."""
    if count is None or count > 100:
        return 80
    if count > 20:
        return 40
    return 2


def ticker_price_weight(count: int | None) -> int:
    """``GET /api/v3/ticker/price``: 2 for one symbol, 4 for a list or all symbols."""
    return 2 if count == 1 else 4


def ticker_24hr_request(symbols: Sequence[str] | None, *, mini: bool = False,
                        trading_only: bool = False) -> tuple[dict[str, str], int, bool]:
    """(query params, weight, filter locally?) — the cheapest way to get these symbols' 24 h tickers.

    Up to 100 symbols a ``symbols=[...]`` list is cheaper than all symbols (2 or 40 vs 80). Above 100 both
    cost 80, and the all-symbol request wins because a list of 1,000 symbols would make a URL too long for
    Binance's front end; we then keep only the wanted symbols. ``mini`` asks for ``type=MINI`` (the fields of
    a mini ticker only: same weight, a smaller answer); ``trading_only`` narrows an all-symbol request with
    ``symbolStatus=TRADING`` (not sent with ``symbol=``: Binance answers a status mismatch with an error).
    (A caller wanting the least weight for many symbols splits them first: see ``ingest.binance.snapshot``.)
    """
    extra = {"type": "MINI"} if mini else {}
    if symbols is None or len(symbols) > 100:
        status = {"symbolStatus": "TRADING"} if trading_only else {}
        return {**status, **extra}, ticker_24hr_weight(None), symbols is not None
    if len(symbols) == 1:
        return {"symbol": symbols[0].upper(), **extra}, ticker_24hr_weight(1), False
    wanted = [s.upper() for s in symbols]
    return {"symbols": orjson.dumps(wanted).decode(), **extra}, ticker_24hr_weight(len(wanted)), False


class RestError(RuntimeError):
    """A REST call failed for good (non-retryable status, or retries used up)."""

    def __init__(self, endpoint: str, status: int | str, detail: str) -> None:
        super().__init__(f"{endpoint}: {status} {detail}")
        self.endpoint = endpoint
        self.status = status


class WeightBudget:
    """Request weight of the current minute, our estimate corrected by the server's header."""

    def __init__(self, limit: int = DEFAULT_WEIGHT_LIMIT, margin: float = SAFETY_MARGIN,
                 clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.margin = margin
        self.limit = limit
        self.used = 0
        self.minute = self._minute_now()
        self.blocked_until = 0.0
        metrics.REST_WEIGHT_LIMIT.set(limit)

    def _minute_now(self) -> int:
        return math.floor(self.clock() / 60)

    def _roll(self) -> None:
        minute = self._minute_now()
        if minute != self.minute:
            self.minute, self.used = minute, 0

    @property
    def allowed(self) -> int:
        return max(1, int(self.limit * (1 - self.margin)))

    def set_limit(self, limit: int) -> None:
        self.limit = limit
        metrics.REST_WEIGHT_LIMIT.set(limit)

    def wait_s(self, weight: int) -> float:
        """Seconds until a request of this weight may be sent (0 = now)."""
        now = self.clock()
        if now < self.blocked_until:
            return self.blocked_until - now
        self._roll()
        if self.used + weight <= self.allowed or self.used == 0:
            return 0.0
        return (self.minute + 1) * 60 - now + MINUTE_SLACK_S

    def spend(self, weight: int) -> None:
        self._roll()
        self.used += weight
        metrics.REST_WEIGHT_USED.set(self.used)

    def observe(self, used_by_server: int, minute: int) -> None:
        """The server's count for ``minute`` (the minute the request was sent in); never lowers our estimate,
        since our own requests still in flight are not in it yet."""
        self._roll()
        if minute == self.minute and used_by_server > self.used:
            self.used = used_by_server
            metrics.REST_WEIGHT_USED.set(self.used)

    @property
    def held(self) -> bool:
        """True while a 429/418/403/451 answer holds every request."""
        return self.clock() < self.blocked_until

    def block_for(self, seconds: float) -> None:
        """429/418: nothing is sent before the Retry-After time."""
        self.blocked_until = max(self.blocked_until, self.clock() + seconds)


class Response(NamedTuple):
    status: int
    headers: Mapping[str, str]
    body: Any  # parsed JSON for 200, raw text otherwise


Fetch = Callable[[str, float], Response]


def urllib_fetch(url: str, timeout_s: float) -> Response:
    """Blocking GET (run in a thread): status, headers and the parsed JSON body."""
    if urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"not an http(s) URL: {url}")
    request = urllib.request.Request(url, headers={"Accept": "application/json", "Accept-Encoding": "gzip",  # noqa: S310
                                                   "User-Agent": "binance-ingest"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as resp:  # noqa: S310 - scheme checked above
            status, headers, raw = resp.status, dict(resp.headers.items()), resp.read()
    except urllib.error.HTTPError as err:
        status, headers, raw = err.code, dict(err.headers.items()), err.read()
    if headers.get("Content-Encoding", "").lower() == "gzip":
        raw = gzip.decompress(raw)
    if status == 200:
        return Response(status, headers, orjson.loads(raw))
    return Response(status, headers, raw[:500].decode("utf-8", "replace"))


class RestClient:
    """exchangeInfo, ticker/24hr and ticker/price, inside the weight budget, with 429/418/5xx handling."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep, fetch: Fetch = urllib_fetch,
                 timeout_s: float = TIMEOUT_S, max_attempts: int = MAX_ATTEMPTS,
                 refusal: LocationRefusal | None = None) -> None:
        self.base_url = settings.rest_url.rstrip("/")
        self.refusal = refusal or LocationRefusal(settings.location_refused_retry_s)
        self.budget = WeightBudget(clock=clock)
        self._clock = clock
        self._sleep = sleep
        self._fetch = fetch
        self._timeout_s = timeout_s
        self._max_attempts = max_attempts
        self._backoff_initial_s = settings.backoff_initial_s
        self._backoff_max_s = settings.backoff_max_s
        self._lock: asyncio.Lock | None = None

    async def exchange_info(self) -> dict[str, Any]:
        """Full exchangeInfo; also adopts its REQUEST_WEIGHT per-minute limit as our budget."""
        info = await self._get(EXCHANGE_INFO, {}, EXCHANGE_INFO_WEIGHT)
        for rule in info.get("rateLimits", ()):
            if (rule.get("rateLimitType") == "REQUEST_WEIGHT" and rule.get("interval") == "MINUTE"
                    and rule.get("intervalNum") == 1 and int(rule.get("limit", 0)) > 0):
                self.budget.set_limit(int(rule["limit"]))
        exchange_info: dict[str, Any] = info
        return exchange_info

    async def ticker_24hr(self, symbols: Sequence[str] | None = None, *, mini: bool = False,
                          trading_only: bool = False) -> list[dict[str, Any]]:
        """24 h tickers of these symbols (None = all), fetched the cheapest way (see ticker_24hr_request)."""
        params, weight, filter_locally = ticker_24hr_request(symbols, mini=mini, trading_only=trading_only)
        body = await self._get(TICKER_24HR, params, weight)
        entries = body if isinstance(body, list) else [body]
        if filter_locally and symbols is not None:
            wanted = {s.upper() for s in symbols}
            entries = [e for e in entries if e.get("symbol") in wanted]
        return entries

    async def ticker_price(self, symbols: Sequence[str] | None = None) -> list[dict[str, Any]]:
        if symbols is not None and len(symbols) == 1:
            params = {"symbol": symbols[0].upper()}
        elif symbols:
            params = {"symbols": orjson.dumps([s.upper() for s in symbols]).decode()}
        else:
            params = {}
        body = await self._get(TICKER_PRICE, params, ticker_price_weight(len(symbols) if symbols else None))
        return body if isinstance(body, list) else [body]

    async def _reserve(self, weight: int) -> int:
        """Wait until the budget allows this request, then book it; returns the minute it was booked in."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # one reservation at a time, so concurrent calls cannot overshoot together
            while (wait := self.budget.wait_s(weight)) > 0:
                log.info("REST: waiting %.1f s (%s)", wait,
                         "held by the server's last answer" if self.budget.held else "weight budget spent",
                         extra={"wait_s": round(wait, 3), "weight_used": self.budget.used,
                                "weight_limit": self.budget.limit})
                await self._sleep(wait)
            self.budget.spend(weight)
            return self.budget.minute

    async def _get(self, endpoint: str, params: Mapping[str, str], weight: int) -> Any:
        url = self.base_url + endpoint + ("?" + urlencode(params) if params else "")
        backoff = Backoff(self._backoff_initial_s, self._backoff_max_s)
        for attempt in range(1, self._max_attempts + 1):
            minute = await self._reserve(weight)
            try:
                resp = await asyncio.to_thread(self._fetch, url, self._timeout_s)
            except (OSError, TimeoutError, ValueError) as exc:  # URLError is an OSError; ValueError: bad JSON
                metrics.REST_REQUESTS.labels(endpoint, "error").inc()
                detail = f"{type(exc).__name__}: {exc}"[:200]
                if attempt == self._max_attempts:
                    raise RestError(endpoint, "error", detail) from exc
                delay = backoff.next_delay()
                log.warning("REST %s failed (%s); retry in %.1f s", endpoint, detail, delay,
                            extra={"endpoint": endpoint, "reason": "error", "attempt": attempt})
                await self._sleep(delay)
                continue
            metrics.REST_REQUESTS.labels(endpoint, str(resp.status)).inc()
            used = _header(resp.headers, "X-MBX-USED-WEIGHT-1M")
            if used is not None:
                self.budget.observe(int(used), minute)
            if resp.status == 200:
                self.refusal.accept("rest")
                return resp.body
            if resp.status == 451:  # retrying cannot change the region: hold everything, fail this call
                self.refusal.refuse("rest", f"REST {endpoint}", str(resp.body))
                self.budget.block_for(self.refusal.retry_s)
                raise RestError(endpoint, resp.status, "Binance refuses this location")
            if resp.status in (403, 418, 429):
                retry_after = _header(resp.headers, "Retry-After")
                wait = _seconds(retry_after) if retry_after is not None else DEFAULT_RETRY_AFTER_S
                self.budget.block_for(wait)
                level = logging.ERROR if resp.status == 418 else logging.WARNING
                log.log(level, "REST %s: HTTP %d (%s), nothing sent for %.0f s", endpoint, resp.status,
                        _BLOCK_WHY[resp.status], wait,
                        extra={"endpoint": endpoint, "status": resp.status, "retry_after_s": wait})
                if attempt == self._max_attempts:
                    raise RestError(endpoint, resp.status, str(resp.body)[:200])
                continue  # the next _reserve() waits out the block
            if resp.status >= 500 and attempt < self._max_attempts:
                delay = backoff.next_delay()
                log.warning("REST %s: HTTP %d; retry in %.1f s", endpoint, resp.status, delay,
                            extra={"endpoint": endpoint, "status": resp.status, "attempt": attempt})
                await self._sleep(delay)
                continue
            raise RestError(endpoint, resp.status, str(resp.body)[:200])
        raise AssertionError("unreachable")


_BLOCK_WHY = {403: "refused by a WAF rule", 418: "IP banned", 429: "rate limited"}


def _seconds(value: str) -> float:
    """A Retry-After in seconds; a malformed one (or an HTTP date) counts as the default wait."""
    try:
        seconds = float(value)
    except ValueError:
        return DEFAULT_RETRY_AFTER_S
    return seconds if seconds >= 0 else DEFAULT_RETRY_AFTER_S


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive header lookup (urllib keeps the server's spelling)."""
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None
