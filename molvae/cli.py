"""The ``molvae`` command: every argparse parser lives here. One sub-command per stage, flags
generated from the stage config, plus ``run`` for pipelines.

The CLI stays thin: it turns arguments (over an optional ``--config FILE.yaml``) into the
stage's config dataclass and calls the stage function. Anything it can do, Python can do
with ``molvae.stages.run_stage(name, config)``.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import sys
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from molvae import __version__
from molvae import config as cfg
from molvae.signals import handling
from molvae.stages.registry import STAGES, get_stage, run_stage

log = logging.getLogger("molvae")


def _add_config_flags(parser: argparse.ArgumentParser, config_type: type) -> None:
    for field in cfg.flat_fields(config_type):  # option blocks flattened: --cmaes-sigma
        inner, _ = cfg.unwrap_optional(field.type)
        is_list = typing.get_origin(inner) is list
        help_text, default = field.help, field.default
        if default not in (None, "", []) and inner is not bool:
            help_text += f" (default: {','.join(map(str, default)) if is_list else default})"
        kwargs: dict[str, Any] = {"help": help_text, "default": argparse.SUPPRESS}
        if field.positional:
            parser.add_argument(field.name, nargs="+" if is_list else None,
                                metavar=field.name.upper(), **kwargs)
            continue
        flags = [f"--{field.name.replace('_', '-')}", *field.aliases]
        if inner is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif is_list:
            kwargs["nargs"] = "+"
        parser.add_argument(*flags, dest=field.name, **kwargs)
    for old in cfg.converted_keys(config_type):  # renamed, value converted by from_dict
        parser.add_argument(f"--{old.replace('_', '-')}", dest=old, default=argparse.SUPPRESS,
                            help=argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; stage configs are imported lazily only for the chosen command."""
    parser = argparse.ArgumentParser(
        prog="molvae", description="SELFIES VAE pipeline: prep, train, sample, score, regress, "
        "optimize. Every stage is tracked as an MLflow run (see `mlflow ui`).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = next((a for a in sys.argv[1:] if a in STAGES), None)
    for name, stage in STAGES.items():
        p = sub.add_parser(name, help=stage.help, description=stage.help)
        p.add_argument("--config", metavar="FILE.yaml", help="read options from a YAML mapping; "
                       "flags given on the command line win")
        p.add_argument("--no-track", action="store_true", help="do not record an MLflow run")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress bars, warnings only")
        if name == chosen:
            _add_config_flags(p, stage.config_type())
    _add_run_parser(sub)
    _add_serve_parser(sub)
    return parser


def _add_run_parser(sub: argparse._SubParsersAction) -> None:
    """The ``molvae run PIPELINE.yaml`` sub-command."""
    p = sub.add_parser("run", help="run a pipeline file (stages cached, one MLflow parent run)",
                       description="Run the stages of a pipeline YAML in order. Finished stages "
                       f"are skipped unless their config changed. Stages: {', '.join(STAGES)}.")
    p.add_argument("pipeline", metavar="PIPELINE.yaml")
    p.add_argument("--only", metavar="STAGE", help="run just this stage")
    p.add_argument("--from", dest="start", metavar="STAGE", help="run this stage and the rest")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="STAGE.KEY=VALUE", help="override a config value (repeatable)")
    p.add_argument("--workdir", metavar="DIR", help="the stages' working folder (default: the "
                   "file's workdir, else runs/NAME)")
    p.add_argument("--force", action="store_true", help="rerun stages even if cached")
    p.add_argument("--no-track", action="store_true", help="do not record MLflow runs")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def _at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text}")
    return value


def _add_serve_parser(sub: argparse._SubParsersAction) -> None:
    """The ``molvae serve MODEL`` sub-command (see :mod:`molvae.tracking.server`)."""
    p = sub.add_parser("serve", help="serve a model over HTTP (MLflow's /invocations protocol)",
                       description="Serve a model over HTTP with MLflow's scoring protocol: "
                       "n_samples → smiles, smiles → latent means (see docs/architecture.md). "
                       "Requests are bounded: too many molecules is HTTP 400, and a request past "
                       "--timeout is 504 and its work stops, as it does when the client hangs "
                       "up. Errors are one line; tracebacks stay in the server's log.")
    p.add_argument("model", metavar="MODEL", help="a model folder, a shipped model name "
                   "(moses) or a models:/NAME/VERSION or runs:/RUN_ID/model URI")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: "
                   "%(default)s; the server has no authentication, so widen it only on purpose)")
    p.add_argument("--port", type=int, default=5001, help="TCP port (default: %(default)s)")
    # 10,000 is also molvae.tracking.serving.DEFAULT_MAX_SAMPLES (not imported: it loads MLflow)
    p.add_argument("--max-samples", type=_at_least_one, default=10_000, help="most molecules "
                   "one request may ask for (n_samples, all rows together); more is HTTP 400 "
                   "(default: %(default)s)")
    p.add_argument("--timeout", type=_at_least_one, default=60, metavar="SECONDS",
                   help="a request still running after this long is answered 504 and its work "
                   "stops (default: %(default)s)")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings only")


