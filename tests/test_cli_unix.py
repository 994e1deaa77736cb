"""The command line as a Unix tool: JSON everywhere, quiet pipes, notes on stderr, none silent."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner, Result
from conftest import pin_cache, pinned_command
from loopback import MiniMnist
from PIL import Image

from mnist_infer import catalog
from mnist_infer.cli import cli
from mnist_infer.novelty import DEFAULT_RULE
from mnist_infer.train import TrainOptions, checkpoint_paths, train

TEST_IMAGES, TEST_LABELS = "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"


def run(*args: str, **kw: object) -> Result:
    return CliRunner().invoke(cli, list(args), **kw)  # type: ignore[arg-type]


def _digit_png(path: Path, k: int = 0) -> Path:
    a = np.zeros((28, 28), np.uint8)
    a[4 + k : 24, 12 : 16 + k] = 255
    Image.fromarray(a).save(path)
    return path


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


@pytest.fixture
def mini_files(mini_mnist: MiniMnist, monkeypatch: pytest.MonkeyPatch) -> MiniMnist:
    """Pin the generated files' hashes in place of the real ones."""
    monkeypatch.setattr(catalog, "FILES", mini_mnist.files)
    return mini_mnist


# --- JSON on every command that reports -------------------------------------------------


def test_info_json(weights: Path) -> None:
    res = run("info", "--json", str(weights))
    assert res.exit_code == 0, res.output
    assert res.stderr == ""
    assert json.loads(res.stdout) == {
        "path": str(weights),
        "format": "pickle",
        "layers": [784, 30, 20, 10],
        "shapes": {
            "W1": [784, 30],
            "b1": [30],
            "W2": [30, 20],
            "b2": [20],
            "W3": [20, 10],
            "b3": [10],
        },
        "dtypes": ["float32"],
        "parameters": 784 * 30 + 30 + 30 * 20 + 20 + 20 * 10 + 10,
        "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
        "not_a_digit": DEFAULT_RULE.as_dict(),
        "metadata": None,
        "metadata_error": None,
    }


def test_download_json(mini_files: MiniMnist, cache_dir: Path) -> None:
    args = ["download", "--json", "--split", "test", "--mirror", str(mini_files.folder)]
    specs = {f.name: f for f in mini_files.files}
    first, again = run(*args), run(*args)
    assert (first.exit_code, again.exit_code) == (0, 0)
    for res, status in ((first, "fetched"), (again, "verified")):
        records = _json_lines(res.stdout)
        assert [r["name"] for r in records] == [TEST_IMAGES, TEST_LABELS]
        for r in records:
            assert r["status"] == status
            assert r["bytes"] == specs[r["name"]].size
            assert r["sha256"] == specs[r["name"]].sha256
    assert [r["source"] for r in _json_lines(first.stdout)] == [
        str(mini_files.folder / f"{n}.gz") for n in (TEST_IMAGES, TEST_LABELS)
    ]
    assert _json_lines(again.stdout)[0]["source"] == str(cache_dir / TEST_IMAGES)


