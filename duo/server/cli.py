"""`duo serve`: the realtime server on the embedded default (or any model)."""

from __future__ import annotations

import argparse

from .settings import Settings


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
    app = create_app(settings)

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: list | None = None) -> None:
            """SIGTERM: stop accepting, close every session with 1001 and stop the engine, then exit."""
            await app.state.server.stop()
            await super().shutdown(sockets)

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
