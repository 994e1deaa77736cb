"""Training the MLP by backpropagation: mini-batches, optimizers, checkpoints, metadata."""

from __future__ import annotations

import itertools
import json
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mnist_infer.errors import (
    Interrupted,
    OutputExistsError,
    TrainingDiverged,
    UsageError,
    WeightsError,
)
from mnist_infer.functions import cross_entropy_error
from mnist_infer.network import Network
from mnist_infer.optimizers import OPTIMIZERS, Optimizer

if TYPE_CHECKING:
    from numpy.typing import NDArray

DEFAULT_LR = {"sgd": 0.1, "momentum": 0.05, "adam": 0.003}
MAX_HIDDEN = 100_000  # 784 x 100,000 float32 weights are already 314 MB


@dataclass(frozen=True)
class TrainOptions:
    """Everything that decides the trained weights (stored in the metadata)."""

    hidden: tuple[int, ...] = (50, 100)
    epochs: int = 20
    batch_size: int = 100
    lr: float | None = None
    optimizer: str = "adam"
    weight_decay: float = 0.0
    seed: int = 0
    augment: bool = False
    val_size: int = 5000
    ink_augment: bool = False  # also stroke width, slant and low resolution
    calibrate: bool = True  # fold a temperature fitted on the validation images into the output

    @property
    def rate(self) -> float:
        """The base learning rate: --lr, else the optimizer's default."""
        return DEFAULT_LR[self.optimizer] if self.lr is None else self.lr

    def check(self) -> None:
        """Raise UsageError for values training cannot use."""
        if self.optimizer not in OPTIMIZERS:
            raise UsageError(
                f"unknown optimizer {self.optimizer!r} (expected one of {', '.join(OPTIMIZERS)})"
            )
        if not self.hidden or not 1 <= min(self.hidden) <= max(self.hidden) <= MAX_HIDDEN:
            raise UsageError(
                f"hidden layer sizes must be between 1 and {MAX_HIDDEN:,}, found {self.hidden}"
            )
        if self.epochs < 1 or self.batch_size < 1:
            raise UsageError("epochs and batch size must be at least 1")
        if not (math.isfinite(self.rate) and self.rate > 0):
            raise UsageError(f"learning rate must be a positive number, found {self.rate}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise UsageError(
                f"weight decay must be 0 or a positive number, found {self.weight_decay}"
            )
        if self.seed < 0:
            raise UsageError(f"seed must not be negative, found {self.seed}")
        if self.val_size < 0:
            raise UsageError(f"validation size must not be negative, found {self.val_size}")

    def check_size(self, n: int) -> None:
        """Raise UsageError unless n images leave a batch for training after validation."""
        if self.batch_size > n:
            raise UsageError(
                f"batch size must be at most {n} (the training images), found {self.batch_size}"
            )
        if self.val_size > n - self.batch_size:
            raise UsageError(
                f"validation size must be at most {n - self.batch_size} (the {n} training images"
                f" minus one batch of {self.batch_size}), found {self.val_size}"
            )


@dataclass
class EpochStats:
    """One line of the training log."""

    epoch: int
    loss: float
    train_accuracy: float
    val_accuracy: float | None
    images_per_second: float
    seconds: float


@dataclass
class TrainResult:
    """What a finished run produced."""

    path: Path
    params: dict[str, NDArray[np.float32]]
    history: list[EpochStats] = field(default_factory=list)
    test_accuracy: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def init_params(sizes: Sequence[int], rng: np.random.Generator) -> dict[str, NDArray[np.float32]]:
    """Xavier-initialised float32 weights (suits sigmoid) and zero biases."""
    p: dict[str, NDArray[np.float32]] = {}
    for i, (m, n) in enumerate(itertools.pairwise(sizes), 1):
        p[f"W{i}"] = (rng.standard_normal((m, n)) / np.sqrt(m)).astype(np.float32)
        p[f"b{i}"] = np.zeros(n, np.float32)
    return p


def checkpoint_paths(out: Path) -> tuple[Path, Path]:
    """Checkpoint files beside out: weights (usable with --weights) and training state."""
    return out.with_name(out.name + ".ckpt.npz"), out.with_name(out.name + ".ckpt-state.npz")


