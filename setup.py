"""Builds the optional C kernel; all other settings are in pyproject.toml."""

from setuptools import Extension, setup

# optional: without a C compiler the package still installs, and runs on numpy alone.
setup(ext_modules=[Extension("mnist_infer._ink", ["mnist_infer/_ink.c"], optional=True)])
