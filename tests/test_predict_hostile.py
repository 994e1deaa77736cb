"""`predict` against hostile input: bounded time and memory, one clean line, the rest predicted."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import pin_cache
from PIL import Image

from mnist_infer.cli import cli
from mnist_infer.predict import MAX_FILE_BYTES

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux files, devices and limits")

LIMIT = f"{MAX_FILE_BYTES:,}"


def _digit_png(path: Path, k: int = 0) -> Path:
    a = np.zeros((28, 28), np.uint8)
    a[4 + k : 24, 12 : 16 + k] = 255
    Image.fromarray(a).save(path)
    return path


def _limited() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30))  # 1 GiB of address space


def predict(weights: Path, *args: str, stdin: object = subprocess.DEVNULL) -> tuple[int, str, str]:
    """A real process under a 1 GiB address-space limit that must end within 20 s."""
    res = subprocess.run(
        [sys.executable, "-m", "mnist_infer", "predict", "--weights", str(weights), *args],
        stdin=stdin,  # type: ignore[arg-type]
        capture_output=True,
        timeout=20,
        preexec_fn=_limited,
    )
    return res.returncode, res.stdout.decode(errors="replace"), res.stderr.decode()


def _paths(stdout: str) -> list[str]:
    return [line.split("  ")[0] for line in stdout.splitlines()]


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A folder with a short path, as a Unix socket's address must be under 108 bytes."""
    d = Path(tempfile.mkdtemp(prefix="mi-", dir="/tmp"))
    yield d
    for p in d.iterdir():
        p.unlink()
    d.rmdir()


def _fifo(p: Path) -> None:
    os.mkfifo(p)


def _zero(p: Path) -> None:
    p.symlink_to("/dev/zero")


def _socket(p: Path) -> None:
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(p))
    s.close()  # the socket file stays


