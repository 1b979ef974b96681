"""`nas dashboard STUDY`: optuna-dashboard on the study's storage, on the loopback interface by default."""

from __future__ import annotations

import argparse

from nas.commands import port


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `nas dashboard`."""
    p = sub.add_parser("dashboard", help="explore a study's trials and Pareto front in optuna-dashboard")
    p.add_argument("study", help="a study .yaml (its storage is opened) or a storage URL")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: loopback only)")
    p.add_argument("--port", type=port, default=8080)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted."""
    import optuna
    from optuna_dashboard import run_server

    from nas.search import storage_of
    from nas.study import Study
    from space.errors import NasError

    if "://" in args.study:
        url, storage = args.study, optuna.storages.RDBStorage(args.study)
    else:
        study = Study.load(args.study)
        if study.storage.startswith("sqlite:///") and not _exists(study.storage):
            raise NasError(f"{study.source}: no results yet at {study.storage}; run 'nas search {args.study}' first")
        url, storage = study.storage, storage_of(study)
    print(f"optuna-dashboard on http://{args.host}:{args.port}/ for {url} (Ctrl-C to stop)", flush=True)
    try:
        run_server(storage, host=args.host, port=args.port)
    except OSError as e:
        raise NasError(f"cannot serve on {args.host}:{args.port}: {e.strerror or e}") from None
    return 0


def _exists(url: str) -> bool:
    from pathlib import Path

    return Path(url[len("sqlite:///"):]).is_file()
