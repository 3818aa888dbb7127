"""A small client for Prefect's REST API over httpx: JSON in and out, a bounded number of
requests in flight, retries with backoff on 429, 5xx and connection errors, and errors a user
can act on (an unreachable server, a refused API key, a body Prefect rejects).

Only what reconciler needs: work pools, work queues, flows, deployments and their schedules,
variables. The key is sent as `Authorization: Bearer KEY` and appears in no message."""

from __future__ import annotations

import base64
import contextlib
import json
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import httpx

from reconciler.core.errors import UserError
from reconciler.prefect_target.url import PrefectTargetUrl

DEFAULT_CONCURRENCY = 16
DEFAULT_ATTEMPTS = 8
DEFAULT_TIMEOUT_S = 30.0
PAGE = 200  # Prefect's default (and usual maximum) page size for /filter
RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})

_T = TypeVar("_T")
_R = TypeVar("_R")


class PrefectError(UserError):
    """Prefect could not be reached or refused a request. `status` is the HTTP status (None
    when no answer came) and `detail` Prefect's own message."""

    def __init__(
        self, message: str, hint: str | None = None, status: int | None = None, detail: str = ""
    ) -> None:
        super().__init__(message, hint)
        self.status = status
        self.detail = detail


class PrefectUnreachable(PrefectError):
    pass


class PrefectAuthError(PrefectError):
    pass


