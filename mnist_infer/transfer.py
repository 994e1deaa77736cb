"""HTTP for download.py: one file's body into a temporary file, within deadlines and a pace.

Response heads (connecting, the status line and the headers) must arrive by a deadline,
bodies are read as they arrive, a mirror slower than a minimum pace is given up, and errors
are sorted into those worth retrying and the rest.
"""

from __future__ import annotations

import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import requests
    import urllib3

_CHUNK = 1 << 16


class Failed(Exception):
    """One mirror failed for one file; `delivered` means it sent a whole file that was wrong,
    `unreadable` that a file in a mirror folder could not be read."""

    def __init__(
        self,
        reason: str,
        *,
        transient: bool = False,
        delivered: bool = False,
        unreadable: bool = False,
    ) -> None:
        super().__init__(reason)
        self.transient = transient
        self.delivered = delivered
        self.unreadable = unreadable


class Http:
    """Downloads over one requests session (made at the first download, closed by close)."""

    def __init__(
        self, *, timeout: tuple[float, float], head_timeout: float, min_speed: tuple[float, float]
    ) -> None:
        self.timeout, self.head_timeout, self.min_speed = timeout, head_timeout, min_speed
        self._session: requests.Session | None = None

    def close(self) -> None:
        if self._session is not None:
            self._session.close()

    def download(self, url: str, name: str, limit: int, tmp: Path, progress: bool) -> None:
        """The body at url into tmp; Failed if it is not a file of at most limit bytes."""
        import requests
        from urllib3.exceptions import HTTPError, ProtocolError, ReadTimeoutError

        if self._session is None:
            self._session = _session()
        try:
            _head.deadline = time.monotonic() + self.head_timeout
            _head.reason = (
                "no complete response head (status line and headers)"
                f" within {self.head_timeout:g} s"
            )
            with self._session.get(url, stream=True, timeout=self.timeout) as r:
                _head.deadline = None
                if r.status_code != 200:
                    transient = r.status_code >= 500 or r.status_code == 429
                    raise Failed(f"HTTP {r.status_code} {r.reason}", transient=transient)
                if "html" in r.headers.get("Content-Type", "").lower():
                    raise Failed("served an HTML page (HTTP 200), not the file")
                total = _length(r.headers.get("Content-Length"))
                if total and total > limit:
                    raise Failed(f"too large: {total:,} bytes", delivered=True)
                with open(tmp, "wb") as out, _bar(name, total, progress) as update:
                    n = 0
                    pace = _Pace(*self.min_speed)
                    for chunk in _arriving(r.raw):
                        pace.add(len(chunk))
                        if n == 0 and chunk.lstrip()[:1] == b"<":
                            raise Failed("served an HTML page (HTTP 200), not the file")
                        n += len(chunk)
                        if n > limit:
                            raise Failed(f"too large: over {limit:,} bytes", delivered=True)
                        out.write(chunk)
                        update(len(chunk))
        except requests.RequestException as e:
            raise Failed(self._describe(e), transient=_transient(e)) from None
        except HTTPError as e:  # from the body, read through urllib3 directly
            transient = isinstance(e, ProtocolError | ReadTimeoutError)
            raise Failed(self._describe(e), transient=transient) from None
        finally:
            _head.deadline = None

    def _describe(self, e: Exception) -> str:
        import requests

        text = _innermost(e)
        if isinstance(e, requests.Timeout) or "timed out" in text.lower():
            return f"timed out (connect {self.timeout[0]:g} s, read {self.timeout[1]:g} s)"
        return text


# The deadline of the response head being read in this thread, and what to say when it passes.
_head = threading.local()


