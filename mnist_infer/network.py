"""The textbook's multi-layer perceptron: sigmoid hidden layers, softmax output."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from mnist_infer.checks import check_params
from mnist_infer.errors import UsageError
from mnist_infer.functions import softmax
from mnist_infer.layers import Affine, Layer, Sigmoid, SoftmaxWithLoss

if TYPE_CHECKING:
    from numpy.typing import ArrayLike, DTypeLike, NDArray

    Array = NDArray[np.floating]


class Network:
    """Affine -> Sigmoid -> ... -> Affine -> softmax, built from W1..Wn and b1..bn."""

    def __init__(
        self, params: Mapping[str, ArrayLike], dtype: DTypeLike = np.float32, *, copy: bool = True
    ) -> None:
        """copy=False adopts arrays that already are C-ordered `dtype` (e.g. freshly loaded)."""
        self.dtype = np.dtype(dtype)
        n = check_params(params, "network parameters", inputs=None, outputs=None, dtype=self.dtype)
        # Own C-ordered copies by default: training updates them in place through `params`.
        own = np.array if copy else np.asarray
        self.affines = [
            Affine(
                own(params[f"W{i}"], dtype=self.dtype, order="C"),
                own(params[f"b{i}"], dtype=self.dtype, order="C"),
            )
            for i in range(1, n + 1)
        ]
        self.layers: list[Layer] = []
        for a in self.affines:
            self.layers += [a, Sigmoid()]
        self.layers.pop()
        self.last = SoftmaxWithLoss()

    @property
    def params(self) -> dict[str, Array]:
        """The live parameter arrays W1..Wn, b1..bn (update them in place)."""
        out: dict[str, Array] = {}
        for i, a in enumerate(self.affines, 1):
            out[f"W{i}"] = a.params["W"]
            out[f"b{i}"] = a.params["b"]
        return out

    @property
    def sizes(self) -> list[int]:
        """Units per layer, inputs first, e.g. [784, 50, 100, 10]."""
        return [self.affines[0].params["W"].shape[0]] + [
            a.params["W"].shape[1] for a in self.affines
        ]

    def logits(self, x: ArrayLike) -> Array:
        """Scores before the softmax for inputs x (n, inputs)."""
        out = np.asarray(x, dtype=self.dtype)
        for layer in self.layers:
            out = layer.forward(out)
        return out

    def predict(self, x: ArrayLike) -> Array:
        """Class probabilities (n, classes) for inputs x (n, inputs) scaled to [0, 1]."""
        return self.last.forward(self.logits(x))

    def activations(self, x: ArrayLike, *, logits: bool = False) -> list[Array]:
        """Each hidden layer's sigmoid outputs, then the class probabilities (with logits=True
        the scores before the softmax), for inputs x.

        Unlike `predict` it keeps no state in the layers, so threads may call it at once.
        """
        out = np.asarray(x, dtype=self.dtype)
        acts = []
        with np.errstate(over="ignore"):  # exp(-a) = inf for very negative a: sigmoid 0
            for a in self.affines[:-1]:
                z = out @ a.params["W"]
                z += a.params["b"]
                np.negative(z, out=z)
                np.exp(z, out=z)
                z += 1
                out = np.reciprocal(z, out=z)  # 1 / (1 + exp(-a)), in place
                acts.append(out)
        last = self.affines[-1]
        scores = out @ last.params["W"] + last.params["b"]
        acts.append(scores if logits else softmax(scores))
        return acts

    def loss(self, x: ArrayLike, t: ArrayLike) -> float:
        """Mean cross-entropy against labels t (class indices or one-hot)."""
        return self.last.loss(self.logits(x), np.asarray(t))

    def gradient(self, x: ArrayLike, t: ArrayLike) -> dict[str, Array]:
        """Gradients of `loss` by backpropagation, keyed like `params`."""
        self.loss(x, t)
        dout = self.last.backward()
        for layer in reversed(self.layers):
            dout = layer.backward(dout)
        grads: dict[str, Array] = {}
        for i, a in enumerate(self.affines, 1):
            grads[f"W{i}"] = a.grads["W"]
            grads[f"b{i}"] = a.grads["b"]
        return grads

    def accuracy(self, x: ArrayLike, t: ArrayLike) -> float:
        """Share of inputs whose most probable class is the label (indices or one-hot)."""
        t = np.asarray(t)
        if t.ndim == 2:
            t = t.argmax(axis=1)
        return float(np.mean(self.predict(x).argmax(axis=1) == t))

    def classify(
        self,
        images: ArrayLike,
        batch_size: int = 100,
        on_batch: Callable[[int], object] | None = None,
        *,
        workers: int | None = None,
        energies: NDArray[np.float32] | None = None,
    ) -> tuple[NDArray[np.intp], NDArray[np.float32]]:
        """Most probable digit and its probability for uint8 images (n, inputs).

        The fast path of `predict(images / 255)`: batches of `batch_size` go through buffers
        reused across batches, shared out to `workers` threads (default: one per core if BLAS
        runs single-threaded, as `mnist-infer evaluate` sets it up; else one, and BLAS
        parallelises the products). Batches above 1000 images run in slices of 1000, which
        keeps the buffers in cache; the results are the same. `on_batch(count)` is called
        after each batch or slice. `energies`, if given (n floats), receives each image's
        logsumexp of the logits, the score novelty.energy computes.
        """
        x = np.asarray(images)
        d = self.sizes[0]
        if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != d:
            raise UsageError(
                f"classify needs uint8 images of shape (n, {d}), found {x.dtype} {x.shape}"
            )
        if batch_size < 1:
            raise UsageError(f"batch size must be at least 1, found {batch_size}")
        n = len(x)
        if energies is not None and energies.shape != (n,):
            raise UsageError(f"energies must have shape ({n},), found {energies.shape}")
        labels = np.empty(n, dtype=np.intp)
        conf = np.empty(n, dtype=np.float32)
        if n == 0:
            return labels, conf
        bs = min(batch_size, n, _MAX_ROWS)
        fwd = _Forward(self.affines, self.dtype)
        if workers is None:
            # A multi-threaded BLAS parallelises the products itself: threads of our own would
            # compete with its threads, which keep spinning for a while after each call.
            big = n >= _MIN_PARALLEL_ROWS and bs >= _MIN_PARALLEL_BATCH
            workers = _cpus() if big and _blas.threads() == 1 else 1
        if workers > 1 and not _blas.limit():
            workers = 1  # BLAS threads of unknown number would compete with ours
        # Threads take batches from one shared queue, so a slow thread takes fewer of them.
        # With fewer batches than threads, the threads share out each batch's rows instead.
        step = bs if -(-n // bs) >= workers else -(-n // workers)
        starts = iter(range(0, n, step))
        job = (x, starts, step, labels, conf, on_batch, energies)
        try:
            if workers == 1:
                fwd.run(*job)
            else:
                _parallel(fwd.run, [job] * workers)
        finally:
            if workers > 1:
                _blas.restore()
        return labels, conf


# --- the fast forward pass ---------------------------------------------------------

# Rows per matrix product: more only spills the buffers out of the cores' caches.
_MAX_ROWS = 1000
# Below these sizes threads cost more than they save.
_MIN_PARALLEL_ROWS = 512
_MIN_PARALLEL_BATCH = 32


class _Forward:
    """Weights rearranged so that each slice of images needs few passes over its buffers.

    sigmoid(a) = (1 + tanh(a / 2)) / 2, and tanh is one pass where 1 / (1 + exp(-a)) is
    three. The halvings and the affine map from tanh back to sigmoid are folded into the
    next layer's weights, each bias becomes the weight of an extra input column held at 1,
    and W1 takes the 1/255 pixel scale: per layer, one matrix product and one tanh. The
    predictions stay those of the textbook's code (the tests check all 10,000 test images).
    """

    def __init__(self, affines: list[Affine], dtype: np.dtype) -> None:
        self.dtype = dtype
        self.mats: list[NDArray[np.floating]] = []
        for i, layer in enumerate(affines):
            w, b = layer.params["W"], layer.params["b"].astype(np.float64)
            if i == 0:  # pixels come in as 0..255
                div = 255.0
            else:  # the input is t = tanh(a / 2) = 2 * sigmoid(a) - 1
                div, b = 2.0, b + w.sum(axis=0, dtype=np.float64) / 2
            if i < len(affines) - 1:  # this layer's tanh takes a / 2
                div, b = div * 2, b / 2
            # One float64 division straight into the float32 matrix: no full-size temporaries.
            m = np.empty((len(w) + 1, w.shape[1]), dtype=dtype)
            np.divide(w, div, out=m[:-1], dtype=np.float64, casting="unsafe")
            m[-1] = b
            self.mats.append(m)

    def run(
        self,
        x: NDArray[np.uint8],
        starts: Iterator[int],
        step: int,
        labels: NDArray[np.intp],
        conf: NDArray[np.float32],
        on_batch: Callable[[int], object] | None,
        energies: NDArray[np.float32] | None = None,
    ) -> None:
        """For each start taken from `starts`, fill labels and conf (and energies, if given)
        for rows start..start+step."""
        dt = self.dtype
        n, d = x.shape
        # Each input buffer has one column more than its layer has units: the bias input, 1.
        ins = [np.ones((step, w.shape[0]), dtype=dt) for w in self.mats]
        logits = np.empty((step, self.mats[-1].shape[1]), dtype=dt)
        out = np.empty(logits.shape[::-1], dtype=dt)
        top = np.empty(step, dtype=dt)
        total = np.empty(step, dtype=dt)
        with np.errstate(under="ignore"):  # exp of very negative logits is 0
            for start in starts:
                m = min(step, n - start)
                np.copyto(ins[0][:m, :d], x[start : start + m], casting="unsafe")
                for w, h, nxt in zip(self.mats, ins, ins[1:], strict=False):
                    a = nxt[:m]
                    np.matmul(h[:m], w, out=a[:, :-1])
                    np.tanh(a, out=a)  # over the whole buffer: one pass is faster than a view
                    a[:, -1] = 1
                a = logits[:m]
                np.matmul(ins[-1][:m], self.mats[-1], out=a)
                np.argmax(a, axis=1, out=labels[start : start + m])
                # The softmax's reductions run on the transpose (classes, batch), where they
                # are fast; the top class has exp(0) = 1, so its probability is 1 / sum.
                o = out[:, :m]
                np.copyto(o, a.T)
                mx = top[:m]
                np.max(o, axis=0, out=mx)
                np.subtract(o, mx, out=o)
                np.exp(o, out=o)
                s = total[:m]
                np.sum(o, axis=0, out=s)
                np.divide(1, s, out=conf[start : start + m])
                if energies is not None:  # logsumexp = max + log(sum of exp(logit - max))
                    np.log(s, out=s)
                    np.add(s, mx, out=energies[start : start + m])
                if on_batch is not None:
                    on_batch(m)


def _cpus() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _parallel(fn: Callable[..., None], jobs: list[tuple[Any, ...]]) -> None:
    """Run fn(*job) for each job, the first in this thread; re-raise the first error."""
    errors: list[BaseException] = []

    def work(job: tuple[Any, ...]) -> None:
        try:
            fn(*job)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(job,), daemon=True) for job in jobs[1:]]
    for t in threads:
        t.start()
    work(jobs[0])
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


class _OpenBlas:
    """Keeps OpenBLAS to one thread while classify runs its own threads, then restores it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._saved = 0
        self._funcs: tuple[Any, Any] | None = None
        self._looked = False

    def _find(self) -> tuple[Any, Any] | None:
        """OpenBLAS's get/set thread-count functions, if numpy runs on OpenBLAS (Linux)."""
        import ctypes

        try:
            with open("/proc/self/maps") as f:
                paths = {p for line in f if "openblas" in (p := line.split(None, 5)[-1].strip())}
        except OSError:
            return None
        for path in sorted(paths):
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for prefix, suffix in (("scipy_", "64_"), ("scipy_", ""), ("", "64_"), ("", "")):
                get = getattr(lib, f"{prefix}openblas_get_num_threads{suffix}", None)
                put = getattr(lib, f"{prefix}openblas_set_num_threads{suffix}", None)
                if get is not None and put is not None:
                    get.restype, put.argtypes, put.restype = ctypes.c_int, [ctypes.c_int], None
                    return get, put
        return None

    def threads(self) -> int | None:
        """OpenBLAS's current thread count, or None if numpy does not use OpenBLAS."""
        with self._lock:
            self._look()
            return None if self._funcs is None else int(self._funcs[0]())

    def _look(self) -> None:
        if not self._looked:
            self._funcs, self._looked = self._find(), True

    def limit(self) -> bool:
        """Set one BLAS thread (until `restore`); False if that is not possible."""
        with self._lock:
            self._look()
            if self._funcs is None:
                return False
            get, put = self._funcs
            if self._users == 0:
                self._saved = get()
                if self._saved != 1:
                    put(1)
            self._users += 1
            return True

    def restore(self) -> None:
        """Give BLAS back its thread count once the last user is done."""
        with self._lock:
            self._users -= 1
            if self._users == 0 and self._funcs is not None and self._saved != 1:
                self._funcs[1](self._saved)


_blas = _OpenBlas()
