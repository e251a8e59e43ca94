"""Pipelines: a YAML file of stage configs, run in order, cached, tracked as one MLflow run.

Each stage's outputs live in ``WORKDIR/STAGE-HASH`` where the hash covers the stage's config
and the hashes of the stages it reads from, so changing one key reruns that stage and those
after it, and nothing else. What a stage reads, where its output lands and whether it resumes
come from its declaration in :mod:`molvae.stages.registry`. The hash also covers the bytes of
every existing file a stage's options name (input tables, an objective YAML, the source file of
a ``module:function`` objective), so editing one reruns the stage; the upstream stages' outputs
are covered by their own hashes instead. A stage is finished only when its
``.done.json`` marker exists; a folder without one (a killed run) is cleared before the stage
runs again, unless the stage is resumable (training continues from its last checkpoint); the
paid oracle calls of optimize (``calls.csv``) are kept, and the rerun reuses them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import logging
import math
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from molvae import config as cfg
from molvae import tracking
from molvae.io import exclusive, file_digest, is_table_folder, write_json
from molvae.stages import STAGES, get_stage, run_stage

log = logging.getLogger(__name__)

ORDER = tuple(STAGES)  # the registry lists stages in an order where each reads earlier ones
TOP_LEVEL_KEYS = {"name", "workdir", "stages"}
DONE = ".done.json"
LOCK = ".molvae.lock"
PAID = re.compile(r"^calls(-\d+)?\.csv$")  # optimize's paid oracle calls: kept, reused


@dataclass
class PlannedStage:
    """One stage of a pipeline with its resolved config and cache folder."""

    name: str
    config: Any
    folder: Path
    digest: str

    @property
    def done(self) -> bool:
        return (self.folder / DONE).is_file()

    @property
    def output(self) -> Path:
        return self.folder / get_stage(self.name).output_file


@dataclass
class Pipeline:
    """A parsed pipeline file: its name, working folder and ordered stages."""

    name: str
    workdir: Path
    stages: list[PlannedStage] = field(default_factory=list)
    source: Path | None = None


def _set_override(spec: dict[str, dict], assignment: str) -> None:
    """Apply ``stage.key=value`` (value parsed as YAML) to the raw stage specs."""
    target, sep, value = assignment.partition("=")
    stage, dot, key = target.partition(".")
    if not sep or not dot or not key:
        raise cfg.ConfigError(f"--set expects stage.key=value, got '{assignment}'")
    if stage not in spec:
        raise cfg.ConfigError(f"--set {assignment}: stage '{stage}' is not in the pipeline")
    spec[stage][key] = yaml.safe_load(value)


def load_pipeline(path: str | Path, overrides: list[str] | None = None,
                  workdir: str | Path | None = None) -> Pipeline:
    """Parse and validate a pipeline file; every error names the stage and the key.

    ``workdir`` replaces the file's own (else ``runs/NAME``), so one file serves several
    working folders (a fresh run beside a cached one, a run per project)."""
    path = Path(path)
    data = cfg.load_yaml(path)
    unknown = set(data) - TOP_LEVEL_KEYS
    if unknown:
        raise cfg.ConfigError(f"{path}: unknown top-level key(s) {sorted(unknown)} "
                              f"(valid: {sorted(TOP_LEVEL_KEYS)})")
    raw_stages = data.get("stages")
    if not isinstance(raw_stages, dict) or not raw_stages:
        raise cfg.ConfigError(f"{path}: 'stages' must map stage names to their configs")
    spec: dict[str, dict] = {}
    for name, options in raw_stages.items():
        get_stage(name)
        if options is not None and not isinstance(options, dict):
            raise cfg.ConfigError(f"{path}: stage '{name}' must be a mapping of keys to values")
        spec[name] = dict(options or {})
    for assignment in overrides or []:
        _set_override(spec, assignment)
    pipeline = Pipeline(name=str(data.get("name") or path.stem),
                        workdir=Path(workdir or data.get("workdir") or Path("runs") / path.stem),
                        source=path)
    planned: dict[str, PlannedStage] = {}
    for name in sorted(spec, key=ORDER.index):
        options = dict(spec[name])
        upstream = []
        for key, source in get_stage(name).reads.items():
            if source in planned and key not in options:
                options[key] = str(planned[source].output)
                upstream.append(planned[source].digest)
        files = {str(named): file_digest(named) for value in spec[name].values()
                 for named in _named_files(value)}
        kept = {k: v for k, v in options.items() if k not in get_stage(name).limits}
        hashed = json.dumps({"stage": name, "options": kept, "upstream": upstream,
                             "files": files}, sort_keys=True, default=str)
        digest = hashlib.sha256(hashed.encode()).hexdigest()[:12]
        folder = pipeline.workdir / f"{name}-{digest}"
        options["out"] = str(folder / get_stage(name).output_file)
        config = cfg.from_dict(get_stage(name).config_type(), options, where=f"{path}: {name}")
        planned[name] = PlannedStage(name, config, folder, digest)
    pipeline.stages = list(planned.values())
    return pipeline


def _named_files(value: Any) -> list[Path]:
    """The existing files an option value names: paths (alone or in a list) and, for
    ``module:function``, the module's source file, found without importing the module."""
    files = []
    for item in value if isinstance(value, list) else [value]:
        if not isinstance(item, str):
            continue
        if Path(item).is_file() or is_table_folder(Path(item)):
            files.append(Path(item))
        elif cfg.is_import_path(item):
            try:
                spec = importlib.util.find_spec(item.partition(":")[0])
            except (ImportError, ValueError):  # a missing module is the stage's error to report
                spec = None
            if spec is not None and spec.origin and Path(spec.origin).is_file():
                files.append(Path(spec.origin))
    return files