def _session() -> requests.Session:
    """A requests session whose connections give up a response head at `_head.deadline`.

    The read timeout only bounds the wait for each piece: a server that sends its status
    line and headers a byte every few seconds would hold the download for ever. A timer
    shuts the socket at the deadline, which ends the blocked read at once.
    """
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
    from urllib3.poolmanager import ProxyManager

    class Deadline:
        sock: socket.socket | None

        def getresponse(self, *args: Any, **kwargs: Any) -> Any:
            deadline, sock = getattr(_head, "deadline", None), self.sock
            if deadline is None or sock is None:
                return super().getresponse(*args, **kwargs)  # type: ignore[misc]
            passed = threading.Event()

            def expire() -> None:
                passed.set()
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

            timer = threading.Timer(max(0.0, deadline - time.monotonic()), expire)
            timer.daemon = True
            timer.start()
            try:
                response = super().getresponse(*args, **kwargs)  # type: ignore[misc]
            except Exception:
                if passed.is_set():
                    raise Failed(_head.reason) from None
                raise
            finally:
                timer.cancel()
            if passed.is_set():
                raise Failed(_head.reason)
            return response

    class HTTPConn(Deadline, HTTPConnection):
        pass

    class HTTPSConn(Deadline, HTTPSConnection):
        pass

    class HTTPPool(HTTPConnectionPool):
        ConnectionCls = HTTPConn

    class HTTPSPool(HTTPSConnectionPool):
        ConnectionCls = HTTPSConn

    class Adapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = {"http": HTTPPool, "https": HTTPSPool}

        def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
            manager = super().proxy_manager_for(proxy, **kwargs)
            if type(manager) is ProxyManager:  # an HTTP(S) proxy; SOCKS has pools of its own
                manager.pool_classes_by_scheme = {"http": HTTPPool, "https": HTTPSPool}
            return manager

    session = requests.Session()
    for prefix in ("http://", "https://"):
        session.mount(prefix, Adapter())
    return session


def _arriving(raw: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
    """The body as it arrives, transfer encoding undone: pieces of at most _CHUNK bytes."""
    while chunk := raw.read1(_CHUNK, decode_content=True):
        yield chunk


class _Pace:
    """Fails a download that receives under `rate` bytes/s throughout `window` seconds."""

    def __init__(self, rate: float, window: float) -> None:
        self.rate, self.window = rate, window
        self.start, self.got = time.monotonic(), 0

    def add(self, n: int) -> None:
        self.got += n
        secs = time.monotonic() - self.start
        if secs < self.window:
            return
        if self.got < self.rate * secs:
            raise Failed(
                f"too slow: {self.got:,} bytes in {secs:.1f} s, expected at least"
                f" {self.rate:,.0f} bytes/s"
            )
        self.start, self.got = time.monotonic(), 0


def _transient(e: Exception) -> bool:
    import requests
    from urllib3.exceptions import NameResolutionError

    reason = getattr(e.args[0], "reason", None) if e.args else None
    # An unknown host is not worth retrying: offline machines should fail fast.
    if isinstance(reason, NameResolutionError):
        return False
    return isinstance(
        e, requests.ConnectionError | requests.Timeout | requests.exceptions.ChunkedEncodingError
    )


def _innermost(e: BaseException) -> str:
    """A short reason from a requests/urllib3 exception chain."""
    inner: object = e
    while True:
        nxt = getattr(inner, "reason", None)
        if not isinstance(nxt, BaseException) and isinstance(inner, BaseException) and inner.args:
            nxt = inner.args[0]
        if not isinstance(nxt, BaseException):
            break
        inner = nxt
    text = str(nxt) if isinstance(nxt, str) else str(inner)
    text = re.sub(r"^\w+\(host=[^)]*\): ", "", text)
    return re.sub(r"<[^>]* object at 0x[0-9a-f]+>: ", "", text)


def _length(header: str | None) -> int | None:
    """Content-Length as a positive int, or None when missing or malformed."""
    try:
        n = int(header or 0)
    except ValueError:  # e.g. "abc", or "100, 100" from a header sent twice
        return None
    return n if n > 0 else None


@contextmanager
def _bar(name: str, total: int | None, show: bool) -> Iterator[Callable[[int], object]]:
    """A tqdm bar's update method, or a no-op when progress is not shown."""
    if not show:
        yield lambda n: None
        return
    from tqdm import tqdm

    # leave=False: the summary line printed afterwards replaces the bar.
    with tqdm(
        total=total,
        desc=name,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        file=sys.stderr,
        leave=False,
    ) as bar:
        yield bar.update
