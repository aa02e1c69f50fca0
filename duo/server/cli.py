"""`duo serve`: the realtime server on the embedded default (or any model).

With `--tensor-parallel N` it runs as N processes under torchrun (relaunching itself there): rank 0 is the
server, the other ranks only run their shard of each forward (`duo.engine.parallel`).
"""

from __future__ import annotations

import argparse
import os
import signal
from typing import TYPE_CHECKING

from .settings import Settings

if TYPE_CHECKING:
    from duo.engine import TensorParallel


def _join(settings: Settings) -> TensorParallel:
    """This process's place in the tensor-parallel group, relaunching the command under torchrun if need be."""
    from duo.engine import TensorParallel, torchrun_argv, under_torchrun

    if not under_torchrun():
        argv = torchrun_argv(settings.tensor_parallel)
        os.execv(argv[0], argv)
    return TensorParallel.join(settings.tensor_parallel)


def _follow(settings: Settings, group: TensorParallel) -> None:
    """A rank > 0: its shard of every forward, until rank 0 says stop. It serves no one."""
    from duo.engine import follow

    from .app import load_model

    for sig in (signal.SIGINT, signal.SIGTERM):  # rank 0 shuts down first (its last tick needs us), then says stop
        signal.signal(sig, signal.SIG_IGN)
    follow(group, load_model(settings))
    group.close()


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from .app import create_app
    from .connections import uvicorn_config
    from .settings import load_settings

    flags = {name: getattr(args, name, None) for name in Settings.model_fields}
    settings = load_settings(args.config, **flags)
    try:
        keys = settings.keys()
    except (OSError, ValueError) as exc:
        raise SystemExit(f"duo serve: API keys: {exc}") from None
    if not settings.loopback and not keys:
        raise SystemExit("duo serve: listening beyond loopback needs API keys (--api-keys or DUO_API_KEYS)")
    group = _join(settings) if settings.tensor_parallel > 1 else None
    if group is not None and not group.leader:
        _follow(settings, group)
        return 0
    app = create_app(settings)

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: list | None = None) -> None:
            """SIGTERM: stop accepting, close every session with 1001 and stop the engine, then exit."""
            await app.state.server.stop()
            await super().shutdown(sockets)
            if group is not None:  # no tick runs any more: the other ranks stop (uvicorn exits by the signal)
                group.close()

    config = uvicorn_config(app, settings, app.state.server.guard, log_level=args.log_level.lower(),
                            ssl_certfile=args.ssl_certfile, ssl_keyfile=args.ssl_keyfile)
    Server(config).run()
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the realtime WebSocket server",
                       description="Settings come from flags, then DUO_* environment variables, then --config.")
    p.add_argument("--config", help="TOML or JSON file with any of the settings below")
    for name, field in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        if field.annotation is bool:
            p.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None,
                           help=field.description)
        else:
            kind = {int: int, float: float}.get(field.annotation, str)  # type: ignore[call-overload]
            p.add_argument(flag, dest=name, type=kind, default=None, help=field.description)
    p.add_argument("--ssl-certfile", help="serve HTTPS/WSS with this certificate (browsers need it off localhost)")
    p.add_argument("--ssl-keyfile", help="the certificate's private key")
    p.set_defaults(func=run)
