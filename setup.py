"""Build of goroutines' optional C accelerator (``goroutines._speedups``).

Everything else is in pyproject.toml. The extension is ``optional``: when it
cannot be built (no compiler, no Python headers) the install goes on and
the pure-Python reference runs (``goroutines.__speedups__ == "pure"``).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "goroutines._speedups",
            sources=["src/goroutines/_speedups.c"],
            optional=True,
            extra_compile_args=["-O2", "-Wall", "-Werror=implicit-function-declaration"],
        )
    ]
)
