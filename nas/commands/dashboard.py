"""`nas dashboard STUDY`: optuna-dashboard on the study's storage, on the loopback interface by default."""

from __future__ import annotations

import argparse

from nas.commands import port


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `nas dashboard`."""
    p = sub.add_parser("dashboard", help="explore a study's trials and Pareto front in optuna-dashboard")
    p.add_argument("study", help="a study .yaml (its storage is opened) or a storage URL")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: loopback only)")
    p.add_argument("--port", type=port, default=8080, help="port to serve on, on 127.0.0.1 (default 8080)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted."""
    import optuna

    from nas.record.store import storage_of
    from nas.study import Study
    from space.errors import NasError

    if "://" in args.study:
        url, storage = args.study, _rdb(args.study)
    else:
        study = Study.load(args.study)
        if study.storage.startswith("sqlite:///") and not _exists(study.storage):
            raise NasError(f"{study.source}: no results yet at {study.storage}; run 'nas search {args.study}' first")
        url, storage = study.storage, storage_of(study)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    server = _bind(storage, args.host, args.port)  # bound before anything is printed: a taken port is one line
    print(f"optuna-dashboard on http://{_netloc(args.host, args.port)}/ for {url} (Ctrl-C to stop)", flush=True)
    with server:
        server.serve_forever()
    return 0


def _bind(storage: object, host: str, port: int) -> object:
    """A WSGI server for optuna-dashboard's app, listening on host:port (optuna-dashboard's own `run_server` prints
    "Listening on ..." before it binds, and logs every request)."""
    import errno
    import socket
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    from optuna_dashboard import wsgi

    from space.errors import NasError

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002  (the base class's name)
            pass

    class Server(WSGIServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    try:
        return make_server(host, port, wsgi(storage), server_class=Server, handler_class=Quiet)
    except OSError as e:
        fix = "choose another --port" if e.errno == errno.EADDRINUSE else "check --host and --port"
        raise NasError(f"cannot serve on {_netloc(host, port)}: {e.strerror or e}; {fix}") from None


def _rdb(url: str) -> object:
    """An RDB storage from a URL; a bad URL or unreachable database is one line."""
    import optuna

    from space.errors import NasError

    try:
        return optuna.storages.RDBStorage(url)
    except Exception as e:  # SQLAlchemy raises a variety of errors for a bad URL or an unreachable server
        cause = str(getattr(e, "orig", None) or e).splitlines()[0]
        raise NasError(f"storage {url}: cannot open it ({cause}); check the URL and that the database is reachable"
                       ) from None


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _exists(url: str) -> bool:
    from pathlib import Path

    return Path(url[len("sqlite:///"):]).is_file()
