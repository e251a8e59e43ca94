"""The ``molvae`` command: every argparse parser lives here. One sub-command per stage, flags
generated from the stage config, plus ``run`` for pipelines.

The CLI stays thin: it turns arguments (over an optional ``--config FILE.yaml``) into the
stage's config dataclass and calls the stage function. Anything it can do, Python can do
with ``molvae.stages.run_stage(name, config)``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import typing
from typing import Any

from molvae import __version__
from molvae import config as cfg
from molvae.stages.registry import STAGES, get_stage, run_stage

log = logging.getLogger("molvae")


def _add_config_flags(parser: argparse.ArgumentParser, config_type: type) -> None:
    hints = cfg.field_types(config_type)
    for field in dataclasses.fields(config_type):
        inner, _ = cfg.unwrap_optional(hints[field.name])
        is_list = typing.get_origin(inner) is list
        help_text = field.metadata.get("help", "")
        default = field.default if field.default is not dataclasses.MISSING else (
            field.default_factory() if field.default_factory is not dataclasses.MISSING
            else None)
        if default not in (None, "", []) and inner is not bool:
            help_text += f" (default: {','.join(map(str, default)) if is_list else default})"
        kwargs: dict[str, Any] = {"help": help_text, "default": argparse.SUPPRESS}
        if field.metadata.get("positional"):
            parser.add_argument(field.name, nargs="+" if is_list else None,
                                metavar=field.name.upper(), **kwargs)
            continue
        flags = [f"--{field.name.replace('_', '-')}", *field.metadata.get("aliases", ())]
        if inner is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif is_list:
            kwargs["nargs"] = "+"
        parser.add_argument(*flags, dest=field.name, **kwargs)


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
    p.add_argument("--force", action="store_true", help="rerun stages even if cached")
    p.add_argument("--no-track", action="store_true", help="do not record MLflow runs")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def _run_pipeline(args: argparse.Namespace) -> None:
    """What ``molvae run`` does with its parsed arguments."""
    from molvae.pipeline import load_pipeline, run_pipeline

    pipeline = load_pipeline(args.pipeline, args.overrides)
    statuses = run_pipeline(pipeline, only=args.only, start=args.start, force=args.force,
                            track=not args.no_track)
    for stage in pipeline.stages:
        if stage.name in statuses:
            print(f"{stage.name:9s} {statuses[stage.name]:7s} {stage.folder}")


def _flatten_lists(value: Any) -> Any:
    if isinstance(value, list):
        return [part for item in value for part in str(item).split(",") if part]
    return value


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
    try:
        if args.command == "run":
            _run_pipeline(args)
            return 0
        stage = get_stage(args.command)
        options = cfg.load_yaml(args.config) if args.config else {}
        special = {"command", "config", "no_track", "quiet"}
        options.update({k: _flatten_lists(v) for k, v in vars(args).items() if k not in special})
        config = cfg.from_dict(stage.config_type(), options, where=args.command)
        result = run_stage(args.command, config, track=not args.no_track)
    except (cfg.ConfigError, FileNotFoundError, ValueError) as err:
        print(f"molvae {args.command}: error: {err}", file=sys.stderr)
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
