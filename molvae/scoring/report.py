"""The score report, metric by metric: each is computed from the per-molecule features and the
reference statistics, and an undefined one is recorded with its reason (never a silent NaN)."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from molvae import chem
from molvae.scoring import fcd, metrics
from molvae.scoring.features import N_CONTINUOUS_KL, ParsedSet, SetFeatures
from molvae.scoring.reference import ReferenceStats, reference_fcd

log = logging.getLogger(__name__)

MOSES_PROPERTIES = {"logP": "logp", "SA": "sa", "QED": "qed", "weight": "mw"}


def add_validity(report: metrics.Report, parsed: ParsedSet, unique_at: Sequence[int]) -> None:
    """valid and unique@k for each k."""
    valid = [s for s in parsed.canonical if s is not None]
    report.add("valid", lambda: _ratio(len(valid), len(parsed.canonical), "no input molecules"))
    for k in unique_at:
        report.add(f"unique@{k}", partial(metrics.unique_at_k, valid, k))


def add_set_metrics(report: metrics.Report, parsed: ParsedSet, features: SetFeatures,
                    stats: dict[str, ReferenceStats], train_set: set[str] | None,
                    device: str) -> dict[str, np.ndarray]:
    """SNN/Frag/Scaf per reference, IntDiv, Filters, property distances, Novelty, unique and
    catalog filters; returns per-molecule columns aligned with ``features.smiles``."""
    valid = [s for s in parsed.canonical if s is not None]
    weights, fps = features.counts, features.fingerprints
    per_molecule: dict[str, np.ndarray] = {}
    fragments = metrics.weighted_counter(features.fragments, weights)
    scaffolds = metrics.weighted_counter(features.scaffolds, weights)
    for name, ref in stats.items():
        found = report.add(f"SNN/{name}", partial(metrics.snn, fps, weights, ref.fingerprints,
                                                  device), pick=lambda r: r[0])
        if found is not None:
            per_molecule[f"nearest_{name.lower()}_similarity"] = found[1]
        report.add(f"Frag/{name}", partial(metrics.cosine_similarity, ref.fragments, fragments))
        report.add(f"Scaf/{name}", partial(metrics.cosine_similarity, ref.scaffolds, scaffolds))
    diversity = report.add("IntDiv", lambda: metrics.internal_diversity(
        fps, weights, (1, 2), device), pick=lambda d: d[1])
    if diversity is None:
        report.skip("IntDiv2", report.notes["IntDiv"])
    else:
        report.add("IntDiv2", lambda: diversity[2])
    if features.passes_filters is None:
        report.skip("Filters", report.notes.get("Filters", "MOSES filter SMARTS unavailable"))
    else:
        report.add("Filters", partial(_weighted_share, features.passes_filters, weights))
    test = stats["Test"]
    for key, column in MOSES_PROPERTIES.items():
        report.add(key, partial(metrics.property_distance,
                                features.properties[column].to_numpy(), weights,
                                test.properties[column].to_numpy(), test.counts))
    if train_set is not None:
        found = report.add("Novelty", lambda: metrics.novelty(features.smiles, train_set),
                           pick=lambda r: r[0])
        if found is not None:
            per_molecule["novel"] = found[1]
    report.add("unique", lambda: _ratio(len(features.smiles), len(valid), "no valid molecules"))
    for name, passes in features.catalog_passes.items():
        report.add(f"filters/{name.lower()}", partial(_weighted_share, passes, weights))
    return per_molecule


def _ratio(part: int, whole: int, reason: str) -> float:
    if whole == 0:
        raise metrics.UndefinedMetric(reason)
    return part / whole


def _weighted_share(flags: np.ndarray, weights: np.ndarray) -> float:
    if len(flags) == 0:
        raise metrics.UndefinedMetric("no valid generated molecules")
    return float(np.average(flags, weights=weights))


def add_fcd(report: metrics.Report, features: SetFeatures,
            references: dict[str, Sequence[Any]], enabled: bool, cache: Path | None,
            device: str, batch_size: int, workers: int, chunk_size: int) -> None:
    """FCD against each reference (name -> its molecules). fcd_torch is a third-party model:
    if it fails for any reason, FCD is skipped with the cause in the notes rather than
    failing the report."""
    names = list(references)
    if not enabled:
        for name in names:
            report.skip(f"FCD/{name}", "turned off (fcd: false / --no-fcd)")
        return
    try:
        generated = _guarded_fcd(fcd.chemnet_statistics, features.smiles, features.counts,
                                 device, batch_size)
    except metrics.UndefinedMetric as why:
        for name in names:
            report.skip(f"FCD/{name}", str(why))
        return
    def distance(name: str) -> float:
        reference = _guarded_fcd(reference_fcd, references[name], cache, device, batch_size,
                                 workers, chunk_size, name)
        return fcd.frechet_distance(reference, generated)

    for name in names:
        report.add(f"FCD/{name}", partial(distance, name))


def _guarded_fcd(function: Callable[..., Any], *args: Any) -> Any:
    try:
        return function(*args)
    except metrics.UndefinedMetric:
        raise
    except Exception as err:  # any fcd_torch failure only skips FCD
        log.warning("FCD skipped: %r", err)
        raise metrics.UndefinedMetric(f"fcd_torch failed: {err!r}") from None


def add_kl(report: metrics.Report, features: SetFeatures, test: ReferenceStats,
           device: str) -> None:
    """GuacaMol's KL-divergence score (and each divergence) against the test statistics."""
    fps = features.kl_fingerprints
    similarity = metrics.nearest_similarity(fps, fps, device, exclude_self=True) \
        if len(fps) >= 2 else np.zeros(len(fps))
    try:
        divergences, reasons = metrics.kl_divergences(
            test.kl_descriptors, features.kl_descriptors, chem.GUACAMOL_DESCRIPTORS,
            N_CONTINUOUS_KL, test.kl_similarity, similarity)
    except metrics.UndefinedMetric as why:
        report.skip("KL_score", str(why))
        return
    report.add("KL_score", lambda: metrics.kl_score(divergences))
    for name, value in divergences.items():
        if value is None:
            report.skip(f"KL_div/{name}", reasons[name])
        else:
            report.metrics[f"KL_div/{name}"] = value


