"""The engine at scale on one GPU: forward passes, capacity, cost against the floor, KV per session.

    python -m duo.bench.engine_gpu passes   [--arch embedded|qwen2.5-7b] [--sessions 1 8 32]
    python -m duo.bench.engine_gpu capacity [--arch ...] [--sessions 64 128 192 256] [--seconds 8]
    python -m duo.bench.engine_gpu floor    [--arch ...] [--sessions 64 128]
    python -m duo.bench.engine_gpu kv       [--arch ...]
    python -m duo.bench.engine_gpu profile  [--arch ...] [--sessions 256] [--ticks 40] [--attention paged|gather]
    python -m duo.bench.engine_gpu warmup   [--arch ...] [--sessions 256 1024] [--max-context 4096]

Each prints one JSON object per measurement, then a summary table; `--json-out FILE` keeps the rows.
`qwen2.5-7b` and `qwen2.5-72b` are those architectures with random bf16 weights (speed does not depend on
weight values) and the embedded tokenizer; `embedded` is the shipped default model with its adapter.

`--tensor-parallel N` runs the engine split over N GPUs of this host (`duo.engine.parallel`), relaunching
itself under torchrun: rank 0 runs the bench, the other ranks follow its engines. What runs the model
outside the engine (the naive baseline of `passes`, transformers' own step in `floor`) is left out there;
`floor` adds the all-reduce time measured alone to the floor of the weights and KV each GPU reads.

Workload (`capacity`, `floor`): every session streams a reply (run to length, end-of-turn ignored) over a
conversation of `--context` tokens while a slice of background speech arrives every `--slice-s` seconds
of wall time per session, staggered, and is judged (k forecast tokens, then ignored) alongside the reply.

Each bench is its own module (`passes`, `capacity`, `floor`, `kv`, `profile`, `warmup`); what they share is beside
them: `workload` (the load above), `models` (what is benched), `timing`, `report`; `cli` is the command line.
"""

from .cli import main
from .floor import allreduce_ms, bandwidth, plain_decode
from .models import ARCHS, QWEN25_7B, QWEN25_72B, load, local_bytes
from .passes import naive
from .report import emit, table
from .timing import pct, release, sync, timed
from .workload import FILLER, QUESTION, Workload, history

__all__ = ["ARCHS", "FILLER", "QUESTION", "QWEN25_7B", "QWEN25_72B", "Workload", "allreduce_ms", "bandwidth", "emit",
           "history", "load", "local_bytes", "main", "naive", "pct", "plain_decode", "release", "sync", "table",
           "timed"]