class PrefectClient:
    """One connection pool to one Prefect API. Thread-safe; `map` runs calls concurrently,
    at most `concurrency` at a time."""

    def __init__(
        self,
        api_url: str,
        api_key: str | None = None,
        *,
        auth_string: str | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        attempts: int = DEFAULT_ATTEMPTS,
        timeout: float = DEFAULT_TIMEOUT_S,
        backoff_s: float = 0.25,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        elif auth_string:
            token = base64.b64encode(auth_string.encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        self.api_url = api_url.rstrip("/")
        self.concurrency = max(1, concurrency)
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s
        self._http = httpx.Client(
            base_url=self.api_url + "/",
            headers=headers,
            timeout=timeout,
            limits=httpx.Limits(
                max_connections=self.concurrency, max_keepalive_connections=self.concurrency
            ),
            transport=transport,
        )
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._gate = _Gate(self.concurrency)
        self.retries = 0
        """Requests tried again (busy server, rate limit, dropped connection): for benchmarks."""

    @classmethod
    def of(cls, target: PrefectTargetUrl) -> PrefectClient:
        """The client of a parsed `prefect+...` URL, with its key or auth string."""
        return cls(target.api_url, target.api_key, auth_string=target.auth_string)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self._http.close()

    def __enter__(self) -> PrefectClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- requests ----------------------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """The decoded JSON answer (None for an empty one). Raises PrefectError."""
        content = None if body is None else json.dumps(body)
        for attempt in range(1, self.attempts + 1):
            try:
                with self._gate:
                    answer = self._http.request(
                        method,
                        path.lstrip("/"),
                        content=content,
                        headers={"Content-Type": "application/json"} if content else None,
                    )
            except httpx.TimeoutException:
                if attempt == self.attempts:
                    raise PrefectUnreachable(
                        f"the Prefect API at {self.api_url} did not answer {method} /{path} "
                        "in time",
                        "the server is overloaded or stopped; try again",
                    ) from None
                self._pause(attempt, None)
                continue
            except httpx.TransportError as exc:  # refused, reset, closed: tried again
                if attempt == self.attempts:
                    raise PrefectUnreachable(
                        f"cannot reach the Prefect API at {self.api_url}: {_reason(exc)}",
                        "check that the server is running and the URL ends in /api "
                        "(prefect server start; or your Prefect Cloud workspace URL)",
                    ) from None
                self._pause(attempt, None)
                continue
            status = answer.status_code
            if status in (429, 503):
                self._gate.slow_down()  # a busy server: fewer requests at once, for a while
            else:
                self._gate.speed_up()
            if status in RETRIED_STATUSES and attempt < self.attempts:
                self._pause(attempt, answer.headers.get("Retry-After"))
                continue
            if status >= 400:
                raise self._error(method, path, answer)
            if status >= 300:  # a path we wrote wrong: never a success
                raise PrefectError(
                    f"the Prefect API answered {method} /{path.lstrip('/')} with a redirect "
                    f"({status}) to {answer.headers.get('Location')}",
                    "check that the URL ends in /api",
                    status,
                )
            return answer.json() if answer.content else None
        raise AssertionError("unreachable")

    def _pause(self, attempt: int, retry_after: str | None) -> None:
        self.retries += 1
        delay = self.backoff_s * 2 ** (attempt - 1) * (0.5 + random.random())
        if retry_after:
            with contextlib.suppress(ValueError):
                delay = max(delay, min(float(retry_after), 30.0))
        time.sleep(delay)

    def _error(self, method: str, path: str, answer: httpx.Response) -> PrefectError:
        status = answer.status_code
        detail = describe_detail(answer)
        where = f"{method} /{path.lstrip('/')}"
        if status == 401:
            return PrefectAuthError(
                f"the Prefect API at {self.api_url} refused the API key (401 Unauthorized)",
                "set PREFECT_API_KEY (or PREFECT_API_KEY_FILE) to a valid key for this server, "
                "or PREFECT_API_AUTH_STRING (user:password) for a server started with one",
                status,
                detail,
            )
        if status == 403:
            return PrefectAuthError(
                f"the Prefect API key may not do {where} (403 Forbidden): {detail}",
                "use a key whose role may write deployments, work pools and variables",
                status,
                detail,
            )
        if status in RETRIED_STATUSES:
            return PrefectUnreachable(
                f"the Prefect API kept failing ({status}) on {where}: {detail}",
                "the server is overloaded or rate-limiting; try again later",
                status,
                detail,
            )
        return PrefectError(f"Prefect refused {where} ({status}): {detail}", None, status, detail)

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, {} if body is None else body)

    def patch(self, path: str, body: Any) -> Any:
        return self.request("PATCH", path, body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def filter_all(
        self, path: str, body: dict[str, Any] | None = None, offset: int = 0
    ) -> list[dict[str, Any]]:
        """Every object a `/filter` endpoint holds (from `offset`), page by page."""
        found: list[dict[str, Any]] = []
        while True:
            page = self.post(path, {**(body or {}), "limit": PAGE, "offset": offset})
            if not isinstance(page, list):
                raise PrefectError(f"POST /{path.lstrip('/')} did not answer with a list")
            found.extend(page)
            if len(page) < PAGE:
                return found
            offset += len(page)

    def filter_pages(self, path: str, total: int) -> list[Callable[[], list[dict[str, Any]]]]:
        """One call per page of a `/filter` endpoint holding `total` objects (from its
        `/count`), to run concurrently; a page that comes back full is followed to the end."""

        def page(offset: int, last: bool) -> Callable[[], list[dict[str, Any]]]:
            def read() -> list[dict[str, Any]]:
                found = self.post(path, {"limit": PAGE, "offset": offset})
                if not isinstance(found, list):
                    raise PrefectError(f"POST /{path} did not answer with a list")
                if last and len(found) == PAGE:  # more were made since the count
                    found = found + self.filter_all(path, {}, offset + PAGE)
                return list(found)

            return read

        offsets = list(range(0, max(total, 1), PAGE))
        return [page(o, i == len(offsets) - 1) for i, o in enumerate(offsets)]

    def health(self) -> None:
        """Raises PrefectError when the API cannot be reached or refuses the key."""
        self.get("health")
        self.post("flows/filter", {"limit": 1})  # /health needs no key: this one does

    # -- concurrency -------------------------------------------------------------------------

    def map(self, call: Callable[[_T], _R], items: Iterable[_T]) -> Iterator[Future[_R]]:
        """Start `call(item)` for each item, `concurrency` at a time; the futures in order."""
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.concurrency, "prefect-api")
            pool = self._pool
        return iter([pool.submit(call, item) for item in items])

    def gather(self, call: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
        """`call` over `items` concurrently; the first failure is raised after all finished."""
        futures = list(self.map(call, items))
        results: list[_R] = []
        failure: BaseException | None = None
        for future in futures:
            try:
                results.append(future.result())
            except BaseException as exc:  # re-raised below, after the others
                failure = failure or exc
        if failure is not None:
            raise failure
        return results


class _Gate:
    """How many requests may be in flight: starts at `START_IN_FLIGHT` (at most `ceiling`);
    halved whenever the server answers 429 or 503 (a rate limit, or a SQLite-backed server
    whose writers queue up: on a local server one request at a time is the fastest), and
    raised by one after `RAISE_AFTER` answers in a row that were neither."""

    START_IN_FLIGHT = 4
    RAISE_AFTER = 50

    def __init__(self, ceiling: int) -> None:
        self.ceiling = ceiling
        self.limit = min(ceiling, self.START_IN_FLIGHT)
        self.in_flight = 0
        self.good = 0
        self._cond = threading.Condition()

    def __enter__(self) -> None:
        with self._cond:
            while self.in_flight >= self.limit:
                self._cond.wait()
            self.in_flight += 1

    def __exit__(self, *_: object) -> None:
        with self._cond:
            self.in_flight -= 1
            self._cond.notify()

    def slow_down(self) -> None:
        with self._cond:
            self.limit = max(1, self.limit // 2)
            self.good = 0

    def speed_up(self) -> None:
        with self._cond:
            if self.limit >= self.ceiling:
                return
            self.good += 1
            if self.good >= self.RAISE_AFTER:
                self.good = 0
                self.limit += 1
                self._cond.notify()


def describe_detail(answer: httpx.Response) -> str:
    """Prefect's message: `detail` (a text), or each field error's place and message (Prefect's
    422 answers `exception_detail`, and echoes the request, which may hold secrets: never
    shown), else the body."""
    try:
        body = answer.json()
    except ValueError:
        return answer.text[:500].strip() or answer.reason_phrase
    if isinstance(body, dict) and "exception_detail" in body:
        detail = body["exception_detail"]  # Prefect's 422: the fields (never the request echoed)
    else:
        detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                loc = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
                msg = str(item.get("msg", "")).removeprefix("Value error, ")
                parts.append(f"{loc}: {msg}" if loc else str(msg))
            else:
                parts.append(str(item))
        return "; ".join(parts)[:1000]
    return str(detail)[:1000]


def _reason(exc: Exception) -> str:
    text = str(exc)
    if "Connection refused" in text or "Errno 111" in text:
        return "connection refused"
    return text or type(exc).__name__