def molecule_table(raw: list[Any], parsed: ParsedSet, features: SetFeatures,
                   per_molecule: dict[str, np.ndarray]) -> pd.DataFrame:
    """One row per input row: as given, validity and reason, canonical form, descriptions."""
    table = pd.DataFrame({
        "row": np.arange(len(raw)),
        "smiles": [r if isinstance(r, str) else None for r in raw],
        "valid": [s is not None for s in parsed.canonical],
        "reason": parsed.reasons,
        "canonical_smiles": parsed.canonical,
    })
    table["duplicate"] = table["valid"] & table["canonical_smiles"].duplicated()
    described = features.properties.copy()
    described.insert(0, "canonical_smiles", features.smiles)
    described["scaffold"] = features.scaffolds
    for name, column in per_molecule.items():
        described[name] = column
    if features.passes_filters is not None:
        described["passes_filters"] = features.passes_filters
    for name, passes in features.catalog_passes.items():
        described[f"passes_{name.lower()}"] = passes
    return table.merge(described, on="canonical_smiles", how="left")


def counts(parsed: ParsedSet, features: SetFeatures,
           per_molecule: dict[str, np.ndarray]) -> dict[str, Any]:
    """What came in and where it went: every input row is valid or has a counted reason."""
    reasons = Counter(r.split(":")[0] for r in parsed.reasons if r is not None)
    n_valid = int(features.counts.sum())
    counts: dict[str, Any] = {
        "n_input": len(parsed.canonical), "n_valid": n_valid,
        "n_invalid": sum(reasons.values()), "n_unique": len(features.smiles),
        "n_duplicates": n_valid - len(features.smiles)}
    if "novel" in per_molecule:
        counts["n_novel"] = int(per_molecule["novel"].sum())
    counts["invalid_reasons"] = dict(reasons.most_common())
    return counts