def test_download_json_reports_the_failure_and_what_was_not_tried(
    mini_files: MiniMnist, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    res = run("download", "--json", "--split", "test", "--mirror", str(empty))
    assert res.exit_code == 3
    failed, skipped = _json_lines(res.stdout)
    error = res.stderr.removeprefix("Error: ").removesuffix("\n")
    assert failed == {"name": TEST_IMAGES, "status": "failed", "error": error, "exit_code": 3}
    assert skipped == {"name": TEST_LABELS, "status": "skipped"}


def test_show_json(filled: MiniMnist, tmp_path: Path) -> None:
    res = run("show", "--json", "--index", "3", "--count", "2", "--out", str(tmp_path))
    assert res.exit_code == 0, res.output
    labels = filled.arrays[TEST_LABELS]
    assert _json_lines(res.stdout) == [
        {
            "path": str(tmp_path / f"test-{i:05d}-label{labels[i]}.png"),
            "split": "test",
            "index": i,
            "label": int(labels[i]),
        }
        for i in (3, 4)
    ]


def test_show_json_with_art_keeps_stdout_json(filled: MiniMnist, tmp_path: Path) -> None:
    res = run("show", "--json", "--art", "--count", "1", "--out", str(tmp_path))
    assert len(_json_lines(res.stdout)) == 1
    assert len(res.stderr.splitlines()) == 29  # 28 rows and a blank line


def test_predict_json_has_one_record_per_input_in_order(tmp_path: Path, weights: Path) -> None:
    good = [str(_digit_png(tmp_path / f"d{k}.png", k)) for k in range(2)]
    missing = str(tmp_path / "missing.png")
    res = run("predict", "--weights", str(weights), "--json", good[0], missing, good[1])
    assert res.exit_code == 5
    records = _json_lines(res.stdout)
    assert [r["path"] for r in records] == [good[0], missing, good[1]]
    assert records[1] == {"path": missing, "error": "no such file or directory", "exit_code": 5}
    fields = ["confidence", "digit", "guess", "is_digit", "path"]
    assert sorted(records[0]) == sorted(records[2]) == fields
    assert res.stderr == f"Error: {missing}: no such file or directory\n"


def test_predict_csv_has_an_error_column(tmp_path: Path, weights: Path) -> None:
    good = str(_digit_png(tmp_path / "d.png"))
    bad = tmp_path / "bad.png"
    bad.write_text("not a picture")
    res = run("predict", "--weights", str(weights), "--csv", "--top-k", "2", str(bad), good)
    assert res.exit_code == 5
    rows = list(csv.reader(io.StringIO(res.stdout)))
    assert rows[0] == [
        *("path", "digit", "confidence", "is_digit", "guess", "digit_2", "probability_2", "error")
    ]
    why = "not an image (expected PNG, JPEG, BMP, GIF, TIFF or WebP)"
    assert rows[1] == [str(bad), "", "", "", "", "", "", why]
    assert rows[2][0] == good
    assert rows[2][-1] == ""
    assert all(rows[2][2:7])  # the digit is empty if the image does not read as one


# --- --min-confidence ---------------------------------------------------------------------


@pytest.fixture
def two_answers(tmp_path: Path, weights: Path) -> tuple[list[str], list[float]]:
    """Two digit files and the confidence of each answer, from plain --json."""
    paths = [str(_digit_png(tmp_path / f"d{k}.png", k)) for k in range(2)]
    res = run("predict", "--weights", str(weights), "--json", *paths)
    return paths, [r["confidence"] for r in _json_lines(res.stdout)]


def test_min_confidence_marks_unsure_answers(
    weights: Path, two_answers: tuple[list[str], list[float]]
) -> None:
    paths, conf = two_answers
    threshold = (conf[0] + conf[1]) / 2
    assert conf[0] != conf[1]
    unsure = [c < threshold for c in conf]
    base = [
        "predict",
        "--weights",
        str(weights),
        "--accept-all",
        "--min-confidence",
        str(threshold),
    ]
    text = run(*base, *paths).stdout.splitlines()
    assert [line.endswith("  unsure") for line in text] == unsure
    assert [len(line.split("  ")) for line in text] == [4 if u else 3 for u in unsure]
    records = _json_lines(run(*base, "--json", *paths).stdout)
    assert [r["unsure"] for r in records] == unsure
    rows = list(csv.reader(io.StringIO(run(*base, "--csv", *paths).stdout)))
    assert rows[0] == ["path", "digit", "confidence", "is_digit", "guess", "unsure", "error"]
    assert [r[5] for r in rows[1:]] == ["true" if u else "false" for u in unsure]
    top = run(*base, "--top-k", "2", *paths).stdout.splitlines()
    assert [line.endswith("  unsure") for line in top] == unsure


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("-0.1", "-0.1 is not in the range 0<=x<=1."),
        ("1.5", "1.5 is not in the range 0<=x<=1."),
        ("nan", "nan is not a number between 0 and 1"),
        ("high", "'high' is not a valid float range."),
    ],
)
def test_min_confidence_must_be_between_0_and_1(
    value: str, why: str, tmp_path: Path, weights: Path
) -> None:
    res = run("predict", "--weights", str(weights), "--min-confidence", value, str(tmp_path))
    assert res.exit_code == 2
    assert res.stdout == ""
    assert res.stderr.splitlines()[-1] == f"Error: Invalid value for '--min-confidence': {why}"