def cosine(lr: float, step: int, total: int) -> float:
    """Learning rate decayed from lr to 0 along half a cosine over total steps."""
    return lr * 0.5 * (1 + np.cos(np.pi * min(step, total) / total))


class _Run:
    """Mutable training state: what a checkpoint saves and --resume restores."""

    def __init__(self, opts: TrainOptions, sizes: list[int]) -> None:
        self.opts = opts
        self.rng = np.random.default_rng([opts.seed, 2])
        self.net = Network(init_params(sizes, self.rng))
        self.opt: Optimizer = OPTIMIZERS[opts.optimizer](opts.rate, opts.weight_decay)
        self.epoch = 0  # completed epochs
        self.batch = 0  # completed batches in the current epoch
        self.perm: NDArray[np.intp] | None = None
        self.history: list[EpochStats] = []
        self.partial = [0.0, 0, 0, 0.0]  # this epoch so far: loss sum, hits, images, seconds
        self.clean = True  # False while a batch or an epoch's end is half done
        self.saved: tuple[int, int] | None = None  # (epoch, batch) of the checkpoint on disk

    def save(self, out: Path, data_hashes: dict[str, str]) -> tuple[Path, Path]:
        """Write both checkpoint files atomically.

        The state file holds the weights too, so it alone is what --resume reads: a stop
        between the two writes cannot pair the weights of one moment with the state of another.
        """
        from mnist_infer.files import atomic_write
        from mnist_infer.weights import save_weights

        wpath, spath = checkpoint_paths(out)
        meta = {
            "checkpoint": True,
            "epochs_completed": self.epoch,
            "batches_in_epoch": self.batch,
            "options": asdict(self.opts),
            "data_sha256": data_hashes,
        }
        save_weights(self.net.params, wpath, meta)
        state = {
            "epoch": self.epoch,
            "batch": self.batch,
            "step": self.opt.step,
            "partial": self.partial,
            "rng": self.rng.bit_generator.state,
            "options": asdict(self.opts),
            "history": [asdict(h) for h in self.history],
        }
        arrays: dict[str, Any] = {"opt." + k: v for k, v in self.opt.state.items()}
        arrays |= {"net." + k: v for k, v in self.net.params.items()}
        arrays["perm"] = np.asarray(self.perm if self.perm is not None else [], np.intp)
        arrays["state"] = np.array(json.dumps(state))
        atomic_write(spath, lambda f: np.savez(f, **arrays))
        self.saved = (self.epoch, self.batch)
        return wpath, spath

    def restore(self, out: Path) -> None:
        """Load the checkpoint beside out; its options must match the current ones."""
        import zipfile

        from mnist_infer.checks import check_params

        wpath, spath = checkpoint_paths(out)
        if not spath.is_file():
            what = (
                f"the checkpoint's training state {spath} is missing ({wpath} alone, usable"
                " with --weights, cannot resume)"
                if wpath.is_file()
                else f"no checkpoint {wpath}"
            )
            raise UsageError(f"cannot resume: {what}; run without --resume to start afresh")
        try:
            with np.load(spath, allow_pickle=False) as z:
                state = json.loads(str(z["state"]))
                perm = z["perm"]
                opt_state = {k[4:]: z[k] for k in z.files if k.startswith("opt.")}
                params = {k[4:]: z[k] for k in z.files if k.startswith("net.")}
            check_params(params, str(spath))
            options = state["options"]
            saved = TrainOptions(**{**options, "hidden": tuple(options["hidden"])})
            step, epoch, batch = int(state["step"]), int(state["epoch"]), int(state["batch"])
            history = [EpochStats(**h) for h in state["history"]]
            rng = state["rng"]
            loss_sum, hits, seen, secs = state["partial"]
            partial = [float(loss_sum), int(hits), int(seen), float(secs)]
        except (
            OSError,
            EOFError,
            ValueError,
            KeyError,
            TypeError,
            zipfile.BadZipFile,
            WeightsError,
        ):
            raise WeightsError(
                f"cannot resume: {spath} is not a valid training state (corrupt or written by"
                " another version); run without --resume to start afresh"
            ) from None
        changed = _diff(saved, self.opts)
        if changed:  # the same options, so the run ends as it would have without the stop
            raise UsageError(
                f"cannot resume: {spath} was written with other options ({changed});"
                " run with the same options as before"
            )
        self.net = Network(params)
        self.opt.state = dict(opt_state)
        self.opt.step = step
        self.rng.bit_generator.state = rng
        self.epoch, self.batch = epoch, batch
        self.perm = perm if perm.size else None
        self.history = history
        self.partial = partial
        self.saved = (epoch, batch)


