"""What `mnist-infer train` prints: epoch lines or JSON lines; a closed pipe never costs the
weights."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from click.testing import CliRunner
from conftest import pinned_command

from mnist_infer.cli import cli
from mnist_infer.weights import file_sha256, read_metadata

SMALL = ["--epochs", "3", "--batch-size", "10", "--val-size", "10", "--hidden", "8"]


def test_json_lines_each_epoch_then_the_weights(filled, tmp_path: Path) -> None:
    out = tmp_path / "w.pkl"
    res = CliRunner().invoke(cli, ["train", *SMALL, "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    records = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r.get("epoch") for r in records] == [1, 2, 3, None]
    for r in records[:3]:
        assert set(r) == {
            *("epoch", "epochs", "loss", "train_accuracy", "val_accuracy"),
            *("images_per_second", "seconds"),
        }
        assert r["epochs"] == 3
    meta = read_metadata(out)
    assert meta is not None
    assert records[-1] == {
        "weights": str(out),
        "metadata": f"{out}.json",
        "weights_sha256": file_sha256(out),
        "architecture": "784-8-10",
        "epochs": 3,
        "final_loss": records[2]["loss"],
        "final_val_accuracy": records[2]["val_accuracy"],
        "test_accuracy": meta["test_accuracy"],
    }
    assert res.stderr == f"Saved {out} (metadata in {out}.json)\n"


def test_json_quiet_prints_only_the_weights_record(filled, tmp_path: Path) -> None:
    out = tmp_path / "w.pkl"
    res = CliRunner().invoke(cli, ["train", *SMALL, "--out", str(out), "--json", "-q"])
    assert res.exit_code == 0, res.output
    (record,) = [json.loads(line) for line in res.stdout.splitlines()]
    assert record["weights"] == str(out)
    assert res.stderr == ""


def _train_into_a_pipe(filled, tmp_path: Path, reader: str) -> subprocess.CompletedProcess:
    out = tmp_path / "w.pkl"
    cmd = [*pinned_command(Path(os.environ["MNIST_INFER_CACHE"])), "train", *SMALL]
    return subprocess.run(
        ["sh", "-c", f'"$@" | {reader}', "sh", *cmd, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_reader_that_stops_early_still_gets_the_weights_saved(filled, tmp_path: Path) -> None:
    res = _train_into_a_pipe(filled, tmp_path, "head -1")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("epoch 1/3  loss ")
    assert res.stdout.count("\n") == 1
    out = tmp_path / "w.pkl"
    assert read_metadata(out)["weights_sha256"] == file_sha256(out)
    assert sorted(p.name for p in tmp_path.glob("w.*")) == ["w.pkl", "w.pkl.json"]  # no checkpoint


def test_a_pipe_closed_before_the_first_line_costs_nothing(filled, tmp_path: Path) -> None:
    """Every write fails (the reader is gone before training starts): the weights are saved,
    the exit is quiet and 0, as after `| head -1`."""
    read, write = os.pipe()
    os.close(read)
    cmd = [*pinned_command(Path(os.environ["MNIST_INFER_CACHE"])), "train", *SMALL]
    out = tmp_path / "w.pkl"
    try:
        res = subprocess.run(
            [*cmd, "--out", str(out)], stdout=write, stderr=subprocess.PIPE, text=True, timeout=120
        )
    finally:
        os.close(write)
    assert res.returncode == 0, res.stderr
    assert res.stderr == f"Saved {out} (metadata in {out}.json)\n"
    assert read_metadata(out)["weights_sha256"] == file_sha256(out)