# --- a closed standard output ends any command quietly ------------------------------------


def _closed_pipe_run(args: list[str], env: dict[str, str] | None = None) -> tuple[int, bytes]:
    """Run the CLI with standard output a pipe whose reader has already gone."""
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run(
            # The test's cache (filled or empty) with its files pinned, as in-process runs see it.
            [*pinned_command(Path(os.environ["MNIST_INFER_CACHE"])), *args],
            stdout=write,
            stderr=subprocess.PIPE,
            timeout=60,
            env=env,
        )
    finally:
        os.close(write)
    return proc.returncode, proc.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["predict", "--help"],
        ["info", "{weights}"],
        ["info", "--json", "{weights}"],
        ["predict", "--weights", "{weights}", "{folder}"],
        ["predict", "--weights", "{weights}", "--json", "{folder}"],
        ["predict", "--weights", "{weights}", "--csv", "{folder}"],
        ["show", "--count", "5", "--out", "{out}"],
        ["show", "--json", "--count", "5", "--out", "{out}"],
        ["evaluate", "--weights", "{weights}"],
        ["evaluate", "--weights", "{weights}", "--json"],
        ["evaluate", "--weights", "{weights}", "--quiet"],
    ],
    ids=lambda a: " ".join(a).replace("{", "").replace("}", ""),
)
def test_closed_stdout_ends_quietly(
    args: list[str], filled: MiniMnist, tmp_path: Path, weights: Path
) -> None:
    folder = tmp_path / "digits"
    folder.mkdir()
    for k in range(3):
        _digit_png(folder / f"d{k}.png", k)
    where = {"weights": str(weights), "folder": str(folder), "out": str(tmp_path / "out")}
    code, err = _closed_pipe_run([a.format(**where) for a in args])
    assert (code, err) == (0, b"")


@pytest.mark.parametrize("fmt", [[], ["--json"], ["--csv"]])
def test_predict_into_head_stops_quietly_with_worker_processes(
    fmt: list[str], tmp_path: Path, weights: Path
) -> None:
    folder = tmp_path / "digits"
    folder.mkdir()
    digit = _digit_png(tmp_path / "d.png").read_bytes()
    for i in range(700):  # enough for worker processes and more than a pipe's buffer
        (folder / f"{i:04d}-{'x' * 60}.png").write_bytes(digit)
    cmd = [sys.executable, "-m", "mnist_infer", "predict", "--weights", str(weights)]
    cmd += ["--top-k", "10", "--jobs", "2", *fmt, str(folder)]
    # The real thing: `mnist-infer predict DIR | head -1`, and the status of mnist-infer.
    shell = f'{" ".join(map(_quote, cmd))} | head -1; echo "status=${{PIPESTATUS[0]}}" >&2'
    res = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=60)
    assert len(res.stdout.splitlines()) == 1
    assert res.stderr == "status=0\n"


def _quote(s: str) -> str:
    import shlex

    return shlex.quote(s)


def test_show_into_head_with_real_digits(real_mnist_dir: Path, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "mnist_infer", "show", "--count", "5000", "-q"]
    cmd += ["--out", str(tmp_path / "d"), "--mirror", str(real_mnist_dir)]
    shell = f'{" ".join(map(_quote, cmd))} | head -1; echo "status=${{PIPESTATUS[0]}}" >&2'
    res = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=120)
    assert res.stdout == f"{tmp_path / 'd' / 'test-00000-label7.png'}\n"
    assert res.stderr == "status=0\n"


