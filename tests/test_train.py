from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import pin_cache, pinned_command

from mnist_infer.cli import cli
from mnist_infer.errors import (
    Interrupted,
    NetworkError,
    OutputExistsError,
    TrainingDiverged,
    UsageError,
)
from mnist_infer.idx import write_idx
from mnist_infer.network import Network
from mnist_infer.train import TrainOptions, checkpoint_paths, fit_temperature, train
from mnist_infer.weights import file_sha256, load_weights, read_metadata, save_weights


def _blobs(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A learnable stand-in for MNIST: each class is a bright square at its own place, jittered."""
    labels = rng.integers(0, 10, n).astype(np.uint8)
    img = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
    for i, c in enumerate(labels):
        r, k = 3 + 5 * (c // 5) * 2 + rng.integers(-1, 2), 2 + 5 * (c % 5) + rng.integers(-1, 2)
        img[i, r : r + 6, k : k + 4] = 230
    return img, labels


@pytest.fixture
def blob_cache(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache folder holding generated train and test splits."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    for split, n in (("train", 1200), ("t10k", 300)):
        x, t = _blobs(n, rng)
        write_idx(cache_dir / f"{split}-images-idx3-ubyte", x)
        write_idx(cache_dir / f"{split}-labels-idx1-ubyte", t)
    pin_cache(cache_dir, monkeypatch)
    return cache_dir


def _opts(**kw: object) -> TrainOptions:
    base: dict[str, object] = {"epochs": 3, "batch_size": 50, "val_size": 200, "hidden": (50, 100)}
    return TrainOptions(**(base | kw))  # type: ignore[arg-type]


@pytest.mark.parametrize(("optimizer", "lr"), [("sgd", 2.0), ("momentum", 0.2), ("adam", 0.01)])
def test_training_learns(blob_cache: Path, tmp_path: Path, optimizer: str, lr: float) -> None:
    opts = _opts(optimizer=optimizer, lr=lr, epochs=5, batch_size=20)
    res = train(opts, tmp_path / "w.pkl", cache_dir=blob_cache)
    losses = [h.loss for h in res.history]
    assert losses[-1] < losses[0] * 0.5
    assert res.history[-1].val_accuracy is not None
    assert res.history[-1].val_accuracy > 0.9  # chance is 0.1
    assert res.test_accuracy is not None
    assert res.test_accuracy > 0.9


def test_output_is_a_textbook_dict_with_metadata(blob_cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "w.pkl"
    res = train(_opts(augment=True), out, cache_dir=blob_cache)
    params = load_weights(out)
    assert sorted(params) == ["W1", "W2", "W3", "b1", "b2", "b3"]
    assert [params[f"W{i}"].shape for i in (1, 2, 3)] == [(784, 50), (50, 100), (100, 10)]
    assert all(a.dtype == np.float32 for a in params.values())
    meta = read_metadata(out)
    assert meta is not None
    assert meta["architecture"] == "784-50-100-10"
    assert meta["weights_sha256"] == file_sha256(out)
    assert meta["test_accuracy"] == res.test_accuracy
    assert meta["options"]["augment"] is True
    assert meta["epochs"] == 3
    assert len(meta["data_sha256"]) == 2
    assert not any(p.exists() for p in checkpoint_paths(out))


def test_temperature_is_fitted_on_validation_and_folded_into_the_last_layer(
    blob_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # one label in five wrong: the network cannot be sure, and must not say it is
    r = np.random.default_rng(8)
    x, t = _blobs(1200, r)
    flip = r.random(len(t)) < 0.2
    t[flip] = (t[flip] + 1) % 10
    write_idx(blob_cache / "train-images-idx3-ubyte", x)
    write_idx(blob_cache / "train-labels-idx1-ubyte", t)
    pin_cache(blob_cache, monkeypatch)
    out = tmp_path / "w.pkl"
    res = train(_opts(epochs=8), out, cache_dir=blob_cache)
    meta = read_metadata(out)
    assert meta is not None
    t = meta["temperature"]
    assert 0.25 < t < 20
    # the folded last layer gives the lowest validation loss among nearby temperatures
    from mnist_infer.dataset import load_arrays

    images, labels = load_arrays("train", blob_cache)
    split = np.random.default_rng([0, 1]).permutation(len(images))
    va = split[len(images) - 200 :]
    x, y = images[va] / np.float32(255), labels[va]

    def loss(f: float) -> float:
        p = {k: v.copy() for k, v in res.params.items()}
        p["W3"] *= np.float32(f)
        p["b3"] *= np.float32(f)
        return Network(p).loss(x, y)

    assert loss(1.0) < min(loss(0.8), loss(1.25))
    assert t != 1.0


@pytest.mark.parametrize("opts", [{"val_size": 0}, {"calibrate": False}])
def test_no_validation_or_no_calibrate_no_temperature(
    blob_cache: Path, tmp_path: Path, opts: dict
) -> None:
    out = tmp_path / "w.pkl"
    res = train(_opts(**opts), out, cache_dir=blob_cache)
    meta = read_metadata(out)
    assert meta is not None
    assert meta["temperature"] is None
    assert meta["options"]["calibrate"] is (opts.get("calibrate", True))
    if "calibrate" in opts:  # the same run calibrated differs only by T in the last layer
        cal = train(_opts(), tmp_path / "b.pkl", cache_dir=blob_cache)
        t = cal.metadata["temperature"]
        for k in ("W1", "b1", "W2", "b2"):
            np.testing.assert_array_equal(cal.params[k], res.params[k])
        for k in ("W3", "b3"):
            np.testing.assert_allclose(cal.params[k] * t, res.params[k], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("scale", [0.3, 1.0, 4.0])
def test_fit_temperature_finds_the_temperature_that_made_the_labels(scale: float) -> None:
    r = np.random.default_rng(1)
    logits = r.normal(0, 3, (4000, 10))
    p = np.exp(logits / scale)
    p /= p.sum(1, keepdims=True)
    labels = np.array([r.choice(10, p=row) for row in p])
    assert fit_temperature(logits, labels) == pytest.approx(scale, rel=0.1)


@pytest.mark.parametrize(
    "aug", [{}, {"augment": True}, {"ink_augment": True}, {"ink_augment": True, "outliers": 0.5}]
)
def test_same_seed_same_weights(blob_cache: Path, tmp_path: Path, aug: dict) -> None:
    a = train(_opts(**aug), tmp_path / "a.npz", cache_dir=blob_cache)
    b = train(_opts(**aug), tmp_path / "b.npz", cache_dir=blob_cache)
    c = train(_opts(**aug, seed=1), tmp_path / "c.npz", cache_dir=blob_cache)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    assert not np.array_equal(a.params["W1"], c.params["W1"])


def test_refuses_to_overwrite(blob_cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "w.pkl"
    out.write_bytes(b"keep me")
    with pytest.raises(OutputExistsError, match="exists; pass --force"):
        train(_opts(), out, cache_dir=blob_cache)
    assert out.read_bytes() == b"keep me"
    train(_opts(epochs=1), out, cache_dir=blob_cache, force=True)
    assert load_weights(out)["W1"].shape == (784, 50)


@pytest.mark.parametrize("more", [{}, {"augment": True, "outliers": 0.3}])
def test_interrupt_saves_checkpoint_and_resume_matches(
    blob_cache: Path, tmp_path: Path, more: dict
) -> None:
    full = train(_opts(epochs=3, **more), tmp_path / "full.pkl", cache_dir=blob_cache)

    def stop_after_first(stats: object) -> None:
        raise KeyboardInterrupt

    out = tmp_path / "w.pkl"
    with pytest.raises(Interrupted, match=r"checkpoint saved to .*--resume"):
        train(_opts(epochs=3, **more), out, cache_dir=blob_cache, on_epoch=stop_after_first)
    wpath, spath = checkpoint_paths(out)
    assert load_weights(wpath)["W1"].shape == (784, 50)  # a usable weights file
    assert spath.is_file()
    assert not out.exists()
    res = train(_opts(epochs=3, **more), out, cache_dir=blob_cache, resume=True)
    assert [h.epoch for h in res.history] == [1, 2, 3]
    for k in full.params:
        np.testing.assert_array_equal(full.params[k], res.params[k])


def test_resume_needs_a_checkpoint(blob_cache: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot resume: no checkpoint"):
        train(_opts(), tmp_path / "w.pkl", cache_dir=blob_cache, resume=True)


@pytest.fixture
def interrupted(blob_cache: Path, tmp_path: Path) -> Path:
    """--out of a run (the _opts defaults) stopped by Ctrl-C after its first epoch."""

    def stop(stats: object) -> None:
        raise KeyboardInterrupt

    out = tmp_path / "w.pkl"
    with pytest.raises(Interrupted):
        train(_opts(), out, cache_dir=blob_cache, on_epoch=stop)
    return out


@pytest.mark.parametrize(
    ("changed", "message"),
    [
        ({"seed": 5}, "seed: 0 then, 5 now"),
        ({"epochs": 1}, "epochs: 3 then, 1 now"),  # it would stop past its last epoch
        ({"epochs": 4}, "epochs: 3 then, 4 now"),  # the learning rate schedule would jump
        ({"lr": 0.01}, "lr: 0.003 then, 0.01 now"),  # the rate in effect, not None
    ],
)
def test_resume_refuses_other_options(
    blob_cache: Path, interrupted: Path, changed: dict[str, object], message: str
) -> None:
    out = interrupted
    with pytest.raises(UsageError) as err:
        train(_opts(**changed), out, cache_dir=blob_cache, resume=True)
    assert str(err.value) == (
        f"cannot resume: {checkpoint_paths(out)[1]} was written with other options ({message});"
        " run with the same options as before"
    )
    assert not out.exists()


def test_resume_takes_the_default_rate_given_explicitly(
    blob_cache: Path, interrupted: Path
) -> None:
    out = interrupted
    res = train(_opts(lr=0.003), out, cache_dir=blob_cache, resume=True)
    assert [h.epoch for h in res.history] == [1, 2, 3]


def _zero_weights(p: Path) -> None:
    save_weights({k: np.zeros_like(v) for k, v in load_weights(p).items()}, p)


@pytest.mark.parametrize("spoil", [_zero_weights, Path.unlink])
def test_resume_reads_the_state_alone(
    blob_cache: Path, interrupted: Path, tmp_path: Path, spoil: Callable[[Path], object]
) -> None:
    # A stop between the two writes leaves weights of another moment beside the state; the
    # state holds its own copy, so the run still ends as an uninterrupted one. The weights
    # half is for --weights: resuming does not need it.
    out = interrupted
    spoil(checkpoint_paths(out)[0])
    res = train(_opts(), out, cache_dir=blob_cache, resume=True)
    full = train(_opts(), tmp_path / "full.pkl", cache_dir=blob_cache)
    for k in full.params:
        np.testing.assert_array_equal(full.params[k], res.params[k])
    assert not any(p.exists() for p in checkpoint_paths(out))


def test_resume_names_the_missing_half_of_a_checkpoint(blob_cache: Path, interrupted: Path) -> None:
    out = interrupted
    wpath, spath = checkpoint_paths(out)
    spath.unlink()
    with pytest.raises(UsageError) as err:
        train(_opts(), out, cache_dir=blob_cache, resume=True)
    assert str(err.value) == (
        f"cannot resume: the checkpoint's training state {spath} is missing ({wpath} alone,"
        " usable with --weights, cannot resume); run without --resume to start afresh"
    )


def _stop_at_step(monkeypatch: pytest.MonkeyPatch, stop: int) -> None:
    """A Ctrl-C inside batch `stop` (counted from 0 over all epochs), as a second press makes."""
    from mnist_infer import train as train_module

    cosine = train_module.cosine

    def interrupted_at(lr: float, step: int, total: int) -> float:
        if step == stop:  # the gradients are computed, the weights not yet updated
            raise KeyboardInterrupt
        return cosine(lr, step, total)

    monkeypatch.setattr(train_module, "cosine", interrupted_at)


def test_a_ctrl_c_inside_a_batch_keeps_the_last_whole_checkpoint(
    blob_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    full = train(_opts(), tmp_path / "full.pkl", cache_dir=blob_cache)
    out = tmp_path / "w.pkl"
    _stop_at_step(monkeypatch, 20 + 6)  # 1000 training images in batches of 50: 20 per epoch
    with pytest.raises(Interrupted) as err:
        train(_opts(), out, cache_dir=blob_cache)
    assert str(err.value) == (
        "interrupted in epoch 2 after batch 6/20 (a second Ctrl-C stopped the next batch"
        " halfway, so nothing was saved); the checkpoint from epoch 2 after batch 0/20 is still"
        " there: run the same command with --resume to continue from it"
    )
    monkeypatch.undo()
    pin_cache(blob_cache, monkeypatch)  # undone too
    res = train(_opts(), out, cache_dir=blob_cache, resume=True)
    for k in full.params:
        np.testing.assert_array_equal(full.params[k], res.params[k])


def test_a_ctrl_c_inside_the_first_batches_saves_nothing(
    blob_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "w.pkl"
    _stop_at_step(monkeypatch, 3)
    with pytest.raises(Interrupted) as err:
        train(_opts(), out, cache_dir=blob_cache)
    assert str(err.value) == (
        "interrupted in epoch 1 after batch 3/20 (a second Ctrl-C stopped the next batch"
        " halfway, so nothing was saved); run the same command to start again"
    )
    assert sorted(tmp_path.iterdir()) == [blob_cache]


def test_the_last_smaller_batch_is_used(
    blob_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mnist_infer.backprop import Backprop

    sizes: list[int] = []
    gradient = Backprop.gradient

    def recording(self: Backprop, x: np.ndarray, t: np.ndarray, k: int = 0) -> tuple:
        sizes.append(len(x))
        return gradient(self, x, t, k)

    monkeypatch.setattr(Backprop, "gradient", recording)
    train(_opts(epochs=2, batch_size=300), tmp_path / "w.pkl", cache_dir=blob_cache)
    assert sizes == [300, 300, 300, 100] * 2  # 1000 training images


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[:-50])


def _without_options(p: Path) -> None:
    np.savez(p, perm=np.arange(3), state=np.array(json.dumps({"epoch": 1})))


@pytest.mark.parametrize("spoil", [_truncate, _without_options, lambda p: p.write_bytes(b"")])
def test_resume_from_a_spoilt_state(interrupted: Path, spoil: Callable[[Path], object]) -> None:
    out = interrupted
    _, spath = checkpoint_paths(out)
    spoil(spath)
    args = ["train", "--epochs", "3", "--batch-size", "50", "--val-size", "200", "--resume"]
    res = CliRunner().invoke(cli, [*args, "--out", str(out)])
    assert res.exit_code == 5
    assert res.output == (
        f"Error: cannot resume: {spath} is not a valid training state (corrupt or written by"
        " another version); run without --resume to start afresh\n"
    )


def test_val_size_too_large(blob_cache: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="validation size must be at most 1150"):
        train(_opts(val_size=1151), tmp_path / "w.pkl", cache_dir=blob_cache)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--out", "{d}/w.txt"],
            "cannot save weights as {d}/w.txt: unknown suffix (use .pkl or .npz)",
        ),
        (
            ["--val-size", "1200"],
            "validation size must be at most 1150 (the 1200 training images minus one batch"
            " of 50), found 1200",
        ),
        (
            ["--batch-size", "2000"],
            "batch size must be at most 1200 (the training images), found 2000",
        ),
        (
            ["--resume"],
            "cannot resume: no checkpoint {d}/w.pkl.ckpt.npz; run without --resume to start afresh",
        ),
        (["--lr", "inf"], "learning rate must be a positive number, found inf"),
        (["--lr", "nan"], "learning rate must be a positive number, found nan"),
        (["--weight-decay", "nan"], "weight decay must be 0 or a positive number, found nan"),
        (
            ["--hidden", "50,99999999999999999999"],
            "hidden layer sizes must be between 1 and 100,000, found (50, 99999999999999999999)",
        ),
    ],
)
def test_cli_train_errors(blob_cache: Path, tmp_path: Path, args: list[str], message: str) -> None:
    base = ["train", "--batch-size", "50", "--val-size", "100", "--out", str(tmp_path / "w.pkl")]
    res = CliRunner().invoke(cli, base + [a.format(d=tmp_path) for a in args])
    assert res.exit_code == 2
    assert res.output == f"Error: {message.format(d=tmp_path)}\n"
    assert list(tmp_path.glob("w.*")) == []


def test_cli_train_and_info(blob_cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "w.npz"
    args = ["train", "--epochs", "2", "--batch-size", "50", "--val-size", "100", "--out", str(out)]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0].startswith("epoch 1/2  loss ")
    assert "img/s" in lines[1]
    assert re.fullmatch(r"Test accuracy: [01]\.\d{4}", lines[2])
    assert res.stderr == f"Saved {out} (metadata in {out}.json)\n"  # status, not data
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 1
    assert again.output == f"Error: {out} exists; pass --force to overwrite it\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--hidden", "50,x"], "expected comma-separated integers"),
        (["--hidden", "0"], "layer sizes must be positive"),
        (["--epochs", "0"], "0 is not in the range x>=1"),
        (["--lr", "0"], "0.0 is not in the range x>0"),
        (["--seed", "-1"], "-1 is not in the range x>=0"),
        (["--optimizer", "rmsprop"], "'rmsprop' is not one of"),
        (["--outliers", "-0.5"], "-0.5 is not in the range 0<=x<=10"),
        (["--outliers", "11"], "11.0 is not in the range 0<=x<=10"),
    ],
)
def test_cli_train_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    res = CliRunner().invoke(cli, ["train", "--out", str(tmp_path / "w.pkl"), *args])
    assert res.exit_code == 2
    assert message in res.output


def test_ctrl_c_in_a_real_process(blob_cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "w.pkl"
    cmd = [*pinned_command(blob_cache), "train", "--epochs", "200", "--out", str(out)]
    cmd += ["--batch-size", "50", "--val-size", "100"]
    env = os.environ | {"MNIST_INFER_CACHE": str(blob_cache)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    first = proc.stdout.readline()  # wait until training is under way
    assert re.match(r"epoch +1/200  loss ", first)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err.startswith("Error: interrupted in epoch ")
    wpath, _ = checkpoint_paths(out)
    assert load_weights(wpath)["W3"].shape == (100, 10)
    meta = json.loads(wpath.with_name(wpath.name + ".json").read_text())
    assert meta["checkpoint"] is True
    assert meta["epochs_completed"] >= 1
    used = CliRunner().invoke(cli, ["evaluate", "-q", "--weights", str(wpath), "--limit", "50"])
    assert used.exit_code == 0, used.output
    assert re.fullmatch(r"Accuracy: [01]\.\d{4} \(\d+/50\)\n", used.output)


def test_ctrl_c_clears_the_progress_bar_first(blob_cache: Path, tmp_path: Path) -> None:
    import fcntl
    import pty
    import struct
    import termios

    out = tmp_path / "w.pkl"
    cmd = [*pinned_command(blob_cache), "train", "--epochs", "200", "--out", str(out)]
    cmd += ["--batch-size", "1", "--val-size", "100"]  # long epochs: Ctrl-C lands mid-epoch
    env = os.environ | {"MNIST_INFER_CACHE": str(blob_cache)}
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=slave, env=env)
    os.close(slave)
    text = ""
    while not re.search(r"\| *[1-9]\d*/1100 ", text):  # the bar is moving
        text += os.read(master, 4096).decode()
    proc.send_signal(signal.SIGINT)
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        text += chunk.decode()
    os.close(master)
    assert proc.wait(timeout=60) == 130
    screen_lines = re.split(r"[\r\n]", text)
    assert any(line.startswith("Error: interrupted in epoch ") for line in screen_lines), text


def test_real_ctrl_c_mid_epoch_then_resume_equals_an_uninterrupted_run(
    blob_cache: Path, tmp_path: Path
) -> None:
    opts = _opts(epochs=4, batch_size=2, val_size=100, augment=True)
    full = train(opts, tmp_path / "full.pkl", cache_dir=blob_cache)
    out = tmp_path / "w.pkl"
    cmd = [*pinned_command(blob_cache), "train", "--epochs", "4", "--batch-size", "2"]
    cmd += ["--val-size", "100", "--augment", "--out", str(out)]
    env = os.environ | {"MNIST_INFER_CACHE": str(blob_cache)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    assert re.match(r"epoch 1/4  loss ", proc.stdout.readline())
    time.sleep(0.05)  # into the second epoch's 550 batches
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert re.match(r"Error: interrupted in epoch 2 after batch [1-9]\d*/550;", err), err
    res = train(opts, out, cache_dir=blob_cache, resume=True)
    for k in full.params:
        np.testing.assert_array_equal(full.params[k], res.params[k])
    # The interrupted epoch's statistics cover all its batches, before and after the stop.
    for a, b in zip(full.history, res.history, strict=True):
        assert (a.epoch, a.loss, a.train_accuracy, a.val_accuracy) == (
            b.epoch,
            b.loss,
            b.train_accuracy,
            b.val_accuracy,
        )


def test_unwritable_out_is_reported_before_training(blob_cache: Path, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    out = tmp_path / "f" / "w.pkl"
    res = CliRunner().invoke(cli, ["train", "--out", str(out)])
    assert res.exit_code == 1
    assert res.output == f"Error: cannot write to folder {out.parent}: {out.parent} is a file\n"


def test_missing_test_split_stops_before_training(blob_cache: Path, tmp_path: Path) -> None:
    for p in blob_cache.glob("t10k-*"):
        p.unlink()
    epochs: list[object] = []
    with pytest.raises(NetworkError):
        train(
            _opts(),
            tmp_path / "w.pkl",
            cache_dir=blob_cache,
            mirrors=[str(tmp_path / "no-mirror")],
            on_epoch=epochs.append,
        )
    assert epochs == []
    assert list(tmp_path.glob("w.*")) == []


@pytest.mark.usefixtures("no_write_access")
def test_folder_without_write_access_is_reported_before_training(
    blob_cache: Path, tmp_path: Path
) -> None:
    out = tmp_path / "w.pkl"
    res = CliRunner().invoke(cli, ["train", "--batch-size", "50", "--out", str(out)])
    assert res.exit_code == 1
    assert res.output == f"Error: cannot write to folder {tmp_path}: Permission denied\n"


@pytest.mark.parametrize(
    ("options", "advice"),
    [
        (["--weight-decay", "1e30"], r"--lr \(now 0.003\) or --weight-decay \(now 1e\+30\)"),
        (["--lr", "3e37"], r"--lr \(now 3e\+37\)"),
    ],
)
def test_divergence_stops_with_advice(
    blob_cache: Path, tmp_path: Path, options: list[str], advice: str
) -> None:
    out = tmp_path / "w.pkl"
    args = ["train", *options, "--batch-size", "50", "-q"]
    res = CliRunner().invoke(cli, [*args, "--val-size", "100", "--out", str(out)])
    assert res.exit_code == 1
    assert re.fullmatch(
        r"Error: training diverged in epoch 1 at batch \d+/22: (the loss became (nan|inf)|the"
        rf" weights are no longer finite); try a lower {advice}\n",
        res.output,
    ), res.output
    assert list(tmp_path.glob("w.*")) == []


def test_weights_that_stop_being_finite_stop_the_run(
    blob_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mnist_infer.optimizers import OPTIMIZERS, Adam

    class Overflowing(Adam):
        """Adam whose last update of the epoch leaves a weight infinite, unseen by the loss."""

        def update(self, params: dict, grads: dict, lr: float | None = None) -> None:
            super().update(params, grads, lr)
            if self.step == 20:  # (1200 - 200) // 50 batches
                params["W1"][0, 0] = np.inf

    monkeypatch.setitem(OPTIMIZERS, "adam", Overflowing)
    with pytest.raises(TrainingDiverged) as err:
        train(_opts(epochs=1), tmp_path / "w.pkl", cache_dir=blob_cache)
    assert str(err.value) == (
        "training diverged in epoch 1 at batch 20/20: the weights are no longer finite;"
        " try a lower --lr (now 0.003)"
    )
    assert list(tmp_path.glob("w.*")) == []


def test_options_refuse_a_negative_seed() -> None:
    with pytest.raises(UsageError) as err:
        _opts(seed=-1).check()
    assert str(err.value) == "seed must not be negative, found -1"


@pytest.mark.parametrize("outliers", [float("nan"), -1.0, 10.5])
def test_options_refuse_outliers_out_of_range(outliers: float) -> None:
    with pytest.raises(UsageError) as err:
        _opts(outliers=outliers).check()
    assert str(err.value) == (
        f"outliers must be between 0 and 10 non-digits per digit, found {outliers}"
    )


def test_outlier_exposure_is_recorded_with_the_rule(blob_cache: Path, tmp_path: Path) -> None:
    from mnist_infer.novelty import SCORES, rule_from_metadata

    out = tmp_path / "w.pkl"
    args = ["train", "--epochs", "3", "--batch-size", "50", "--val-size", "200"]
    res = CliRunner().invoke(cli, [*args, "--outliers", "0.5", "-q", "--out", str(out)])
    assert res.exit_code == 0, res.output
    meta = read_metadata(out)
    assert meta is not None
    assert meta["options"]["outliers"] == 0.5
    entry = meta["not_a_digit"]
    assert entry["score"] in SCORES
    assert (entry["val_digits"], entry["val_non_digits"]) == (200, 200)
    for k in ("val_digits_rejected", "val_augmented_digits_rejected", "val_non_digits_caught"):
        assert 0 <= entry[k] <= 1
    # the threshold rejects 0.75% of the 400 validation digits (plain and augmented): 3
    rejected = entry["val_digits_rejected"] + entry["val_augmented_digits_rejected"]
    assert rejected * 200 == pytest.approx(3)
    assert entry[f"auroc_{entry['score']}"] == max(entry[f"auroc_{k}"] for k in SCORES)
    rule = rule_from_metadata(meta)
    assert (rule.score, rule.threshold, rule.source) == (
        entry["score"],
        entry["threshold"],
        "weights",
    )


def test_no_validation_no_rule(blob_cache: Path, tmp_path: Path) -> None:
    res = train(_opts(val_size=0, epochs=1), tmp_path / "w.pkl", cache_dir=blob_cache)
    assert "not_a_digit" not in res.metadata