def select(pipeline: Pipeline, only: str | None = None, start: str | None = None) -> list[str]:
    """Names of the stages to run for ``--only`` / ``--from`` (all by default)."""
    names = [s.name for s in pipeline.stages]
    for option, value in (("--only", only), ("--from", start)):
        if value is not None and value not in names:
            raise cfg.ConfigError(f"{option} {value}: not a stage of this pipeline "
                                  f"({', '.join(names)})")
    if only:
        return [only]
    if start:
        return names[names.index(start):]
    return names


def run_pipeline(pipeline: Pipeline, only: str | None = None, start: str | None = None,
                 force: bool = False, track: bool = True,
                 lock_timeout: float | None = None) -> dict[str, str]:
    """Run the selected stages in order; returns each stage's status: 'ran', 'cached', or
    'stopped' for a stage that stopped before it finished and 'waiting' for those after it.

    One run at a time per working folder: two would write the same stage folders and resume
    each other's half-written checkpoints. A second run fails at once (``lock_timeout`` 0, the
    default, or $MOLVAE_LOCK_TIMEOUT) or waits that many seconds for the first to finish.
    """
    if lock_timeout is None:
        lock_timeout = float(os.environ.get("MOLVAE_LOCK_TIMEOUT", "0"))
    pipeline.workdir.mkdir(parents=True, exist_ok=True)
    with exclusive(pipeline.workdir / LOCK, f"another `molvae run` is using {pipeline.workdir} "
                   f"(pid {{pid}}, lock {pipeline.workdir / LOCK}); wait for it to finish, or "
                   "set MOLVAE_LOCK_TIMEOUT=SECONDS to wait", lock_timeout):
        return _run_locked(pipeline, only, start, force, track)


