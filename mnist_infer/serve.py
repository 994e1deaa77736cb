"""`mnist-infer serve`: the draw-a-digit page and its JSON API (the application side).

What each URL answers is the route table in `App.routes`; a handler takes a Request and
returns a Response (or raises HTTPError). Everything about connections, deadlines, limits
and processes is the transport's: serve_server.py, serve_conn.py, serve_http.py and
serve_procs.py. The static files are read from the package once, at start-up, and served
from the table: no request path ever reaches the file system.
"""

from __future__ import annotations

import io
import json
import os
import socket
from typing import Any

import numpy as np

from mnist_infer import explore
from mnist_infer.errors import MnistInferError, NoSuchUnitError
from mnist_infer.serve_http import HTTPError, Limits, Request, Response, Route, json_bytes
from mnist_infer.serve_procs import Shared, serve_until_stopped
from mnist_infer.serve_server import Server

__all__ = ["App", "Server", "is_local", "make_server", "serve_until_stopped", "static_files"]

NAME = "request body"  # what image errors call the upload, as predict names its files
PIXEL_BUDGET = 4096 * 4096  # pixels decoded at once, machine-wide; also one image's limit
GET, POST = ("GET", "HEAD"), ("POST",)

STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
# The page loads nothing from anywhere else, and no other site may frame it.
CSP = (
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self';"
    " connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


class App:
    """What requests need: the network, its description and the page's files."""

    def __init__(
        self,
        weights: str | os.PathLike[str] | None = None,
        max_pixels: int = PIXEL_BUDGET,
    ) -> None:
        from mnist_infer.network import Network
        from mnist_infer.novelty import rule_from_metadata
        from mnist_infer.shipped import weights_path
        from mnist_infer.weights import describe, load_weights

        path = weights_path(weights)
        d = describe(path)
        self.net = Network(load_weights(path), copy=False)
        self.rule = rule_from_metadata(d.metadata)  # judged as `mnist-infer predict` does
        self.metadata_warning = d.metadata_error
        self.weights_name = path.name
        self.info = {
            "sizes": self.net.sizes,
            "parameters": d.parameters,
            "dtype": str(self.net.dtype),
            "sha256": d.sha256,
            "weights": path.name,  # not its path: that tells about the machine
            "metadata": d.metadata or {},
            "not_a_digit": self.rule.as_dict(),
            "layers": explore.layers(self.net),  # each hidden unit's favourite digit, an order
        }
        self.info_json = json_bytes(self.info)
        self.max_pixels = max_pixels
        self.files = static_files()

    @property
    def description(self) -> str:
        """The weights served, for the start-up line: file name and layer sizes."""
        return f"{self.weights_name} ({'-'.join(map(str, self.net.sizes))})"

    def routes(self) -> dict[str, Route]:
        """URL path -> what it answers."""
        table = {
            "/api/info": Route(GET, self.get_info),
            "/api/predict": Route(POST, self.post_predict, upload=True, cost=self.decode_cost),
            "/api/unit": Route(GET, self.get_unit),
        }
        for path, (body, ctype) in self.files.items():
            table[path] = Route(GET, _static(body, ctype))
        return table

    # --- handlers ---------------------------------------------------------------------

    def get_info(self, req: Request) -> Response:
        return Response(self.info_json)

    def post_predict(self, req: Request) -> Response:
        raw = req.param("raw", "0")
        if raw not in ("0", "1"):
            raise HTTPError(400, f"raw must be 0 or 1, found {raw!r}")
        try:
            return Response(self.predict_json(req.body, raw == "1"))
        except MnistInferError as err:  # ImageError: the reasons predict gives
            raise HTTPError(400, str(err)) from None

    def get_unit(self, req: Request) -> Response:
        try:
            return Response(self.unit_json(req.query))
        except NoSuchUnitError as err:
            raise HTTPError(404, str(err)) from None
        except MnistInferError as err:  # UsageError: a malformed query
            raise HTTPError(400, str(err)) from None

    def decode_cost(self, req: Request) -> int:
        """Pixels that decoding the body takes (refused if over the limit); 0 if unknown."""
        n = image_pixels(req.body)
        if n > self.max_pixels:
            raise HTTPError(
                400,
                f"{NAME}: image too large ({n:,} pixels; the limit is {self.max_pixels:,}"
                " pixels); scale it down or crop it to the digit first",
            )
        return n

    # --- the work -----------------------------------------------------------------------

    def predict(self, body: bytes, raw: bool = False) -> dict[str, Any]:
        """The /api/predict answer for an image file's bytes; ImageError if it is unusable."""
        answer, digit = self._predict(body, raw)
        answer["input"] = digit.tolist()
        return answer

    def predict_json(self, body: bytes, raw: bool = False) -> bytes:
        """`predict` as JSON text, made faster by writing the 784 pixels out directly."""
        answer, digit = self._predict(body, raw)
        head = json.dumps(answer, separators=(",", ":"))[:-1]
        return f'{head},"input":{_ints(digit)}}}'.encode()

    def _predict(self, body: bytes, raw: bool) -> tuple[dict[str, Any], np.ndarray]:
        from mnist_infer.image import load_digit
        from mnist_infer.records import answer_fields

        digit, _notes = load_digit(io.BytesIO(body), NAME, "auto", raw)
        x = np.divide(digit.reshape(1, -1), 255, dtype=np.float32)  # as predict scales it
        pre, acts = explore.forward(self.net, x)
        label = int(np.argmax(acts[-1][0]))
        is_digit = bool(self.rule.is_digit(pre[-1])[0])
        *hidden, probs = (explore.rounded(a[0]) for a in acts)
        answer = answer_fields(label, probs[label], is_digit) | {
            "probabilities": probs,
            "hidden": hidden,
            "pre_activations": [explore.rounded(a[0]) for a in pre],  # a1 … an
            "sha256": self.info["sha256"],  # which weights answered
        }
        return answer, digit

    def unit_json(self, query: str) -> bytes:
        """The /api/unit answer for a query `layer=L&unit=J`; UsageError or NoSuchUnitError."""
        layer, unit = explore.parse_unit_query(query)
        answer = explore.unit_info(self.net, layer, unit)
        answer["sha256"] = self.info["sha256"]
        return json_bytes(answer)


def _static(body: bytes, ctype: str) -> Any:
    response = Response(body, ctype, headers={"Content-Security-Policy": CSP})
    return lambda req: response


def static_files() -> dict[str, tuple[bytes, str]]:
    """URL path -> (bytes, content type) of every file in the package's static folder."""
    from importlib.resources import files

    out = {}
    for f in files("mnist_infer").joinpath("static").iterdir():
        ctype = STATIC_TYPES.get(os.path.splitext(f.name)[1])
        if f.is_file() and ctype is not None:
            out["/static/" + f.name] = (f.read_bytes(), ctype)
    out["/"] = out["/static/index.html"]
    return out


def image_pixels(body: bytes) -> int:
    """Width x height an image file declares (0 if it declares none that can be read)."""
    if body[:8] == b"\x89PNG\r\n\x1a\n" and body[12:16] == b"IHDR" and len(body) >= 24:
        return int.from_bytes(body[16:20], "big") * int.from_bytes(body[20:24], "big")
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # bombs included: only the header is read
            with Image.open(io.BytesIO(body)) as img:
                return int(img.size[0]) * int(img.size[1])
    except Exception:  # not an image, a broken one, a bomb: decoding says which
        return 0


_INTS = [str(i) for i in range(256)]


def _ints(a: np.ndarray) -> str:
    """JSON for a 2-D uint8 array, twice as fast as json.dumps on its list."""
    rows = ["[" + ",".join([_INTS[v] for v in row]) + "]" for row in a.tolist()]
    return "[" + ",".join(rows) + "]"


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def make_server(
    host: str = "127.0.0.1",
    port: int = 8000,
    weights: str | os.PathLike[str] | None = None,
    *,
    allowed_hosts: tuple[str, ...] = (),
    decode_slots: int | None = None,
    pixel_budget: int = PIXEL_BUDGET,
    **limits: Any,
) -> Server:
    """A server for the app, listening on host:port (0: a free port), not yet serving.

    `limits` are Limits' keywords (max_upload, max_connections, head_timeout…); at most
    decode_slots images (default: one per CPU) and pixel_budget pixels are decoded at once
    on the machine, whatever the number of worker processes.
    """
    app = App(weights, max_pixels=pixel_budget)
    shared = Shared(decode_slots or _cpus(), pixel_budget)
    try:
        server = Server(app.routes(), (host, port), Limits(**limits), shared, allowed_hosts)
    except OSError as err:
        # create_server adds the address to its message: the OS's words alone
        why = os.strerror(err.errno) if err.errno and err.errno > 0 else err.strerror or str(err)
        hint = "; pick another --port, or --port 0 for a free one" if port else ""
        if isinstance(err, socket.gaierror):
            hint = "; use an IP address or a name this machine can resolve"
        raise MnistInferError(f"cannot listen on {host}:{port}: {why}{hint}") from None
    server.app = app
    return server


def is_local(host: str) -> bool:
    """True if only this machine can reach a server listening on `host`."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
