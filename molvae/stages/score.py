"""The score stage: how good is a set of generated molecules? MOSES metrics and more.

``molvae score GENERATED --reference REF --out DIR`` writes:

- ``metrics.json``: MOSES's metrics under MOSES's names (valid, unique@k, FCD/Test, SNN/Test,
  Frag/Test, Scaf/Test, the /TestSF variants, IntDiv, IntDiv2, Filters, logP, SA, QED,
  weight, Novelty), ours (``unique``, ``filters/<catalog>``, GuacaMol's ``KL_score`` and
  ``KL_div/<descriptor>``), counts of what came in and why molecules were invalid, and a
  ``notes`` map that says why any metric is null (undefined) or was skipped;
- ``molecules.csv`` (or ``.parquet``): one row per input row, invalid ones with a reason;
- ``properties.png`` (generated vs reference histograms) and ``molecules.png`` (a sample).

REF is a prepared folder (``test.parquet`` for the distribution metrics, ``train.parquet``
for Novelty), a molecule file, or ``moses`` (MOSES test, test_scaffolds and train).
``Filters`` uses MOSES's own MCF + PAINS SMARTS read from the molsets wheel; ``filters/pains``
etc. use RDKit's FilterCatalog.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from molvae import chem, plots
from molvae.config import ConfigError, device_option, option
from molvae.data.manifest import check_prepared
from molvae.devices import choose_device
from molvae.io import write_json, write_table
from molvae.parallel import engine
from molvae.scoring import metrics
from molvae.scoring import report as report_
from molvae.scoring.features import FeatureOptions, SetFeatures, describe_set, parse_set
from molvae.scoring.reference import (
    ReferenceStats,
    moses_filter_smarts,
    reference_stats,
    training_set,
)
from molvae.tracking import Tracker

log = logging.getLogger(__name__)

@dataclass
class ScoreConfig:
    """Options of ``molvae score``."""

    generated: str = option(help="generated molecules: CSV/TSV/Parquet/.smi (or moses:SPLIT)",
                            positional=True)
    reference: str = option(help="prepared folder (test.parquet, train.parquet), a molecule "
                            "file, or 'moses' (MOSES test, test_scaffolds, train)")
    out: Path = option(Path("score"), help="output folder")
    smiles_col: str | None = option(None, help="SMILES column of the generated table "
                                    "(auto-detected)")
    train: str | None = option(None, help="training molecules for Novelty: a prepared folder, a "
                               "file or 'moses' (default: the reference's train set, if any)")
    scaffold_reference: str | None = option(None, help="scaffold test set for the /TestSF "
                                            "metrics (default: MOSES test_scaffolds for 'moses')")
    unique_at: list[int] = option([1000, 10000], help="k values of unique@k")
    fcd: bool = option(True, help="compute FCD with fcd_torch's ChemNet (--no-fcd skips it)")
    device: str = device_option()
    batch_size: int = option(512, help="ChemNet batch size for FCD")
    kl_samples: int = option(10000, help="molecules per side in GuacaMol's KL score")
    catalogs: list[str] = option(["PAINS", "BRENK"], help="RDKit FilterCatalogs reported as "
                                 "filters/<name> (fraction passing)")
    grid_size: int = option(24, help="molecules drawn in molecules.png")
    table: str = option("csv", help="format of the per-molecule table: csv or parquet")
    workers: int = option(0, help="worker processes of the local cluster (0 = all cores; 1 = "
                          "work in this process)")
    chunk_size: int = option(200, help="molecules per work unit (small, so the last ones "
                             "finish together)")
    cluster: str | None = option(None, help="Dask scheduler address, e.g. tcp://10.0.0.5:8786 "
                                 "(default $DASK_SCHEDULER_ADDRESS, else a local cluster)")
    seed: int = option(0, help="random seed (reference sample for KL, molecules drawn)")
    cache: bool = option(True, help="reuse reference statistics cached on disk")
    cache_dir: Path | None = option(None, help="where reference statistics are cached "
                                    "(default: $MOLVAE_CACHE or ~/.cache/molvae, /score)")

    def validate(self) -> None:
        if self.table not in ("csv", "parquet"):
            raise ConfigError(f"table must be 'csv' or 'parquet', got '{self.table}'")
        if not self.unique_at or min(self.unique_at) < 1:
            raise ConfigError(f"unique_at must be positive integers, got {self.unique_at}")
        for key in ("kl_samples", "batch_size", "chunk_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be at least 1, got {getattr(self, key)}")
        if self.workers < 0 or self.grid_size < 0:
            raise ConfigError("workers and grid_size may not be negative")
        try:
            choose_device(self.device)
        except ValueError:
            raise ConfigError(f"device must be auto, cpu, cuda or cuda:N, got "
                              f"'{self.device}'") from None
        unknown = sorted(set(self.catalogs) - set(chem.filter_catalog_names()))
        if unknown:
            raise ConfigError(f"catalogs: unknown RDKit FilterCatalog {', '.join(unknown)} "
                              f"(known: {', '.join(chem.filter_catalog_names())})")


@dataclass
class ScoreResult:
    """The metrics (None = undefined, see ``notes``), counts and where the report went."""

    out: Path
    metrics: dict[str, float | None]
    notes: dict[str, str]
    counts: dict[str, Any]
    seconds: float = 0.0

    def summary(self) -> str:
        shown = ", ".join(f"{k} {_fmt(v)}" for k, v in self.metrics.items()
                          if k in ("valid", "unique@1000", "unique@10000", "Novelty", "FCD/Test",
                                   "SNN/Test", "IntDiv", "Filters"))
        return (f"scored {self.counts['n_input']} molecules ({self.counts['n_valid']} valid, "
                f"{self.counts['n_unique']} unique) in {self.seconds:.1f} s: {shown}\n"
                f"report: {self.out / 'metrics.json'}")


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


@dataclass
class Molecules:
    """A molecule list as read, and whether it is already RDKit canonical (prepared data)."""

    smiles: list[Any]
    canonical: bool
    source: str


def _read_molecules(spec: str, split: str, files_allowed: bool = True) -> Molecules | None:
    """The ``split`` molecules of a reference ``spec``; None when the spec has no such split."""
    from molvae.data.sources import read_moses, read_source

    if spec == "moses":
        return Molecules(read_moses(split)["smiles"].tolist(), False, f"moses:{split}")
    path = Path(spec)
    if not path.exists() and not spec.startswith("moses:"):
        raise FileNotFoundError(f"reference not found: {spec} (a prepared folder, a molecule "
                                "file or 'moses')")
    if path.is_dir():
        file = path / f"{split}.parquet"
        if not file.exists():
            return None
        check_prepared(path, [file.name])  # test and train of one prep run, not a mix
        return Molecules(pd.read_parquet(file, columns=["smiles"])["smiles"].tolist(), True,
                         str(file))
    if not files_allowed:
        return None
    return Molecules(read_source(spec)["smiles"].tolist(), False, spec)


def _read_generated(config: ScoreConfig) -> list[Any]:
    from molvae.data.sources import read_source

    path = Path(config.generated)
    if path.is_file() and path.stat().st_size == 0:
        return []
    return read_source(config.generated, config.smiles_col)["smiles"].tolist()


def _cache_dir(config: ScoreConfig) -> Path | None:
    if not config.cache:
        return None
    if config.cache_dir is not None:
        return config.cache_dir
    from molvae.data.sources import cache_dir

    return cache_dir() / "score"


def _references(config: ScoreConfig) -> tuple[dict[str, Molecules | None], Molecules | None]:
    """The reference sets by MOSES suffix (Test, TestSF) and the training set (or None)."""
    test = _read_molecules(config.reference, "test")
    if test is None:
        raise FileNotFoundError(f"reference folder {config.reference} has no test.parquet")
    if config.scaffold_reference:
        scaffolds = _read_molecules(config.scaffold_reference, "test_scaffolds")
    else:
        scaffolds = _read_molecules("moses", "test_scaffolds") \
            if config.reference == "moses" else None
    train = _read_molecules(config.train or config.reference, "train",
                            files_allowed=config.train is not None)
    if train is not None and train.source == "moses:train":
        # MOSES's Novelty compares with its train strings as shipped (no canonicalization
        # of 1.58M molecules on a first run)
        train = Molecules(train.smiles, True, train.source)
    return {"Test": test, "TestSF": scaffolds}, train


def run(config: ScoreConfig, tracker: Tracker | None = None) -> ScoreResult:
    """Score ``config.generated`` against ``config.reference``; write the report to
    ``config.out`` and record it with ``tracker``."""
    tracker = tracker or Tracker()
    with engine(config.cluster, config.workers):
        result = _score(config)
    tracker.log_metrics({**result.metrics, **{k: v for k, v in result.counts.items()
                                              if isinstance(v, int)}})
    tracker.log_artifact(config.out, "score")
    return result


def _score(config: ScoreConfig) -> ScoreResult:
    """The report, its tables and plots: the per-molecule work on the engine, the set
    metrics here."""
    start = time.perf_counter()
    raw = _read_generated(config)
    refs, train = _references(config)
    log.info("scoring %d molecules from %s against %s", len(raw), config.generated,
             ", ".join(m.source for m in refs.values() if m is not None))
    report = metrics.Report()
    options = FeatureOptions(_filter_smarts(report), tuple(config.catalogs))
    run: dict[str, Any] = {"workers": config.workers, "chunk_size": config.chunk_size}
    parsed = parse_set(raw, desc="parse generated", **run)
    features = describe_set(parsed, parsed.kl_sample(range(len(raw)), config.kl_samples),
                            options, desc="describe generated", **run)
    for i, smiles in enumerate(parsed.canonical):
        if smiles in features.failures:
            parsed.canonical[i], parsed.reasons[i] = None, features.failures[smiles]
    cache = _cache_dir(config)
    # only the Test reference feeds GuacaMol's KL score: the others skip its descriptor sample
    stats = {name: reference_stats(m.smiles, cache, config.kl_samples if name == "Test" else 0,
                                   config.seed, config.device, label=name, **run,
                                   moses_split=m.source.removeprefix("moses:")
                                   if m.source.startswith("moses:") else None)
             for name, m in refs.items() if m is not None}
    train_set = training_set(train.smiles, train.canonical, cache, **run) if train else None
    report_.add_validity(report, parsed, config.unique_at)
    report_.add_fcd(report, features, {n: m.smiles for n, m in refs.items() if m is not None},
                    config.fcd, cache, config.device, config.batch_size, config.workers,
                    config.chunk_size)
    per_molecule = report_.add_set_metrics(report, parsed, features, stats, train_set,
                                           config.device)
    report_.add_kl(report, features, stats["Test"], config.device)
    if train is None:
        report.skip("Novelty", "no training set: give --train, or a prepared folder or 'moses' "
                    "as --reference")
    table = report_.molecule_table(raw, parsed, features, per_molecule)
    counts = report_.counts(parsed, features, per_molecule)
    result = ScoreResult(config.out, report.metrics, report.notes, counts,
                         time.perf_counter() - start)
    _write_outputs(config, result, table, stats, features, refs, train)
    return result


def _filter_smarts(report: metrics.Report) -> tuple[str, ...] | None:
    try:
        return moses_filter_smarts()
    except (OSError, KeyError, ValueError) as err:
        report.notes["Filters"] = f"MOSES filter SMARTS unavailable (molsets wheel: {err})"
        return None


def _write_outputs(config: ScoreConfig, result: ScoreResult, table: pd.DataFrame,
                   stats: dict[str, ReferenceStats], features: SetFeatures,
                   refs: dict[str, Molecules | None], train: Molecules | None) -> None:
    out, test = config.out, stats["Test"]
    out.mkdir(parents=True, exist_ok=True)
    write_table(table, out / f"molecules.{config.table}")
    reference = test.properties.loc[np.repeat(test.properties.index, test.counts)]
    plots.property_histograms(table.loc[table["valid"]], reference, chem.PROPERTY_NAMES,
                              out / "properties.png", labels=("generated", "reference test"))
    if features.smiles and config.grid_size:
        rng = np.random.default_rng(config.seed)
        picked = np.sort(rng.choice(len(features.smiles),
                                    size=min(config.grid_size, len(features.smiles)),
                                    replace=False))
        props = features.properties.iloc[picked]
        legends = [f"QED {q:.2f}  SA {s:.1f}" for q, s in zip(props["qed"], props["sa"])]
        plots.molecule_grid([features.smiles[i] for i in picked], legends,
                            out / "molecules.png")
    else:
        (out / "molecules.png").unlink(missing_ok=True)  # never leave an earlier run's grid
    sources = {name: {"source": m.source, "n_molecules": len(m.smiles)}
               for name, m in {**refs, "train": train}.items() if m is not None}
    for name, reference in stats.items():
        sources[name]["n_valid"] = reference.n_valid
    write_json({"generated": config.generated, "metrics": result.metrics, "notes": result.notes,
                "counts": result.counts, "references": sources,
                "seconds": round(result.seconds, 2)}, out / "metrics.json")
