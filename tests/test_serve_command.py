"""`mnist-infer serve` as a command: options, weights, signals and worker processes."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from serving import drawing, start_command

from mnist_infer import serve as sv
from mnist_infer.cli import cli
from mnist_infer.network import _cpus

needs_proc = pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="needs Linux /proc")


def _host_port(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").rstrip("/").rsplit(":", 1)
    return host, int(port)


def _workers(pid: int, n: int, but: tuple[int, ...] = ()) -> list[int]:
    """The child processes of pid (Linux) once there are n of them (none of `but`)."""
    deadline = time.monotonic() + 10
    found: list[int] = []
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            found = [int(c) for c in f.read().split() if int(c) not in but]
        if len(found) >= n:
            return found
        time.sleep(0.05)
    return found


def _sockets(pid: int) -> int:
    """Open sockets of a process (Linux)."""
    fds = os.listdir(f"/proc/{pid}/fd")
    return sum(os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:") for fd in fds)


def _cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def _gone(pid: int, within: float = 5.0) -> bool:
    """True once pid no longer exists (a zombie nobody reaps does not count as gone)."""
    deadline = time.monotonic() + within
    while os.path.exists(f"/proc/{pid}"):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _predict(url: str) -> int:
    c = http.client.HTTPConnection(*_host_port(url), timeout=10)
    c.request("POST", "/api/predict", body=drawing())
    r = c.getresponse()
    assert r.status == 200
    digit = json.loads(r.read())["digit"]
    c.close()
    return int(digit)


@pytest.mark.parametrize(("sig", "name"), [(signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "SIGINT")])
@pytest.mark.parametrize("workers", ["1", "2"])
def test_the_command_serves_and_stops_on_a_signal(
    sig: signal.Signals, name: str, workers: str
) -> None:
    proc, url = start_command("--workers", workers)
    try:
        host, port = _host_port(url)
        assert host == "127.0.0.1"
        c = http.client.HTTPConnection(host, port, timeout=10)
        c.request("GET", "/api/info")
        assert c.getresponse().status == 200  # and the connection stays open
        start = time.monotonic()
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=10)
        took = time.monotonic() - start
        c.close()
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert took < 5, f"took {took:.2f} s"  # not the 15 s an idle keep-alive connection may wait
    assert (out, err) == ("", f"Stopped ({name}).\n")


@needs_proc
def test_workers_take_equal_shares_of_keep_alive_connections() -> None:
    proc, url = start_command("--workers", "2")
    try:
        children = _workers(proc.pid, 2)
        time.sleep(0.3)
        before = [_sockets(p) for p in children]
        conns = []
        for _ in range(8):
            c = http.client.HTTPConnection(*_host_port(url), timeout=10)
            c.request("GET", "/api/info")
            assert c.getresponse().read()
            conns.append(c)
        time.sleep(0.2)
        assert [_sockets(p) - b for p, b in zip(children, before, strict=True)] == [4, 4]
        for c in conns:
            c.close()
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


@needs_proc
def test_workers_share_the_socket_and_stop_with_the_server() -> None:
    # Its own session: Ctrl-C in a terminal reaches every process of the group.
    proc, url = start_command("--workers", "3", start_new_session=True)
    try:
        children = _workers(proc.pid, 3)
        assert len(children) == 3
        before = [_cpu_ticks(p) for p in children]
        for _ in range(150):  # new connections go to whichever process accepts first
            assert _predict(url) == 7
        busy = [_cpu_ticks(p) - b for p, b in zip(children, before, strict=True)]
        assert sum(t > 0 for t in busy) >= 2, busy
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert (proc.returncode, err) == (0, "Stopped (SIGINT).\n")
    assert all(_gone(pid, 0) for pid in children)


@needs_proc
def test_a_killed_worker_is_replaced_and_reaped() -> None:
    # Once: a killed worker stayed a zombie and its share of the work was lost.
    proc, url = start_command("--workers", "2")
    try:
        victim, other = _workers(proc.pid, 2)
        time.sleep(1.2)  # past the pause for workers that die at once
        os.kill(victim, signal.SIGKILL)
        assert _gone(victim), "the dead worker was not reaped"
        (new,) = _workers(proc.pid, 1, but=(victim, other))
        assert new != victim
        assert set(_workers(proc.pid, 2)) == {other, new}
        for _ in range(20):
            assert _predict(url) == 7
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert err == (
        f"Worker {victim} was killed by SIGKILL; starting another.\nStopped (SIGTERM).\n"
    )


@needs_proc
def test_workers_stop_when_the_server_is_killed() -> None:
    proc, _ = start_command("--workers", "2")
    try:
        children = _workers(proc.pid, 2)
        proc.kill()
        proc.communicate()
        assert all(_gone(c) for c in children), "a worker kept serving without its parent"
    finally:
        proc.kill()


def test_a_host_others_can_reach_gets_a_warning() -> None:
    proc, url = start_command("--host", "0.0.0.0")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=10)
    port = url.rstrip("/").rsplit(":", 1)[1]
    assert url == f"http://0.0.0.0:{port}/"
    assert err.splitlines()[0] == (
        f"Warning: listening on 0.0.0.0: everyone who can reach this machine on port {port}"
        " can use the server (there is no login)"
    )


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_local_hosts(host: str) -> None:
    assert sv.is_local(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "example.org"])
def test_other_hosts(host: str) -> None:
    assert not sv.is_local(host)


@pytest.fixture
def no_serving(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The command runs up to serving, which then returns at once; what it got is kept."""
    seen: dict[str, Any] = {}

    def serve_until_stopped(server: sv.Server, workers: int = 1) -> str:
        seen["server"] = server
        seen["workers"] = workers
        server.close()
        return "SIGTERM"

    monkeypatch.setattr(sv, "serve_until_stopped", serve_until_stopped)
    monkeypatch.setattr("webbrowser.open", lambda url: seen.setdefault("opened", url))
    monkeypatch.delenv("MNIST_INFER_WEIGHTS", raising=False)
    return seen


