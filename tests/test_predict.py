"""`mnist-infer predict`: files, folders, stdin, output formats, and every kind of bad input."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from PIL import Image, ImageDraw
from textbook import real_test_set

from mnist_infer.cli import cli
from mnist_infer.network import Network
from mnist_infer.predict import SUFFIXES
from mnist_infer.preprocess import SIZE, normalize
from mnist_infer.shipped import default_weights_path
from mnist_infer.weights import load_weights

FOLDER_KINDS = ", ".join(sorted(SUFFIXES))


def _digit(k: int = 0) -> np.ndarray:
    """An anti-aliased MNIST-style digit (already normalised); its shape varies with k."""
    big = Image.new("L", (112, 112), 0)
    ImageDraw.Draw(big).line([(30, 24 + 3 * k), (82, 24), (50 - 2 * k, 92)], fill=255, width=10 + k)
    return normalize(np.asarray(big, np.float32) / 255)


SEVEN = _digit()


def invoke(weights: Path, *args: str, stdin: bytes | None = None) -> Result:
    return CliRunner().invoke(cli, ["predict", "--weights", str(weights), *args], input=stdin)


def _digit_png(path: Path, k: int = 0) -> Path:
    """A 28x28 white-on-black digit file, shaped by k."""
    Image.fromarray(_digit(k)).save(path)
    return path


def _probabilities(weights: Path, digits: np.ndarray) -> np.ndarray:
    return Network(load_weights(weights)).predict(digits.reshape(len(digits), -1) / 255)


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line]


# --- output ---------------------------------------------------------------------------


@pytest.mark.skipif(sys.platform != "linux", reason="file names are bytes on Linux")
@pytest.mark.parametrize("encoding", ["utf-8", "utf-8:strict", "latin-1"])
def test_names_that_are_not_utf8_are_printed_as_they_are(
    tmp_path: Path, weights: Path, encoding: str
) -> None:
    import base64
    import subprocess

    (tmp_path / "d").mkdir()
    folder = os.fsencode(tmp_path / "d")
    _digit_png(Path(os.fsdecode(folder + b"/caf\xe9.png")))
    cmd = [sys.executable, "-m", "mnist_infer", "predict", "--weights", str(weights)]
    cmd.append(str(tmp_path / "d"))
    env = os.environ | {"PYTHONIOENCODING": encoding}
    runs = {
        fmt: subprocess.run([*cmd, *fmt], capture_output=True, env=env)
        for fmt in ((), ("--csv",), ("--json",))
    }
    assert [r.returncode for r in runs.values()] == [0, 0, 0]
    assert [r.stderr for r in runs.values()] == [b"", b"", b""]
    name = folder + b"/caf\xe9.png"
    assert runs[()].stdout.startswith(name + b"  ")
    assert runs[("--csv",)].stdout.splitlines()[1].startswith(name + b",")
    record = json.loads(runs[("--json",)].stdout.decode("utf-8"))  # valid UTF-8 JSON
    assert record["path"] == os.fsdecode(folder) + "/caf\ufffd.png"
    assert base64.b64decode(record["path_base64"]) == name


def test_json_path_base64_only_when_needed(tmp_path: Path, weights: Path) -> None:
    res = invoke(weights, "--json", str(_digit_png(tmp_path / "café.png")))
    assert json.loads(res.stdout)["path"] == str(tmp_path / "café.png")
    assert "path_base64" not in json.loads(res.stdout)


def test_one_line_per_file(tmp_path: Path, weights: Path) -> None:
    paths = [_digit_png(tmp_path / f"d{k}.png", k) for k in range(3)]
    res = invoke(weights, "--accept-all", *map(str, paths))  # test_not_a_digit.py: the rest
    assert res.exit_code == 0, res.output
    probs = _probabilities(weights, np.stack([np.asarray(Image.open(p)) for p in paths]))
    expected = [f"{p}  {q.argmax()}  {q.max():.3f}" for p, q in zip(paths, probs, strict=True)]
    assert _lines(res.stdout) == expected
    assert res.stderr == ""


def test_top_k_json_and_csv_agree(tmp_path: Path, weights: Path) -> None:
    paths = [str(_digit_png(tmp_path / f"d{k}.png", k)) for k in range(3)]
    text = _lines(invoke(weights, "--top-k", "3", *paths).stdout)
    js = [
        json.loads(line)
        for line in _lines(invoke(weights, "--json", "--top-k", "3", *paths).stdout)
    ]
    rows = list(csv.reader(io.StringIO(invoke(weights, "--csv", "--top-k", "3", *paths).stdout)))
    assert rows[0] == [
        "path",
        "digit",
        "confidence",
        "is_digit",
        "guess",
        "digit_2",
        "probability_2",
        "digit_3",
        "probability_3",
        "error",
    ]
    for line, obj, row, path in zip(text, js, rows[1:], paths, strict=True):
        top = obj["top"]
        assert [t["probability"] for t in top] == sorted(
            (t["probability"] for t in top), reverse=True
        )
        assert obj["path"] == row[0] == path
        assert obj["guess"] == top[0]["digit"] == int(row[4])
        assert obj["digit"] == (obj["guess"] if obj["is_digit"] else None)
        assert row[1] == ("" if obj["digit"] is None else str(obj["digit"]))
        assert row[3] == str(obj["is_digit"]).lower()
        assert obj["confidence"] == pytest.approx(float(row[2]), abs=1e-6)
        runners = "".join(f"  {t['digit']}:{t['probability']:.3f}" for t in top[1:])
        conf = f"{obj['confidence']:.3f}"
        answer = (
            f"{obj['digit']}  {conf}"
            if obj["is_digit"]
            else f"?  not a digit (looks most like {obj['guess']}, {conf})"
        )
        assert line == f"{path}  {answer}{runners}"
        assert [int(row[5]), int(row[7])] == [t["digit"] for t in top[1:]]


def test_json_without_top_k_has_five_fields(tmp_path: Path, weights: Path) -> None:
    res = invoke(weights, "--json", str(_digit_png(tmp_path / "a.png")))
    assert sorted(json.loads(res.stdout)) == ["confidence", "digit", "guess", "is_digit", "path"]


def test_show_draws_what_the_network_saw(tmp_path: Path, weights: Path) -> None:
    page = np.full((90, 120), 255, np.uint8)
    page[30:58, 60:88] = 255 - SEVEN  # dark ink on white, off-centre
    Image.fromarray(page).save(tmp_path / "page.png")
    res = invoke(weights, "--show", str(tmp_path / "page.png"))
    lines = res.stdout.split("\n")
    assert lines[0].startswith(f"{tmp_path / 'page.png'}  ")
    art = lines[1:29]
    ramp = " .:-=+*#%@"
    assert art == ["".join(2 * ramp[int(v) * 10 >> 8] for v in row) for row in SEVEN]


@pytest.mark.parametrize("fmt", ["--json", "--csv"])
def test_show_goes_to_stderr_with_json_or_csv(tmp_path: Path, weights: Path, fmt: str) -> None:
    paths = [str(_digit_png(tmp_path / f"{c}.png", k)) for k, c in enumerate("ab")]
    res = invoke(weights, fmt, "--show", *paths)
    assert "@" not in res.stdout
    lines = res.stderr.split("\n")
    assert [lines[0], lines[30]] == [f"{paths[0]}:", f"{paths[1]}:"]
    assert [len(line) for line in lines[1:29]] == [2 * SIZE] * SIZE
    assert "@" in "".join(lines[1:29])


def test_save_preprocessed(tmp_path: Path, weights: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    page = np.zeros((60, 80), np.uint8)
    page[5:33, 40:68] = SEVEN
    Image.fromarray(page).save(tmp_path / "a" / "x.png")
    Image.fromarray(255 - SEVEN).convert("RGB").save(tmp_path / "b" / "x.bmp")
    out = tmp_path / "out"
    res = invoke(weights, "--save-preprocessed", str(out), str(tmp_path / "a"), str(tmp_path / "b"))
    assert res.exit_code == 0
    assert (
        res.stderr
        == f"Note: {tmp_path / 'b' / 'x.bmp'}: saved as {out / 'x-2.png'} (x.png was taken)\n"
    )
    assert sorted(os.listdir(out)) == ["x-2.png", "x.png"]
    assert np.array_equal(np.asarray(Image.open(out / "x.png")), SEVEN)
    assert np.array_equal(np.asarray(Image.open(out / "x-2.png")), SEVEN)


def test_save_preprocessed_into_a_file_is_refused(tmp_path: Path, weights: Path) -> None:
    (tmp_path / "f").write_text("x")
    res = invoke(
        weights, "--save-preprocessed", str(tmp_path / "f"), str(_digit_png(tmp_path / "a.png"))
    )
    assert res.exit_code == 2
    assert f"Directory '{tmp_path / 'f'}' is a file." in res.stderr


def test_save_preprocessed_inside_a_file_is_refused(tmp_path: Path, weights: Path) -> None:
    (tmp_path / "f").write_text("x")
    out = tmp_path / "f" / "sub"
    res = invoke(weights, "--save-preprocessed", str(out), str(_digit_png(tmp_path / "a.png")))
    assert res.exit_code == 1
    assert res.stderr == f"Error: cannot write to folder {out}: {tmp_path / 'f'} is a file\n"
    assert res.stdout == ""


@pytest.mark.usefixtures("no_write_access")
def test_save_preprocessed_without_write_access_stops_before_predicting(
    tmp_path: Path, weights: Path
) -> None:
    out = tmp_path / "out"
    pngs = [str(_digit_png(tmp_path / f"{k}.png", k)) for k in range(3)]
    res = invoke(weights, "--save-preprocessed", str(out), *pngs)
    assert res.exit_code == 1
    assert res.stderr == f"Error: cannot write to folder {out}: Permission denied\n"
    assert res.stdout == ""


def test_json_and_csv_together_are_refused(tmp_path: Path, weights: Path) -> None:
    res = invoke(weights, "--json", "--csv", str(_digit_png(tmp_path / "a.png")))
    assert res.exit_code == 2
    assert res.stderr.endswith("Error: --json and --csv cannot be used together\n")
    assert res.stdout == ""


def test_stdin(tmp_path: Path, weights: Path) -> None:
    png = _digit_png(tmp_path / "a.png").read_bytes()
    res = invoke(weights, "-", stdin=png)
    file_line = _lines(invoke(weights, str(tmp_path / "a.png")).stdout)[0]
    assert res.exit_code == 0
    assert res.stdout == "-" + file_line[len(str(tmp_path / "a.png")) :] + "\n"


def test_stdin_is_read_once(tmp_path: Path, weights: Path) -> None:
    png = _digit_png(tmp_path / "a.png").read_bytes()
    res = invoke(weights, "-", "-", stdin=png)
    assert res.exit_code == 5
    assert _lines(res.stdout)[0].startswith("-  ")
    assert res.stderr == "Error: -: standard input was already read (give - once)\n"


def test_closed_stdin_is_only_read_for_dash(tmp_path: Path, weights: Path) -> None:
    import subprocess
    import sys

    png = _digit_png(tmp_path / "a.png")
    cmd = [sys.executable, "-m", "mnist_infer", "predict", "--weights", str(weights)]
    runs = [
        subprocess.run(
            [*cmd, *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            close_fds=True,
            preexec_fn=lambda: os.close(0),
        )
        for args in ([str(png)], ["-", str(png)])
    ]
    assert [r.returncode for r in runs] == [0, 5]
    assert runs[0].stdout == runs[1].stdout
    assert runs[0].stdout.startswith(f"{png}  ")
    assert runs[1].stderr == "Error: -: standard input is closed, expected an image on it\n"


def test_empty_stdin(weights: Path) -> None:
    res = invoke(weights, "-", stdin=b"")
    assert res.exit_code == 5
    assert res.stderr == "Error: -: empty file\n"


def test_folders_sorted_recursive_and_filtered(tmp_path: Path, weights: Path) -> None:
    d = tmp_path / "digits"
    (d / "sub" / "deeper").mkdir(parents=True)
    for name in ("b.png", "a.PNG", "c.jpeg", "sub/z.bmp", "sub/deeper/y.gif", "sub/a.tif"):
        Image.fromarray(SEVEN).save(d / name)
    (d / "notes.txt").write_text("not an image")
    (d / ".hidden.png").write_bytes(b"junk")
    flat = [line.split("  ")[0] for line in _lines(invoke(weights, str(d)).stdout)]
    assert flat == [str(d / n) for n in ("a.PNG", "b.png", "c.jpeg")]
    deep = [line.split("  ")[0] for line in _lines(invoke(weights, "-r", str(d)).stdout)]
    names = ("a.PNG", "b.png", "c.jpeg", "sub/a.tif", "sub/z.bmp", "sub/deeper/y.gif")
    assert deep == [str(d / n) for n in names]


def test_symlink_loops_are_listed_once(tmp_path: Path, weights: Path) -> None:
    d = tmp_path / "digits"
    (d / "sub").mkdir(parents=True)
    _digit_png(d / "sub" / "a.png")
    (d / "sub" / "back").symlink_to("..")
    (d / "loop.png").symlink_to("loop.png")
    res = invoke(weights, "-r", str(d))
    assert res.exit_code == 5
    assert [line.split("  ")[0] for line in _lines(res.stdout)] == [str(d / "sub" / "a.png")]
    assert _lines(res.stderr) == [
        f"Error: {d / 'loop.png'}: cannot read (Too many levels of symbolic links)"
    ]


def test_batches_keep_input_order_around_failures(tmp_path: Path, weights: Path) -> None:
    args = []
    for k in range(7):
        if k in (1, 4, 5):
            args.append(str(tmp_path / f"missing{k}.png"))
        else:
            args.append(str(_digit_png(tmp_path / f"d{k}.png", k)))
    res = invoke(weights, "--batch-size", "2", *args)
    assert res.exit_code == 5
    assert [line.split("  ")[0] for line in _lines(res.stdout)] == [args[k] for k in (0, 2, 3, 6)]
    assert _lines(res.stderr) == [f"Error: {args[k]}: no such file or directory" for k in (1, 4, 5)]


def test_worker_processes_give_the_same_answers(tmp_path: Path, weights: Path) -> None:
    d = tmp_path / "many"
    d.mkdir()
    r = np.random.default_rng(0)
    for k in range(600):  # more than the 512 files after which workers start
        shifted = np.roll(SEVEN, (int(r.integers(-3, 4)), int(r.integers(-3, 4))), axis=(0, 1))
        Image.fromarray(shifted).save(d / f"{k:04d}.png")
    (d / "0300.png").write_bytes(b"broken")
    one = invoke(weights, "-j", "1", str(d))
    two = invoke(weights, "-j", "2", str(d))
    assert one.exit_code == two.exit_code == 5
    assert one.stdout == two.stdout
    assert len(_lines(one.stdout)) == 599
    assert (
        one.stderr
        == two.stderr
        == (f"Error: {d / '0300.png'}: not an image (expected PNG, JPEG, BMP, GIF, TIFF or WebP)\n")
    )


@pytest.mark.skipif(not hasattr(os, "killpg"), reason="needs process groups (POSIX)")
def test_ctrl_c_stops_the_workers_quietly(tmp_path: Path, weights: Path) -> None:
    import shutil
    import signal
    import subprocess
    import sys

    d = tmp_path / "many"
    d.mkdir()
    first = _digit_png(d / f"{0:05d}-{'x' * 40}.png")
    for k in range(1, 4000):  # far more output than a pipe holds: predict is still busy
        shutil.copyfile(first, d / f"{k:05d}-{'x' * 40}.png")
    cmd = [sys.executable, "-m", "mnist_infer", "predict", "-j", "2", "--weights", str(weights)]
    proc = subprocess.Popen(
        [*cmd, str(d)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, as a terminal's Ctrl-C reaches
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith(bytes(d))  # the workers are under way
    os.killpg(proc.pid, signal.SIGINT)  # the whole group, workers included
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert err == b"Error: interrupted\n"


def test_batch_size_beyond_the_files_allocates_only_what_it_uses(
    tmp_path: Path, weights: Path
) -> None:
    d = tmp_path / "many"
    d.mkdir()
    pngs = [_digit_png(tmp_path / f"k{k}.png", k).read_bytes() for k in range(3)]
    for i in range(1100):  # past the first buffer of 1024 rows, so the buffer grows
        (d / f"{i:04d}.png").write_bytes(pngs[i % 3])
    small = invoke(weights, "-j", "1", "--batch-size", "7", str(d))
    huge = invoke(weights, "-j", "1", "--batch-size", "1000000000", str(d))
    assert small.exit_code == huge.exit_code == 0
    assert len(_lines(huge.stdout)) == 1100
    assert huge.stdout == small.stdout


# --- bad input: each in a batch between two good files -------------------------------------


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_header(width: int, height: int) -> bytes:
    """A PNG that claims to be width x height (only its first bytes exist)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 16)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