def test_other_broken_pipes_are_still_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    import mnist_infer.weights

    def describe(path: object) -> None:
        raise BrokenPipeError(32, "Broken pipe")  # e.g. from a worker, not from stdout

    monkeypatch.setattr(mnist_infer.weights, "describe", describe)
    monkeypatch.setattr("mnist_infer.commands.output._stdout_closed", lambda: False)
    res = run("info")
    assert res.exit_code == 1
    assert res.stderr == "Error: a pipe was closed by the other side ([Errno 32] Broken pipe)\n"


# --- data on stdout, notes on stderr, --quiet silences them --------------------------------


def test_show_past_the_end_says_so(filled: MiniMnist, tmp_path: Path) -> None:
    args = ["show", "--index", "48", "--count", "5", "--out", str(tmp_path)]
    res = run(*args)
    assert res.exit_code == 0
    assert len(res.stdout.splitlines()) == 2
    assert res.stderr == (
        "Note: the test split has 50 images, so --index 48 --count 5 wrote 2 (up to index 49)\n"
    )
    quiet = run(*args, "--quiet")
    assert (quiet.stdout, quiet.stderr) == (res.stdout, "")


def test_evaluate_limit_past_the_end_says_so(filled: MiniMnist, weights: Path) -> None:
    args = ["evaluate", "--weights", str(weights), "--limit", "20000"]
    res = run(*args)
    assert res.exit_code == 0
    assert res.stderr == (
        "Note: --limit 20,000 is more than the test split's 50 images; evaluated them all\n"
    )
    assert re.fullmatch(r"Accuracy: [01]\.\d{4} \(\d+/50\)", res.stdout.splitlines()[0])
    quiet = run(*args, "--quiet")
    assert quiet.stderr == ""
    assert re.fullmatch(r"Accuracy: [01]\.\d{4} \(\d+/50\)\n", quiet.stdout)


def test_evaluate_json_quiet_is_json_only(filled: MiniMnist, weights: Path, tmp_path: Path) -> None:
    args = ["evaluate", "--weights", str(weights), "--json", "--limit", "999"]
    loud = run(*args, "--report", str(tmp_path / "r"))
    assert json.loads(loud.stdout)["accuracy"] is not None
    assert loud.stderr == (
        "Note: --limit 999 is more than the test split's 50 images; evaluated them all\n"
        f"Wrote {tmp_path / 'r' / 'confusion.png'}\n"
        f"Wrote {tmp_path / 'r' / 'mistakes.png'}\n"
    )
    quiet = run(*args, "--quiet", "--report", str(tmp_path / "r"))
    assert quiet.stderr == ""
    assert json.loads(quiet.stdout) == json.loads(loud.stdout) | {
        k: json.loads(quiet.stdout)[k] for k in ("seconds", "images_per_second")
    }


def test_evaluate_says_mistakes_png_holds_only_the_first_100(
    real_mnist_dir: Path, reference_weights: Path, tmp_path: Path
) -> None:
    args = ["evaluate", "--weights", str(reference_weights), "--mirror", str(real_mnist_dir)]
    res = run(*args, "--quiet", "--report", str(tmp_path))
    assert res.stdout == "Accuracy: 0.9352 (9352/10000)\n"
    res = run(*args, "--report", str(tmp_path))
    assert (
        res.stderr.splitlines()[-1] == "Note: mistakes.png shows the first 100 of the 648 mistakes"
    )