@pytest.mark.parametrize(
    ("value", "size"), [("10M", 10 * 2**20), ("512K", 512 * 1024), ("1000", 1000), ("2MiB", 2**21)]
)
def test_max_upload_sizes(no_serving: dict[str, Any], value: str, size: int) -> None:
    res = CliRunner().invoke(cli, ["serve", "--port", "0", "--max-upload", value])
    assert res.exit_code == 0, res.output
    assert no_serving["server"].limits.max_upload == size
    assert no_serving["workers"] == _cpus()  # one process per CPU by default
    assert "opened" not in no_serving


def test_open_opens_the_browser(no_serving: dict[str, Any]) -> None:
    res = CliRunner().invoke(cli, ["serve", "--port", "0", "--open"])
    assert res.exit_code == 0
    server = no_serving["server"]
    assert no_serving["opened"] == server.url
    sizes = "-".join(map(str, server.app.net.sizes))
    assert res.stdout == (
        f"Serving on {server.url} with mnist-mlp-{sizes}.pkl ({sizes})  (Ctrl-C to stop)\n"
    )


@pytest.mark.parametrize(
    ("args", "env", "sizes"),
    [
        (["--weights", "small"], None, [784, 50, 100, 10]),
        ([], "small", [784, 50, 100, 10]),
        (["--weights", "default"], "small", [784, 800, 300, 10]),
        ([], None, [784, 800, 300, 10]),
    ],
)
def test_the_shipped_weights_by_their_short_names(
    no_serving: dict[str, Any], args: list[str], env: str | None, sizes: list[int]
) -> None:
    # Once: `serve --weights small` was "cannot read weights small: no such file", exit 5.
    res = CliRunner().invoke(cli, ["serve", "--port", "0", *args], env={"MNIST_INFER_WEIGHTS": env})
    assert res.exit_code == 0, res.output
    server = no_serving["server"]
    assert server.app.info["sizes"] == sizes
    arch = "-".join(map(str, sizes))
    assert server.app.info["weights"] == f"mnist-mlp-{arch}.pkl"
    assert res.stdout == (
        f"Serving on {server.url} with mnist-mlp-{arch}.pkl ({arch})  (Ctrl-C to stop)\n"
    )


def test_a_weights_file_is_named_on_the_start_up_line(
    no_serving: dict[str, Any], weights: Path
) -> None:
    res = CliRunner().invoke(cli, ["serve", "--port", "0", "--weights", str(weights)])
    assert res.exit_code == 0, res.output
    assert res.stdout.endswith(" with w.pkl (784-30-20-10)  (Ctrl-C to stop)\n")


@pytest.mark.parametrize("value", ["0", "10G", "abc", "-5", ""])
def test_bad_max_upload_is_a_usage_error(value: str) -> None:
    res = CliRunner().invoke(cli, ["serve", "--max-upload", value])
    assert res.exit_code == 2
    assert (
        "Invalid value for '--max-upload': expected a positive size in bytes, optionally with"
        f" K or M (KiB, MiB), found {value!r}" in res.output
    )


def test_a_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = CliRunner().invoke(cli, ["serve", "--port", str(port)])
    assert res.exit_code == 1
    assert res.output == (
        f"Error: cannot listen on 127.0.0.1:{port}: Address already in use; pick another"
        " --port, or --port 0 for a free one\n"
    )


def test_bad_weights_are_exit_5(tmp_path: Path) -> None:
    bad = tmp_path / "w.pkl"
    bad.write_bytes(b"not a pickle")
    res = CliRunner().invoke(cli, ["serve", "--port", "0", "--weights", str(bad)])
    assert res.exit_code == 5
    assert res.output.startswith("Error: ")
    assert str(bad) in res.output
