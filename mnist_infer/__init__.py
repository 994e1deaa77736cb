"""mnist-infer: download MNIST, load textbook-style weights safely, run fast batched inference."""

from __future__ import annotations

__version__ = "0.1.0"