def _run_locked(pipeline: Pipeline, only: str | None, start: str | None, force: bool,
                track: bool) -> dict[str, str]:
    """:func:`run_pipeline` once the working folder is locked.

    The parent run carries every chosen stage's headline numbers as ``STAGE/NAME`` metrics
    (a cached stage's come from its ``.done.json``); when every chosen stage is cached there
    is nothing new to record, so no parent run is made.
    """
    chosen = select(pipeline, only, start)
    for stage in pipeline.stages:
        if (stage.name not in chosen and not stage.done
                and any(stage.name in get_stage(c).reads.values() for c in chosen)):
            raise cfg.ConfigError(f"stage '{stage.name}' has not run yet; run it first "
                                  f"(or drop --only/--from)")
    planned = {s.name: s for s in pipeline.stages}
    statuses = {s.name: "cached" if s.done and not force else "ran"
                for s in pipeline.stages if s.name in chosen}
    for name, status in statuses.items():
        if status == "cached":
            log.info("%s: cached in %s", name, planned[name].folder)
    if "ran" not in statuses.values():
        return statuses
    kept = [s for s in pipeline.stages if s.done and statuses.get(s.name) != "ran"]
    runs = {s.name: run_id for s in kept if (run_id := _done(s).get("run_id"))}
    run_name = f"{pipeline.name}: {' → '.join(chosen)}"
    with tracking.stage_run("pipeline", {"pipeline": pipeline.name, "stages": ",".join(chosen)},
                            enabled=track, run_name=run_name) as tracker:
        if pipeline.source is not None:
            tracker.log_artifact(pipeline.source)
        tracker.log_dict({s.name: cfg.to_dict(s.config) for s in pipeline.stages},
                         "resolved_pipeline.json")
        tracker.set_tags({f"molvae.{state}": ",".join(n for n, s in statuses.items() if s == state)
                          for state in ("ran", "cached")})
        for name, status in statuses.items():
            stage = planned[name]
            if status == "ran" and not _run_one(stage, planned, runs, force, track):
                log.warning("%s stopped before it finished (max_steps, max_minutes or SIGTERM); "
                            "the stages after it wait: run the pipeline again to resume", name)
                later = list(statuses)[list(statuses).index(name) + 1:]
                statuses.update({name: "stopped", **{n: "waiting" for n in later}})
                break
            tracker.log_metrics({f"{name}/{k}": v for k, v in _done(stage)["headline"].items()})
    return statuses


def _run_one(stage: PlannedStage, planned: dict[str, PlannedStage], runs: dict[str, str],
             force: bool, track: bool) -> bool:
    """Run one stage into its folder, linked to the runs that made the outputs it reads, and
    mark it done with its run id and headline numbers (so a cached rerun can report them).

    Returns False, marking nothing, when the stage stopped before it finished (a training
    stopped by a time limit or SIGTERM): the next run resumes it instead of reusing it.
    """
    resume = _prepare_folder(stage, force)
    # the planned config stays as the file gave it; the run's copy says that it continues
    config = dataclasses.replace(stage.config, resume=True) if resume else stage.config
    started = time.perf_counter()
    log.info("%s: running into %s", stage.name, stage.folder)
    linked = {source: runs[source] for key, source in get_stage(stage.name).reads.items()
              if source in runs and str(getattr(config, key)) == str(planned[source].output)}
    result = run_stage(stage.name, config, track=track, runs=linked)
    if stage.name in linked:
        runs[stage.name] = linked[stage.name]
    if not getattr(result, "finished", True):
        return False
    write_json({"stage": stage.name, "config": cfg.to_dict(config),
                "seconds": time.perf_counter() - started, "run_id": linked.get(stage.name),
                "headline": headline(result)}, stage.folder / DONE)
    return True


def headline(result: Any) -> dict[str, float]:
    """A stage result's finite headline numbers: its ``headline()``, or else the numbers in its
    ``metrics`` (the score stage's result has only those)."""
    numbers = result.headline() if hasattr(result, "headline") else {
        k: v for k, v in (getattr(result, "metrics", None) or {}).items()
        if isinstance(v, (int, float))}
    return {k: float(v) for k, v in numbers.items() if math.isfinite(v)}


def _done(stage: PlannedStage) -> dict[str, Any]:
    """A finished stage's marker; one written before markers held numbers has an empty
    headline."""
    marker = json.loads((stage.folder / DONE).read_text())
    marker.setdefault("headline", {})
    return marker


def _prepare_folder(stage: PlannedStage, force: bool) -> bool:
    """Clear half-written outputs; a resumable stage (training) continues in its folder, and
    the answer is whether it does (with no checkpoint there yet, training starts afresh).
    Paid oracle calls (:data:`PAID`) stay: the rerun reuses them instead of paying again."""
    resumable = get_stage(stage.name).resumable and not force
    if stage.folder.exists() and not resumable:
        for child in stage.folder.iterdir():
            if PAID.match(child.name):
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    resume = resumable and stage.folder.exists()
    stage.folder.mkdir(parents=True, exist_ok=True)
    return resume