KINDS = {
    "fifo": (_fifo, "is a named pipe (FIFO), expected an image file"),
    "dev-zero": (_zero, "is a character device, expected an image file"),
    "socket": (_socket, "is a socket, expected an image file"),
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("how", ["given", "in-folder"])
def test_non_regular_files_are_refused_unopened(
    kind: str, how: str, short_dir: Path, weights: Path
) -> None:
    make, why = KINDS[kind]
    good = [_digit_png(short_dir / "a.png"), _digit_png(short_dir / "c.png", 1)]
    bad = short_dir / "b.png"
    make(bad)
    args = [str(short_dir)] if how == "in-folder" else [str(good[0]), str(bad), str(good[1])]
    code, out, err = predict(weights, *args)
    assert code == 5
    assert err == f"Error: {bad}: {why}\n"
    assert _paths(out) == [str(g) for g in good]


def test_a_file_over_the_size_limit_is_refused_unread(tmp_path: Path, weights: Path) -> None:
    big = tmp_path / "big.png"
    with open(big, "wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)  # sparse: no disk used, nothing to read
    good = _digit_png(tmp_path / "good.png")
    code, out, err = predict(weights, str(big), str(good))
    assert code == 5
    size = f"{MAX_FILE_BYTES + 1:,} bytes"
    assert err == f"Error: {big}: file too large ({size}; the limit is {LIMIT} bytes)\n"
    assert _paths(out) == [str(good)]


def test_endless_standard_input_is_capped(tmp_path: Path, weights: Path) -> None:
    good = _digit_png(tmp_path / "good.png")
    with open("/dev/zero", "rb") as zero:
        code, out, err = predict(weights, "-", str(good), stdin=zero)
    assert code == 5
    assert err == f"Error: -: standard input too large (more than the limit of {LIMIT} bytes)\n"
    assert _paths(out) == [str(good)]


def test_standard_input_up_to_the_limit_is_read(
    tmp_path: Path, weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    png = _digit_png(tmp_path / "a.png").read_bytes()
    monkeypatch.setattr("mnist_infer.predict.MAX_FILE_BYTES", len(png))
    ok = CliRunner().invoke(cli, ["predict", "--weights", str(weights), "-"], input=png)
    assert ok.exit_code == 0
    over = CliRunner().invoke(cli, ["predict", "--weights", str(weights), "-"], input=png + b"\0")
    assert over.exit_code == 5
    assert over.stderr == (
        f"Error: -: standard input too large (more than the limit of {len(png):,} bytes)\n"
    )


def test_the_longest_legal_names_work_with_save_preprocessed(tmp_path: Path, weights: Path) -> None:
    stem = "é" * 100 + "x" * 51  # 251 bytes: with ".png", a name of 255 bytes, the most allowed
    first, second = tmp_path / "one", tmp_path / "two"
    first.mkdir()
    second.mkdir()
    names = [_digit_png(first / f"{stem}.png"), _digit_png(second / f"{stem}.png", 1)]
    after = _digit_png(tmp_path / "after.png")
    seen = tmp_path / "seen"
    args = [*map(str, names), str(after), "--save-preprocessed", str(seen)]
    code, out, err = predict(weights, *args)
    assert code == 0, err
    assert _paths(out) == [*map(str, names), str(after)]
    shortened = os.fsdecode(os.fsencode(stem)[:249]) + "-2.png"  # 255 bytes again
    assert sorted(p.name for p in seen.iterdir()) == sorted([f"{stem}.png", shortened, "after.png"])
    assert err == f"Note: {names[1]}: saved as {seen / shortened} ({stem}.png was taken)\n"


NAMES = {
    "newline": ("two\nlines.png", "two\\nlines.png"),
    "escape": ("\x1b[31mred.png", "\\033[31mred.png"),
    "carriage-return": ("over\rwrite.png", "over\\rwrite.png"),
    "tab": ("a\tb.png", "a\\tb.png"),
    "backslash": ("back\\slash.png", "back\\\\slash.png"),
    "c1-control": ("csi\x9bx.png", "csi\\302\\233x.png"),
}


@pytest.mark.parametrize("case", NAMES)
def test_control_characters_in_names_are_escaped_in_text_only(
    case: str, tmp_path: Path, weights: Path
) -> None:
    name, shown = NAMES[case]
    p = _digit_png(tmp_path / name)
    missing = tmp_path / ("gone-" + name)
    base = ["predict", "--weights", str(weights)]
    text = CliRunner().invoke(cli, [*base, str(p), str(missing)])
    assert text.exit_code == 5
    assert len(text.stdout.splitlines()) == 1
    assert text.stdout.startswith(f"{tmp_path}/{shown}  ")
    assert text.stderr == f"Error: {tmp_path}/gone-{shown}: no such file or directory\n"
    js = CliRunner().invoke(cli, [*base, "--json", str(p), str(missing)])
    assert [r["path"] for r in map(json.loads, js.stdout.splitlines())] == [str(p), str(missing)]
    table = CliRunner().invoke(cli, [*base, "--csv", str(p), str(missing)])
    rows = list(csv.reader(io.StringIO(table.stdout, newline="")))
    assert [r[0] for r in rows[1:]] == [str(p), str(missing)]


def test_show_out_on_a_full_disk_leaves_no_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache_dir: Path
) -> None:
    from mnist_infer.idx import write_idx

    cache_dir.mkdir()
    write_idx(cache_dir / "t10k-images-idx3-ubyte", np.zeros((3, 28, 28), np.uint8))
    write_idx(cache_dir / "t10k-labels-idx1-ubyte", np.array([4, 1, 2], np.uint8))
    pin_cache(cache_dir, monkeypatch)

    def full(self: object, fp: object, *args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full)
    out = tmp_path / "new" / "digits"
    res = CliRunner().invoke(cli, ["show", "--out", str(out)])
    assert res.exit_code == 1
    assert (
        res.stderr == f"Error: cannot write {out}/test-00000-label4.png: No space left on device\n"
    )
    assert list(tmp_path.iterdir()) == [cache_dir]


def _folder_of_digits(d: Path, count: int) -> list[str]:
    """count copies of one digit file, named 0001.png…, sorted as predict sorts them."""
    d.mkdir()
    data = _digit_png(d / "0000.png").read_bytes()
    for i in range(1, count):
        (d / f"{i:04d}.png").write_bytes(data)
    return [str(d / f"{i:04d}.png") for i in range(count)]


def _results(fmt: str, stdout: str) -> dict[str, str]:
    """path -> digit or error, from predict's text, JSON or CSV output."""
    if fmt == "--json":
        recs = [json.loads(line) for line in stdout.splitlines()]
        return {r["path"]: r.get("error") or str(r["digit"]) for r in recs}
    if fmt == "--csv":
        rows = list(csv.DictReader(io.StringIO(stdout, newline="")))
        return {r["path"]: r["error"] or r["digit"] for r in rows}
    return {line.split("  ")[0]: line.split("  ")[1] for line in stdout.splitlines()}


@pytest.mark.parametrize("mode", ["RGB", "P", "L"])
def test_png_text_keyed_transparency_costs_nothing_in_a_pool(
    mode: str, tmp_path: Path, weights: Path
) -> None:
    """Pillow's own PngInfo.add_text writes such files; they once ended the whole batch."""
    from PIL import PngImagePlugin

    paths = _folder_of_digits(tmp_path / "d", 600)  # enough for worker processes
    info = PngImagePlugin.PngInfo()
    info.add_text("transparency", "x")
    side = 100 if mode == "L" else 28  # small grey files take the fast path
    Image.open(paths[0]).convert(mode).resize((side, side)).save(paths[0], pnginfo=info)
    res = CliRunner().invoke(
        cli, ["predict", "--weights", str(weights), "-j", "2", "--csv", str(tmp_path / "d")]
    )
    assert res.exit_code == 0, res.stderr
    assert list(_results("--csv", res.stdout)) == paths


@pytest.mark.parametrize("fmt", ["text", "--json", "--csv"])
@pytest.mark.parametrize(("count", "jobs"), [(20, "1"), (600, "2")])  # in-process; workers
def test_an_unexpected_error_is_that_files_record(
    fmt: str, count: int, jobs: str, tmp_path: Path, weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mnist_infer import predict as pr

    paths = _folder_of_digits(tmp_path / "d", count)
    bad = {paths[3], paths[-2]}
    load_digit = pr.load_digit

    def flawed(source: object, name: str, *args: object) -> object:
        if name in bad:
            raise TypeError("argument 2 must be sequence of length 3, not 1")
        return load_digit(source, name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(pr, "load_digit", flawed)
    args = ["predict", "--weights", str(weights), "-j", jobs, str(tmp_path / "d")]
    res = CliRunner().invoke(cli, args + ([] if fmt == "text" else [fmt]))
    assert res.exit_code == 5
    why = (
        "internal error while reading it (TypeError: argument 2 must be sequence of length 3,"
        " not 1); this is a bug in mnist-infer, please report it with the file"
    )
    assert res.stderr == "".join(f"Error: {p}: {why}\n" for p in paths if p in bad)
    got = _results(fmt, res.stdout)
    good = [p for p in paths if p not in bad]
    assert [p for p in got if p not in bad] == good
    assert {got[p] for p in good} == {got[good[0]]}
    if fmt != "text":
        assert [p for p in got if p in bad] == sorted(bad)
        assert {got[p] for p in bad} == {why}


DYING = """
import os, signal, sys
from mnist_infer import predict
from mnist_infer.cli import main

load_digit, parent = predict.load_digit, os.getpid()

def dying(source, name, *args):
    if name.endswith(KILLER) and os.getpid() != parent:
        os.kill(os.getpid(), signal.SIGNUM)
    return load_digit(source, name, *args)

predict.load_digit = dying
sys.argv[0] = "mnist-infer"
main()
"""


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGSEGV], ids=["killed", "crashed"])
@pytest.mark.parametrize("fmt", ["text", "--csv"])
def test_a_worker_that_dies_costs_only_its_file(
    signum: int, fmt: str, tmp_path: Path, weights: Path
) -> None:
    """A worker killed (out of memory) or crashing inside a decoder once hung predict for ever."""
    paths = _folder_of_digits(tmp_path / "d", 1000)
    script = tmp_path / "dying.py"
    killer = "0700.png"
    script.write_text(
        DYING.replace("KILLER", repr(killer)).replace("SIGNUM", signal.Signals(signum).name)
    )
    argv = [sys.executable, str(script), "predict", "--weights", str(weights), "-j", "2"]
    res = subprocess.run(
        [*argv, str(tmp_path / "d"), *([] if fmt == "text" else [fmt])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 5
    bad = str(tmp_path / "d" / killer)
    assert res.stderr == (
        f"Error: {bad}: the process reading it ended abruptly (killed, out of memory, or a crash"
        " in a decoder); if that happens again, please report it with the file\n"
    )
    got = _results(fmt, res.stdout)
    assert [p for p in got if p != bad] == [p for p in paths if p != bad]


def _png_bytes(img: Image.Image, fmt: str = "PNG", **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _good_files() -> dict[str, bytes]:
    """Pictures of digits in every format and shape predict takes, some of them odd."""
    from PIL import PngImagePlugin

    a = np.zeros((28, 28), np.uint8)
    a[4:24, 12:16] = 255
    a[4:8, 8:16] = 255
    gray = Image.fromarray(a)
    big = gray.resize((40, 40))  # small pictures: the time goes to the files' variety
    posing = PngImagePlugin.PngInfo()
    posing.add_text("transparency", "x")
    posing.add_text("interlace", "1")
    frames = [gray, Image.fromarray(255 - a)]
    return {
        "small.png": _png_bytes(gray),
        "big.png": _png_bytes(big),
        "rgb-text.png": _png_bytes(gray.convert("RGB"), pnginfo=posing),
        "palette-text.png": _png_bytes(big.convert("P"), pnginfo=posing),
        "paper.jpg": _png_bytes(Image.fromarray(255 - np.asarray(big)), "JPEG"),
        "scan.bmp": _png_bytes(big.convert("RGB"), "BMP"),
        "moving.gif": _png_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        "wide.tif": _png_bytes(Image.fromarray(np.asarray(big).astype(np.uint16) * 257), "TIFF"),
        "web.webp": _png_bytes(big, "WEBP"),
    }


def _bad_files() -> dict[str, bytes]:
    """Files predict must refuse, one line each, whatever they hold."""
    good = _png_bytes(Image.fromarray(np.full((28, 28), 9, np.uint8)))
    huge = bytearray(good)
    huge[16:24] = (100_000).to_bytes(4, "big") * 2  # IHDR: 100,000 x 100,000 pixels
    nan = np.full((28, 28), np.nan, np.float32)
    return {
        "empty.png": b"",
        "text.png": b"not a picture\n",
        "cut.png": good[:40],
        "cut.jpg": _png_bytes(Image.new("L", (300, 300), 200), "JPEG")[:300],
        "blank.png": _png_bytes(Image.new("L", (28, 28), 0)),
        "nan.tif": _png_bytes(Image.fromarray(nan), "TIFF"),
        "bomb.png": bytes(huge[:33]) + good[33:],
        "dot.png": _png_bytes(Image.new("L", (1, 1))),
    }


@pytest.mark.slow
def test_a_hostile_folder_of_20000_files_yields_every_good_answer(
    short_dir: Path, weights: Path
) -> None:
    """Good pictures among files of every kind of trouble (damaged, fuzzed, special files,
    odd names): each good file gets its answer, each bad one its one line."""
    import random

    import pngfuzz

    from mnist_infer.errors import MnistInferError
    from mnist_infer.image import load_digit

    d = short_dir
    good, bad = _good_files(), _bad_files()
    expect: dict[str, bool] = {}  # path -> answered
    for i in range(20_000):
        kind = i % 10
        if kind < 6:  # good files, 12,000 of them, some with odd names
            name = sorted(good)[i % len(good)]
            odd = "\x1b[1m" if i % 97 == 0 else "\udcff" if i % 89 == 0 else ""  # byte 0xff
            (d / f"{i:05d}-{odd}{name}").write_bytes(good[name])
            expect[str(d / f"{i:05d}-{odd}{name}")] = True
        elif kind < 9:  # damaged and fuzzed files
            if i % 2:
                name = sorted(bad)[i % len(bad)]
                (d / f"{i:05d}-{name}").write_bytes(bad[name])
                expect[str(d / f"{i:05d}-{name}")] = False
            else:
                data = pngfuzz.random_png(random.Random(i))
                p = d / f"{i:05d}-fuzz.png"
                p.write_bytes(data)
                try:
                    load_digit(io.BytesIO(data), str(p))
                    expect[str(p)] = True
                except MnistInferError:
                    expect[str(p)] = False
        else:  # what is not a file at all, or too big to read
            p = d / f"{i:05d}-special.png"
            make = (_fifo, _zero, _socket, _loop, _dangling, _sparse)[i // 10 % 6]
            make(p)
            expect[str(p)] = False
    argv = ["predict", "--weights", str(weights), "-j", "2", "--json", str(d)]
    res = subprocess.run(
        [sys.executable, "-m", "mnist_infer", *argv],
        capture_output=True,
        timeout=600,
        preexec_fn=_limited,
    )
    assert res.returncode == 5
    records = [json.loads(line) for line in res.stdout.splitlines()]
    paths = [
        os.fsdecode(base64.b64decode(r["path_base64"])) if "path_base64" in r else r["path"]
        for r in records
    ]
    assert paths == sorted(expect)
    answered = {p: "digit" in r for p, r in zip(paths, records, strict=True)}
    assert answered == expect
    errors = res.stderr.decode(errors="replace").splitlines()
    assert sum(line.startswith("Error: ") for line in errors) == list(expect.values()).count(False)
    assert not [line for line in errors if not line.startswith(("Error: ", "Note: "))]
    assert "internal error" not in res.stderr.decode(errors="replace")
    by_name: dict[str, set[tuple[int, float]]] = {}
    for p, r in zip(paths, records, strict=True):
        name = os.path.basename(p).split("-", 1)[1].replace("\x1b[1m", "").replace("\udcff", "")
        if name in good:
            by_name.setdefault(name, set()).add((r["digit"], r["confidence"]))
    assert set(by_name) == set(good)
    assert all(len(answers) == 1 for answers in by_name.values())  # the same picture, one answer


def _loop(p: Path) -> None:
    p.symlink_to(p.name)


def _dangling(p: Path) -> None:
    p.symlink_to(p.name + ".gone")


def _sparse(p: Path) -> None:
    with open(p, "wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)
