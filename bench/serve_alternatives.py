"""The same work as `mnist-infer serve` behind other servers, to measure it against them.

    python bench/serve_alternatives.py uvicorn|uvicorn-h11|uvicorn-threads|waitress [--port 0]

One process. `uvicorn`: a FastAPI app whose `async def` endpoint runs the work on the event
loop (as `serve` does), on uvicorn's fastest setup (httptools and uvloop, compiled, when
installed: `uvicorn[standard]`); `uvicorn-h11`: the same on uvicorn's pure-Python parser
(h11) and asyncio's loop; `uvicorn-threads`: a plain `def` endpoint, which FastAPI runs in
its thread pool; `waitress`: a WSGI app on waitress (its main thread reads requests, 4 threads
run them). Each answers POST /api/predict with `App.predict_json`, exactly serve's work, and
GET /api/info. Prints `Serving on URL` once it listens, as `serve` does. Needs the `bench`
extra (pip install -e '.[bench]').
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations, which
# name classes imported inside fastapi_app.
import argparse
import os
import socket
import sys
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the command line does, before numpy

from mnist_infer.errors import MnistInferError
from mnist_infer.serve import App


def fastapi_app(core: App, threads: bool) -> Any:
    from fastapi import FastAPI, Request, Response
    from fastapi.responses import JSONResponse

    api = FastAPI()

    def work(body: bytes, raw: int) -> Response:
        try:
            return Response(core.predict_json(body, raw == 1), media_type="application/json")
        except MnistInferError as err:
            return JSONResponse({"error": str(err)}, status_code=400)

    if threads:

        @api.post("/api/predict")
        def predict_in_a_thread(body: bytes = _body(), raw: int = 0) -> Response:
            return work(body, raw)

    else:

        @api.post("/api/predict")
        async def predict(request: Request, raw: int = 0) -> Response:
            return work(await request.body(), raw)

    @api.get("/api/info")
    async def info() -> Response:
        return Response(core.info_json, media_type="application/json")

    return api


def _body() -> Any:
    from fastapi import Body

    return Body(media_type="application/octet-stream")


def wsgi_app(core: App) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        path = environ["PATH_INFO"]
        if path == "/api/info":
            status, body = "200 OK", core.info_json
        elif path == "/api/predict" and environ["REQUEST_METHOD"] == "POST":
            n = int(environ.get("CONTENT_LENGTH") or 0)
            data = environ["wsgi.input"].read(n)
            raw = environ.get("QUERY_STRING", "") == "raw=1"
            try:
                status, body = "200 OK", core.predict_json(data, raw)
            except MnistInferError as err:
                status, body = "400 Bad Request", f'{{"error": "{err}"}}'.encode()
        else:
            status, body = "404 Not Found", b'{"error": "no such page"}'
        start_response(
            status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        )
        return [body]

    return app


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("server", choices=["uvicorn", "uvicorn-h11", "uvicorn-threads", "waitress"])
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    core = App()
    sock = socket.create_server(("127.0.0.1", args.port), backlog=1024)
    ready = f"Serving on http://127.0.0.1:{sock.getsockname()[1]}/"  # once all is imported
    if args.server == "waitress":
        import waitress

        app = wsgi_app(core)
        print(ready, flush=True)
        waitress.serve(app, sockets=[sock], threads=4, _quiet=True)
        return
    import uvicorn

    pure = {"http": "h11", "loop": "asyncio"} if args.server == "uvicorn-h11" else {}
    app = fastapi_app(core, threads=args.server == "uvicorn-threads")
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", **pure)
    server = uvicorn.Server(config)
    print(ready, flush=True)
    server.run(sockets=[sock])


if __name__ == "__main__":
    sys.exit(main())
