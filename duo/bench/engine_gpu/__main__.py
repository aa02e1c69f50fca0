"""`python -m duo.bench.engine_gpu BENCH ...` (see the package's docstring)."""

from .cli import main

main()
