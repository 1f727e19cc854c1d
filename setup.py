"""Builds the optional compiled fast path (tui/wire/_speedups.pyx); everything else is in
pyproject.toml. Without a C compiler or Python's headers the build goes on without it, and
egress-tui runs its pure-Python engine (the same results, slower)."""

from setuptools import Extension, setup

try:
    from Cython.Build import cythonize
except ImportError:  # built from an sdist whose build environment had no Cython: pure Python
    ext_modules = []
else:
    ext_modules = cythonize([Extension("egress_tui.wire._speedups", ["tui/wire/_speedups.pyx"])],
                            compiler_directives={"language_level": "3"}, quiet=True)
    for ext in ext_modules:
        ext.optional = True  # a failed compile is a warning: the install goes on, pure Python

setup(ext_modules=ext_modules)