def _truncated_png(p: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200), np.uint8)).save(
        buf, "PNG"
    )
    p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])


def _truncated_jpeg(p: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200), np.uint8)).save(
        buf, "JPEG"
    )
    p.write_bytes(buf.getvalue()[:-500])


BAD = {
    "not-an-image": (
        "notes.txt",
        lambda p: p.write_text("hello"),
        "not an image (expected PNG, JPEG, BMP, GIF, TIFF or WebP)",
    ),
    # A pattern: Pillow's own words follow in brackets.
    "truncated-png": ("t.png", _truncated_png, r"truncated or corrupt image \(.+\)"),
    "truncated-jpeg": ("t.jpg", _truncated_jpeg, r"truncated or corrupt image \(.+\)"),
    "empty": ("e.png", lambda p: p.write_bytes(b""), "empty file"),
    "missing": ("nothing-here.png", lambda p: None, "no such file or directory"),
    "file-as-folder": (
        "d.png/x.png",
        lambda p: _digit_png(p.parent.parent / "d.png"),
        "cannot read (Not a directory)",
    ),
    "blank": (
        "white.png",
        lambda p: Image.new("RGB", (40, 30), (255, 255, 255)).save(p),
        "no digit found (blank or single-colour image)",
    ),
    "single-colour": (
        "grey.jpg",
        lambda p: Image.new("RGB", (40, 30), (120, 130, 140)).save(p),
        "no digit found (blank or single-colour image)",
    ),
    "not-a-number": (
        "nan.tif",
        lambda p: Image.fromarray(np.full((30, 30), np.nan, np.float32), "F").save(p),
        "900 of 900 pixels are not numbers (NaN or infinite), expected finite brightness values",
    ),
    "too-large": (
        "huge.png",
        lambda p: p.write_bytes(_png_header(10_000, 6_000)),
        "image too large (60,000,000 pixels; the limit is 50,000,000 pixels); scale it down or crop"
        " it to the digit first",
    ),
    "far-too-large": (
        "bomb.png",
        lambda p: p.write_bytes(_png_header(20_000, 20_000)),
        "image too large (400,000,000 pixels; the limit is 50,000,000 pixels); scale it down or"
        " crop it to the digit first",
    ),
    "folder-without-images": (
        "empty-folder",
        lambda p: (p.mkdir(), (p / "readme.txt").write_text("x")),
        f"no image files in folder (looked for {FOLDER_KINDS})",
    ),
    "images-only-in-subfolders": (
        "outer",
        lambda p: ((p / "inner").mkdir(parents=True), _digit_png(p / "inner" / "a.png")),
        f"no image files in folder (looked for {FOLDER_KINDS}); add --recursive to look in"
        " subfolders",
    ),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_input_in_a_batch(case: str, tmp_path: Path, weights: Path) -> None:
    name, make, what = BAD[case]
    bad = tmp_path / name
    make(bad)
    good = [_digit_png(tmp_path / "good1.png", 0), _digit_png(tmp_path / "good2.png", 1)]
    res = invoke(weights, str(good[0]), str(bad), str(good[1]))
    assert res.exit_code == 5
    message = f"Error: {bad}: {what}\n"
    if case.startswith("truncated"):
        assert re.fullmatch(f"Error: {re.escape(str(bad))}: {what}\n", res.stderr)
    else:
        assert res.stderr == message
    assert [line.split("  ")[0] for line in _lines(res.stdout)] == [str(g) for g in good]


def _run_unprivileged(args: list[str]) -> tuple[int, str, str]:
    """Run the CLI as an unprivileged user: as root (which reads any file), in a child
    process that first drops to user `nobody`."""
    if os.geteuid() != 0:
        res = CliRunner().invoke(cli, args)
        return res.exit_code, res.stdout, res.stderr
    CliRunner().invoke(cli, args)  # as root first, so the child has every module imported
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        try:
            os.close(read)
            os.setgid(65534)
            os.setuid(65534)
            res = CliRunner().invoke(cli, args)
            os.write(write, json.dumps([res.exit_code, res.stdout, res.stderr]).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    code, out, err = json.loads(data)
    return code, out, err


def test_unreadable_file_and_folder(weights: Path) -> None:
    import shutil
    import tempfile

    # A folder other users may enter (pytest's tmp_path is private to its owner).
    d = Path(tempfile.mkdtemp(prefix="mnist-infer-test-"))
    try:
        d.chmod(0o755)
        w = Path(shutil.copy(weights, d / "w.pkl"))
        good = _digit_png(d / "good.png")
        secret = _digit_png(d / "secret.png")
        hidden = d / "hidden"
        hidden.mkdir()
        _digit_png(hidden / "a.png")
        for p in (w, good):
            p.chmod(0o644)
        secret.chmod(0)
        hidden.chmod(0)
        args = ["predict", "--weights", str(w), str(secret), str(hidden), str(good)]
        code, out, err = _run_unprivileged(args)
    finally:
        hidden.chmod(0o755)
        shutil.rmtree(d)
    assert code == 5
    assert err == (
        f"Error: {secret}: permission denied\n"
        f"Error: {hidden}: cannot list folder (permission denied)\n"
    )
    assert _lines(out)[0].startswith(f"{good}  ")


def test_no_preprocess_needs_28x28(tmp_path: Path, weights: Path) -> None:
    big = tmp_path / "big.png"
    Image.new("L", (56, 56)).save(big)
    good = _digit_png(tmp_path / "good.png")
    res = invoke(weights, "--no-preprocess", str(big), str(good))
    assert res.exit_code == 5
    assert res.stderr == (
        f"Error: {big}: is 56x56, --no-preprocess needs 28x28 (drop --no-preprocess to resize)\n"
    )
    assert len(_lines(res.stdout)) == 1


@pytest.mark.parametrize("fmt", ["GIF", "TIFF"])
def test_first_frame_of_animated_or_multipage(fmt: str, tmp_path: Path, weights: Path) -> None:
    p = tmp_path / f"anim.{fmt.lower()}"
    frames = [Image.fromarray(_digit(k)) for k in (2, 0, 1)]
    frames[0].save(p, fmt, save_all=True, append_images=frames[1:])
    first, other = _digit_png(tmp_path / "first.png", 2), _digit_png(tmp_path / "other.png", 0)
    res = invoke(weights, str(p), str(other))
    assert res.exit_code == 0
    assert res.stderr == f"Note: {p}: 3 frames (animated or multi-page); using the first\n"
    lines = _lines(res.stdout)
    expected = _lines(invoke(weights, str(first), str(other)).stdout)
    assert lines[0].split("  ")[1:] == expected[0].split("  ")[1:]
    assert lines[1] == expected[1]


def test_missing_weights(tmp_path: Path) -> None:
    res = CliRunner().invoke(
        cli, ["predict", "--weights", str(tmp_path / "no.pkl"), str(_digit_png(tmp_path / "a.png"))]
    )
    assert res.exit_code == 5
    assert res.stderr.startswith("Error: ")
    assert res.stdout == ""


# --- real digits ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def default_weights() -> Path:
    p = default_weights_path(check=False)
    if not p.is_file():
        pytest.skip(f"no shipped default weights at {p}")
    return p


def test_mnist_files_predict_as_with_no_preprocess(
    real_mnist_dir: Path, default_weights: Path, tmp_path: Path
) -> None:
    x, _ = real_test_set(real_mnist_dir)
    d = tmp_path / "mnist"
    d.mkdir()
    for i in range(300):
        Image.fromarray(x[i].reshape(28, 28)).save(d / f"{i:04d}.png")
    pre = _lines(
        invoke(default_weights, str(d), "--save-preprocessed", str(tmp_path / "seen")).stdout
    )
    raw = _lines(invoke(default_weights, str(d), "--no-preprocess").stdout)
    assert len(pre) == len(raw) == 300
    agree = np.mean([a.split("  ")[1] == b.split("  ")[1] for a, b in zip(pre, raw, strict=True)])
    assert agree >= 0.99
    seen = np.stack(
        [np.asarray(Image.open(tmp_path / "seen" / f"{i:04d}.png")) for i in range(300)]
    )
    assert np.abs(seen.astype(int) - x[:300].reshape(-1, 28, 28)).mean() < 0.1


def test_photo_of_a_handwritten_digit(
    real_mnist_dir: Path, default_weights: Path, tmp_path: Path
) -> None:
    from test_image import photo

    x, t = real_test_set(real_mnist_dir)
    probs = _probabilities(default_weights, x[:50])
    # Digits the network knows well in MNIST form; the photo must not change the answer.
    chosen = [i for i in range(50) if probs[i].argmax() == t[i] and probs[i].max() > 0.95][:8]
    r = np.random.default_rng(11)
    for i in chosen:
        p = tmp_path / f"photo{i}.jpg"
        p.write_bytes(photo(x[i].reshape(28, 28), r).getvalue())
        res = invoke(default_weights, "--show", str(p))
        assert res.exit_code == 0
        head, *art = res.stdout.split("\n")
        assert re.fullmatch(rf"{re.escape(str(p))}  {t[i]}  [01]\.\d{{3}}", head)
        ramp = " .:-=+*#%@"
        ink = np.array([[ramp.index(c) for c in row[::2]] for row in art[:28]], float)
        cy = (ink.sum(1) @ np.arange(28)) / ink.sum()
        cx = (ink.sum(0) @ np.arange(28)) / ink.sum()
        assert abs(cy - 14) < 1
        assert abs(cx - 14) < 1
