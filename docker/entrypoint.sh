#!/bin/sh
# Container entry point: `duo serve`, configured by DUO_* environment variables and any flags given.
#   (no arguments)         duo serve
#   --flag ... | serve ... duo serve with those flags
#   anything else          run as given, e.g. `duo prepare --model ID` or `bash`
# DUO_LOG_LEVEL sets the log level (default INFO); DUO_SSL_CERTFILE and DUO_SSL_KEYFILE serve HTTPS/WSS directly.
set -eu

case "${1:-}" in
  "" | -*) ;;
  serve) shift ;;
  *) exec "$@" ;;
esac

set -- --log-level "${DUO_LOG_LEVEL:-INFO}" serve "$@"
if [ -n "${DUO_SSL_CERTFILE:-}" ]; then
  set -- "$@" --ssl-certfile "$DUO_SSL_CERTFILE" --ssl-keyfile "${DUO_SSL_KEYFILE:?DUO_SSL_KEYFILE must name the key of DUO_SSL_CERTFILE}"
fi
exec duo "$@"