def _diff(a: TrainOptions, b: TrainOptions) -> str:
    """The options that differ, as `name: old then, new now`; lr as the rate in effect."""
    da, db = asdict(a) | {"lr": a.rate}, asdict(b) | {"lr": b.rate}
    return ", ".join(f"{k}: {da[k]} then, {db[k]} now" for k in da if da[k] != db[k])


def train(
    opts: TrainOptions,
    out: Path,
    *,
    cache_dir: Path | None = None,
    mirrors: Sequence[str] | None = None,
    force: bool = False,
    resume: bool = False,
    progress: bool = False,
    on_epoch: Callable[[EpochStats], object] | None = None,
    evaluate_test: bool = True,
    on_note: Callable[[str], object] | None = None,
    quiet: bool | None = None,
) -> TrainResult:
    """Train a 784-…-10 sigmoid MLP on the training split and save it to out with metadata.

    The validation images are held out from the training split (the test split is used only
    to report accuracy after training). Ctrl-C saves a checkpoint and raises Interrupted.
    `on_note` is told where a resumed run continues; unless quiet (default: not progress),
    a first-use download says so on standard error.
    """
    from mnist_infer.catalog import data_hashes
    from mnist_infer.dataset import load_arrays
    from mnist_infer.files import writable_folder
    from mnist_infer.weights import PICKLE_SUFFIXES, file_sha256, save_weights

    opts.check()
    out = Path(out)
    if out.suffix.lower() not in (*PICKLE_SUFFIXES, ".npz"):
        raise UsageError(f"cannot save weights as {out}: unknown suffix (use .pkl or .npz)")
    if out.exists() and not force:
        raise OutputExistsError(f"{out} exists; pass --force to overwrite it")
    writable_folder(out.parent)  # now, not after the first epoch
    quiet = not progress if quiet is None else quiet
    images, labels = load_arrays("train", cache_dir, mirrors=mirrors, quiet=quiet)
    if evaluate_test:  # fetched now: a missing test split must not cost a finished run
        x_test, t_test = load_arrays("test", cache_dir, mirrors=mirrors, quiet=quiet)
    opts.check_size(len(images))
    hashes = data_hashes("train")
    split = np.random.default_rng([opts.seed, 1]).permutation(len(images))
    tr, va = split[: len(images) - opts.val_size], split[len(images) - opts.val_size :]
    x_val, t_val = images[va], labels[va]

    run = _Run(opts, [images.shape[1], *opts.hidden, 10])
    if resume:
        run.restore(out)
    n, bs = len(tr), opts.batch_size
    per_epoch = -(-n // bs)  # the last batch may be smaller
    if resume and on_note is not None:
        at = f"epoch {run.epoch + 1} of {opts.epochs}, after batch {run.batch}/{per_epoch}"
        if run.epoch >= opts.epochs:
            at = f"the end of epoch {run.epoch} (all epochs done)"
        on_note(f"resuming from the checkpoint {checkpoint_paths(out)[1]} at {at}")
    total = opts.epochs * per_epoch
    try:
        with _deferred_interrupt() as stop:
            while run.epoch < opts.epochs:
                stats = _epoch(
                    run, images, labels, tr, per_epoch, total, x_val, t_val, stop, progress
                )
                run.clean = False
                run.history.append(stats)
                run.epoch, run.batch, run.perm = run.epoch + 1, 0, None
                run.partial = [0.0, 0, 0, 0.0]
                run.clean = True
                if on_epoch is not None:
                    on_epoch(stats)
                run.save(out, hashes)
    except KeyboardInterrupt:
        raise _interrupted(run, out, hashes, per_epoch) from None

    params = {k: v.copy() for k, v in run.net.params.items()}
    temperature = None
    if opts.calibrate and len(x_val):  # confidence that means what it says
        temperature = fit_temperature(run.net.logits(x_val * np.float32(1 / 255)), t_val)
        last = len(run.net.sizes) - 1
        for k in (f"W{last}", f"b{last}"):
            params[k] = (params[k] / np.float32(temperature)).astype(np.float32)
        run.net = Network(params)
    result = TrainResult(path=out, params=params, history=run.history)
    if evaluate_test:
        pred, _ = run.net.classify(x_test, 1000)
        result.test_accuracy = float(np.mean(pred == t_test))
    meta: dict[str, Any] = {
        "architecture": "-".join(map(str, run.net.sizes)),
        "activation": "sigmoid",
        "options": asdict(opts) | {"lr": opts.rate},
        "data_sha256": hashes,
        "train_images": int(n),
        "val_images": int(opts.val_size),
        "epochs": run.epoch,
        "final_val_accuracy": run.history[-1].val_accuracy,
        "final_loss": run.history[-1].loss,
        "test_accuracy": result.test_accuracy,
        "temperature": temperature,
    }
    save_weights(params, out, meta)
    meta["weights_sha256"] = file_sha256(out)
    save_weights(params, out, meta)  # same bytes again, now with the hash in the sidecar
    result.metadata = meta
    for p in checkpoint_paths(out):
        p.unlink(missing_ok=True)
        p.with_name(p.name + ".json").unlink(missing_ok=True)
    return result


def fit_temperature(logits: NDArray[np.floating], labels: NDArray[np.integer]) -> float:
    """The T in [0.25, 20] that minimises the cross-entropy of softmax(logits / T) here.

    Dividing the last layer's weights and bias by T then calibrates the network without
    changing a single prediction or the file format.
    """
    z = np.asarray(logits, np.float64)
    t = np.asarray(labels, np.intp)

    def nll(log_t: float) -> float:
        s = z / math.exp(log_t)
        s -= s.max(axis=1, keepdims=True)
        return float(np.mean(np.log(np.exp(s).sum(axis=1)) - s[np.arange(len(t)), t]))

    # Golden-section search (nll is unimodal in log T); sharpening more than 4-fold is not
    # trusted: a validation set the network gets all right would ask for T -> 0.
    lo, hi = math.log(0.25), math.log(20.0)
    g = (math.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = nll(a), nll(b)
    for _ in range(60):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = nll(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = nll(b)
    return round(math.exp((lo + hi) / 2), 6)


def _epoch(
    run: _Run,
    images: NDArray[np.uint8],
    labels: NDArray[np.uint8],
    tr: NDArray[np.intp],
    per_epoch: int,
    total: int,
    x_val: NDArray[np.uint8],
    t_val: NDArray[np.uint8],
    stop: Callable[[], bool],
    progress: bool,
) -> EpochStats:
    """One pass over the shuffled training images; resumes mid-epoch from run.batch.

    Raises KeyboardInterrupt between two batches once stop() says Ctrl-C was pressed, so a
    checkpoint never holds half an update.
    """
    from mnist_infer.augment import augment, low_resolution, stroke_width

    opts, net = run.opts, run.net
    bs = opts.batch_size
    if run.perm is None:
        run.perm = run.rng.permutation(tr)
    bar = _bar(run.epoch, opts.epochs, per_epoch, run.batch) if progress else None
    t0 = time.perf_counter()
    loss_sum, hits, seen, before = run.partial
    scale = np.float32(1 / 255)
    try:
        while run.batch < per_epoch:
            if stop():
                raise KeyboardInterrupt
            run.clean = False
            idx = run.perm[run.batch * bs : (run.batch + 1) * bs]
            if opts.ink_augment:
                x = augment(images[idx], run.rng, rotate=12.0, scale=0.1, shear=0.35)
                x = low_resolution(stroke_width(x, run.rng), run.rng)
            elif opts.augment:
                x = augment(images[idx], run.rng)
            else:
                x = images[idx].astype(np.float32)
            x *= scale
            t = labels[idx]
            with np.errstate(over="ignore", invalid="ignore"):  # divergence is caught below
                grads = net.gradient(x, t)
            y = net.last.y
            assert y is not None
            loss = cross_entropy_error(y, t)
            if not math.isfinite(loss):
                raise _diverged(run, run.batch + 1, per_epoch, f"the loss became {loss}")
            loss_sum += loss * len(t)
            hits += int(np.sum(y.argmax(axis=1) == t))
            seen += len(t)
            step = run.epoch * per_epoch + run.batch
            with np.errstate(over="ignore", invalid="ignore"):
                run.opt.update(net.params, grads, cosine(opts.rate, step, total))
            run.batch += 1
            run.partial = [loss_sum, hits, seen, before + time.perf_counter() - t0]
            run.clean = True
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()  # also on Ctrl-C, so the message that follows starts on a clean line
    secs = before + time.perf_counter() - t0
    if not all(np.isfinite(v).all() for v in net.params.values()):
        raise _diverged(run, per_epoch, per_epoch, "the weights are no longer finite")
    val = None
    if len(x_val):
        pred, _ = net.classify(x_val, 1000)
        val = float(np.mean(pred == t_val))
    return EpochStats(
        epoch=run.epoch + 1,
        loss=loss_sum / max(seen, 1),
        train_accuracy=hits / max(seen, 1),
        val_accuracy=val,
        images_per_second=seen / secs if secs > 0 else 0.0,
        seconds=secs,
    )


def _interrupted(run: _Run, out: Path, hashes: dict[str, str], per_epoch: int) -> Interrupted:
    """Save a checkpoint if the state is whole, and say how to go on."""
    where = f"interrupted in epoch {run.epoch + 1} after batch {run.batch}/{per_epoch}"
    if run.clean:
        with _ignoring_interrupts():  # a checkpoint half written is worse than a short wait
            wpath, spath = run.save(out, hashes)
        return Interrupted(
            f"{where}; checkpoint saved to {wpath} (usable with --weights) and {spath};"
            " run the same command with --resume to continue"
        )
    # A second Ctrl-C stopped a batch halfway: some weights were updated and some not.
    where += " (a second Ctrl-C stopped the next batch halfway, so nothing was saved)"
    if run.saved is None:
        return Interrupted(f"{where}; run the same command to start again")
    e, b = run.saved
    return Interrupted(
        f"{where}; the checkpoint from epoch {e + 1} after batch {b}/{per_epoch} is still"
        f" there: run the same command with --resume to continue from it"
    )


@contextmanager
def _ignoring_interrupts() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def _diverged(run: _Run, batch: int, per_epoch: int, what: str) -> TrainingDiverged:
    o = run.opts
    decay = f" or --weight-decay (now {o.weight_decay:g})" if o.weight_decay else ""
    return TrainingDiverged(
        f"training diverged in epoch {run.epoch + 1} at batch {batch}/{per_epoch}:"
        f" {what}; try a lower --lr (now {o.rate:g}){decay}"
    )


@contextmanager
def _deferred_interrupt() -> Iterator[Callable[[], bool]]:
    """Hold a first Ctrl-C until the training loop asks (a second one stops at once)."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False  # signal handlers can only be set in the main thread
        return
    pressed: list[int] = []

    def handler(signum: int, frame: object) -> None:
        if pressed:
            raise KeyboardInterrupt
        pressed.append(signum)

    old = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: bool(pressed)
    finally:
        signal.signal(signal.SIGINT, old)


def _bar(epoch: int, epochs: int, per_epoch: int, done: int) -> Any:
    from tqdm import tqdm

    return tqdm(
        total=per_epoch,
        initial=done,
        desc=f"epoch {epoch + 1}/{epochs}",
        unit="batch",
        leave=False,
    )


def format_epoch(s: EpochStats, epochs: int) -> str:
    """One summary line per epoch."""
    val = "   -  " if s.val_accuracy is None else f"{s.val_accuracy:.4f}"
    return (
        f"epoch {s.epoch:>{len(str(epochs))}}/{epochs}  loss {s.loss:.4f}"
        f"  train {s.train_accuracy:.4f}  val {val}"
        f"  {s.images_per_second:,.0f} img/s  {s.seconds:.1f} s"
    )