def _run_pipeline(args: argparse.Namespace) -> None:
    """What ``molvae run`` does with its parsed arguments."""
    from molvae.pipeline import load_pipeline, run_pipeline

    _check_overrides(args.overrides)
    pipeline = load_pipeline(args.pipeline, args.overrides, args.workdir)
    statuses = run_pipeline(pipeline, only=args.only, start=args.start, force=args.force,
                            track=not args.no_track)
    for stage in pipeline.stages:
        if stage.name in statuses:
            print(f"{stage.name:9s} {statuses[stage.name]:7s} {stage.folder}")


def _check_overrides(overrides: list[str]) -> None:
    """Each ``--set`` value must parse as YAML; the error names the option (YAML's own error is
    a traceback-like block with a caret and no option)."""
    for assignment in overrides:
        try:
            yaml.safe_load(assignment.partition("=")[2])
        except yaml.YAMLError as err:
            problem = getattr(err, "problem", None) or str(err).strip().splitlines()[0]
            raise cfg.ConfigError(f"--set {assignment}: the value is not valid YAML "
                                  f"({problem})") from None


WRITE_ERRNOS = {getattr(errno, name, errno.ENOSPC)
                for name in ("ENOSPC", "EDQUOT", "EROFS", "EFBIG")}
"""Errors of a write that often name no file (a full disk mid-write): the stage's output is
named instead (EDQUOT is not defined everywhere)."""


def _os_error(err: OSError, out: Any) -> str:
    """One line for an operating-system error (a traceback once): the path it names and what
    went wrong, e.g. ``prepared/.work: No space left on device``; when it names no path, the
    stage's output ``out`` for a failed write."""
    if err.strerror is None:  # raised with a message of its own (molvae's, a library's)
        return (str(err).strip().splitlines() or [type(err).__name__])[0]
    paths = [os.fsdecode(p) if isinstance(p, bytes) else str(p)
             for p in (err.filename, err.filename2) if p is not None]
    if len(paths) == 2 and Path(paths[0]).name.startswith("."):  # an atomic write's temp file
        paths = paths[1:]
    if not paths:
        return f"cannot write {out}: {err.strerror}" if err.errno in WRITE_ERRNOS and out \
            else err.strerror
    line = f"{' -> '.join(paths)}: {err.strerror}"
    if isinstance(err, (FileExistsError, NotADirectoryError)):
        in_the_way = next((p for p in (Path(paths[0]), *Path(paths[0]).parents)
                           if p.is_file()), None)
        if in_the_way is not None:
            line += f" ({in_the_way} is a file, not a folder)"
    return line


def _flatten_lists(value: Any) -> Any:
    if isinstance(value, list):
        return [part for item in value for part in str(item).split(",") if part]
    return value


@contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (``kill``, a scheduler's or a benchmark's stop) unwinds like Ctrl-C: local
    clusters close, locks are released, a prep keeps the pieces it finished; by default it
    ends the process at once and leaves all that behind. Training turns it into a stop with a
    checkpoint while it runs (:mod:`molvae.training.stopping`)."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    with handling(signal.SIGTERM, interrupt):
        yield


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``molvae`` console script; returns the exit status."""
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    quiet = any(a in ("-q", "--quiet") for a in sys.argv[1:])
    if quiet:  # before any stage module imports tqdm, which reads TQDM_* once
        os.environ["TQDM_DISABLE"] = "1"
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args()
    with _terminate_as_interrupt():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    """What the parsed command does; returns the exit status."""
    out = None  # the stage's output, named when a failed write names no file
    try:
        if args.command == "run":
            _run_pipeline(args)
            return 0
        if args.command == "serve":
            from molvae.tracking.server import serve

            serve(args.model, args.host, args.port, args.max_samples, args.timeout)
            return 0
        stage = get_stage(args.command)
        options = cfg.load_yaml(args.config) if args.config else {}
        special = {"command", "config", "no_track", "quiet"}
        options.update({k: _flatten_lists(v) for k, v in vars(args).items() if k not in special})
        config = cfg.from_dict(stage.config_type(), options, where=args.command)
        out = getattr(config, "out", None)
        result = run_stage(args.command, config, track=not args.no_track)
    except (cfg.ConfigError, ValueError) as err:
        print(f"molvae {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk, a read-only or occupied path, a file for a folder
        print(f"molvae {args.command}: error: {_os_error(err, out)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    summary = getattr(result, "summary", None)
    if callable(summary):
        print(summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