@pytest.mark.parametrize("command", ["evaluate", "show", "train"])
def test_first_use_download_names_the_cache(
    command: str, mini_files: MiniMnist, cache_dir: Path, tmp_path: Path
) -> None:
    args = {
        "evaluate": ["evaluate", "--weights", "{weights}"],
        "show": ["show", "--count", "1", "--out", str(tmp_path / "out")],
        "train": ["train", "--epochs", "1", "--val-size", "10", "--batch-size", "10"],
    }[command]
    from mnist_infer.weights import save_weights

    rng = np.random.default_rng(0)
    w = tmp_path / "w0.pkl"
    sizes = (784, 50, 100, 10)
    save_weights(
        {
            **{
                f"W{i}": rng.normal(size=sizes[i - 1 : i + 1]).astype(np.float32) for i in (1, 2, 3)
            },
            **{f"b{i}": np.zeros(sizes[i], np.float32) for i in (1, 2, 3)},
        },
        w,
    )
    if command == "train":
        args += ["--out", str(tmp_path / "w.pkl")]
    args = [a.format(weights=w) for a in args] + ["--mirror", str(mini_files.folder)]
    res = run(*args)
    assert res.exit_code == 0, res.output
    notes = [line for line in res.stderr.splitlines() if "first use" in line]
    splits = ["train", "test"] if command == "train" else ["test"]
    assert notes == [
        f"Note: downloading the MNIST {s} split into {cache_dir} (first use)" for s in splits
    ]
    for p in cache_dir.glob("*-ubyte"):
        p.unlink()
    quiet = run(*args[:-2], "--quiet", "--force" if command == "train" else "--quiet", *args[-2:])
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stderr == ""


def _checkpointed(cache_dir: Path, out: Path, monkeypatch: pytest.MonkeyPatch) -> TrainOptions:
    """A run stopped by Ctrl-C after its first epoch, on blobs written into the cache."""
    from mnist_infer.errors import Interrupted
    from mnist_infer.idx import write_idx

    cache_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    for split, n in (("train", 300), ("t10k", 50)):
        write_idx(
            cache_dir / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), np.uint8)
        )
        write_idx(cache_dir / f"{split}-labels-idx1-ubyte", rng.integers(0, 10, n, np.uint8))
    pin_cache(cache_dir, monkeypatch)
    opts = TrainOptions(epochs=3, batch_size=50, val_size=100, hidden=(50, 100))

    def stop(stats: object) -> None:
        raise KeyboardInterrupt

    with pytest.raises(Interrupted):
        train(opts, out, cache_dir=cache_dir, on_epoch=stop)
    return opts


def test_train_resume_says_where_it_continues(
    cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "w.pkl"
    _checkpointed(cache_dir, out, monkeypatch)
    args = ["train", "--epochs", "3", "--batch-size", "50", "--val-size", "100"]
    res = run(*args, "--resume", "--out", str(out))
    assert res.exit_code == 0, res.output
    assert res.stderr == (
        f"Note: resuming from the checkpoint {checkpoint_paths(out)[1]} at epoch 2 of 3,"
        " after batch 0/4\n"
        f"Saved {out} (metadata in {out}.json)\n"
    )
    assert [line[:11] for line in res.stdout.splitlines()[:2]] == ["epoch 2/3  ", "epoch 3/3  "]


def test_predict_says_what_a_folder_scan_left_out(tmp_path: Path, weights: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    _digit_png(d / "a.png")
    (d / "notes.txt").write_text("x")
    (d / "README").write_text("x")
    (d / ".hidden.png").write_bytes(b"x")
    res = run("predict", "--weights", str(weights), str(d))
    assert res.exit_code == 0
    assert res.stderr == (f"Note: {d}: skipped 2 files without an image suffix and 1 hidden file\n")
    assert run("predict", "--weights", str(weights), "-q", str(d)).stderr == ""


# --- environment variables and help --------------------------------------------------------


def test_weights_from_the_environment(
    tmp_path: Path, weights: Path, filled: MiniMnist, monkeypatch: pytest.MonkeyPatch
) -> None:
    digit = str(_digit_png(tmp_path / "d.png"))
    given = [
        run("predict", "--weights", str(weights), digit),
        run("evaluate", "--weights", str(weights), "-q"),
        run("info", str(weights)),
    ]
    monkeypatch.setenv("MNIST_INFER_WEIGHTS", str(weights))
    from_env = [run("predict", digit), run("evaluate", "-q"), run("info")]
    assert [r.stdout for r in from_env] == [r.stdout for r in given]
    assert all(r.exit_code == 0 for r in from_env)


@pytest.mark.parametrize("name", ["download", "evaluate", "info", "predict", "show", "train"])
def test_help_has_examples_exit_codes_and_env_vars(name: str) -> None:
    command = cli.commands[name]
    text = " ".join(run(name, "--help").stdout.split())
    assert "Examples: mnist-infer " + name in text
    assert "Exit codes: 0 ok" in text
    options = {o for p in command.params if isinstance(p, click.Option) for o in p.opts}
    for option, var in (
        ("--weights", "MNIST_INFER_WEIGHTS"),
        ("--mirror", "MNIST_INFER_MIRRORS"),
        ("--cache-dir", "MNIST_INFER_CACHE"),
    ):
        assert (f"[env var: {var}]" in text) == (option in options), (option, var)


def test_command_list_reads_as_sentences() -> None:
    text = run("--help").stdout
    listing = text[text.index("Commands:") :].splitlines()[1:]
    assert len(listing) == len(cli.commands)
    for line in listing:
        summary = line.split(None, 1)[1]
        assert re.fullmatch(r"[A-Z][^.]*(\.[^.]+)*\.", summary), line  # whole, not cut off


@pytest.mark.parametrize(
    ("shell", "marker"),
    [("bash", "_mnist_infer_completion"), ("zsh", "#compdef mnist-infer"), ("fish", "complete")],
)
def test_shell_completion_script(shell: str, marker: str) -> None:
    env = os.environ | {"_MNIST_INFER_COMPLETE": f"{shell}_source"}
    res = subprocess.run(
        [sys.executable, "-c", "from mnist_infer.cli import main; main()"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode == 0
    assert marker in res.stdout


# --- leaving without the interpreter's teardown -----------------------------------------


def test_quick_exit_keeps_every_line_and_the_status(tmp_path: Path, weights: Path) -> None:
    """The whole output reaches a pipe, exit handlers run, the status is the command's."""
    folder = tmp_path / "digits"
    folder.mkdir()
    digit = _digit_png(tmp_path / "d.png").read_bytes()
    for i in range(600):  # worker processes, and more output than a pipe holds
        (folder / f"{i:04d}.png").write_bytes(digit)
    (folder / "9999.png").write_bytes(b"not an image")
    hook = tmp_path / "hook"
    hook.mkdir()  # an exit handler, registered before the tool starts, must still run
    (hook / "sitecustomize.py").write_text(
        "import atexit, sys\natexit.register(lambda: sys.stderr.write('handler ran\\n'))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(hook)}
    cmd = [sys.executable, "-m", "mnist_infer", "predict", "--weights", str(weights), "--json"]
    res = subprocess.run(
        [*cmd, str(folder)], capture_output=True, text=True, env=env, timeout=120, check=False
    )
    records = _json_lines(res.stdout)
    assert len(records) == 601
    assert records[-1]["exit_code"] == 5
    assert res.returncode == 5
    assert res.stderr.splitlines()[-1] == "handler ran"


def test_quick_exit_leaves_the_normal_way_while_another_thread_runs() -> None:
    import threading

    from mnist_infer.cli import _quick_exit

    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        assert _quick_exit(SystemExit(0)) is None  # returned: the caller re-raises
    finally:
        stop.set()
        t.join()


def test_quick_exit_leaves_the_normal_way_for_a_message() -> None:
    from mnist_infer.cli import _quick_exit

    assert _quick_exit(SystemExit("not a number")) is None
