"""The 20 RDKit-only tasks of the PMO benchmark (Gao et al. 2022), from guacamol's definitions.

PMO scores its tasks with TDC's oracles, which re-implement GuacaMol's goal-directed
objectives. Here each task is the ``objective`` of the guacamol benchmark with the same
parameters as guacamol's ``goal_directed_suite_v2`` (rediscovery: ECFP4, threshold 1.0;
albuterol: FCFP4, 0.75; mestranol: AP, 0.75; and so on). Left out: drd2, gsk3b and jnk3,
which need TDC's trained classifier files.

guacamol (``pip install --no-deps guacamol==0.5.5``; its real needs, numpy, scipy, joblib,
tqdm and RDKit, are molvae's already) imports two things it does not need for these tasks:
``scipy.histogram`` (removed from SciPy; only its distribution metrics use it) and the ``fcd``
package (only its Fréchet benchmark). :func:`guacamol_benchmarks` shims both before importing.

Known difference from the numbers in the PMO paper: the TDC releases of 2022 (PyTDC <= 0.3.7)
counted the total atoms of the isomer objective from the letters of the SMILES string (no
hydrogens, no aromatic lower-case atoms). TDC fixed it in August 2022 (the old one survives as
``zaleplon_mpo_prev``/``isomers_*_prev``); guacamol and today's TDC count every atom, hydrogens
included. That touches isomers_c7h8n2o2, isomers_c9h10n2o2pf2cl, zaleplon_mpo and
sitagliptin_mpo.
"""

from __future__ import annotations

import math
import sys
import types
from collections.abc import Callable
from typing import Any

TASKS = (
    "albuterol_similarity", "amlodipine_mpo", "celecoxib_rediscovery", "deco_hop",
    "fexofenadine_mpo", "isomers_c7h8n2o2", "isomers_c9h10n2o2pf2cl", "median1", "median2",
    "mestranol_similarity", "osimertinib_mpo", "perindopril_mpo", "qed", "ranolazine_mpo",
    "scaffold_hop", "sitagliptin_mpo", "thiothixene_rediscovery", "troglitazone_rediscovery",
    "valsartan_smarts", "zaleplon_mpo",
)

# Left out of this harness: they need TDC's trained classifiers.
CLASSIFIER_TASKS = ("drd2", "gsk3b", "jnk3")


def guacamol_benchmarks() -> types.ModuleType:
    """``guacamol.standard_benchmarks``, imported with the two shims it needs today."""
    import numpy
    import scipy

    if not hasattr(scipy, "histogram"):  # guacamol.utils.chemistry: `from scipy import histogram`
        scipy.histogram = numpy.histogram
    try:
        import fcd  # noqa: F401 -- only guacamol's Fréchet benchmark uses it
    except ImportError:
        sys.modules["fcd"] = types.ModuleType("fcd")
    try:
        from guacamol import standard_benchmarks
    except ImportError as err:
        raise SystemExit(f"the PMO tasks need guacamol: pip install --no-deps guacamol==0.5.5 "
                         f"({err})") from None
    return standard_benchmarks


def _definitions(sb: types.ModuleType) -> dict[str, Callable[[], Any]]:
    """Task name -> guacamol benchmark factory (parameters as in goal_directed_suite_v2)."""
    def rediscovery(smiles: str, name: str) -> Callable[[], Any]:
        return lambda: sb.similarity(smiles, name, fp_type="ECFP4", threshold=1.0,
                                     rediscovery=True)

    return {
        "albuterol_similarity": lambda: sb.similarity(
            "CC(C)(C)NCC(O)c1ccc(O)c(CO)c1", "Albuterol", fp_type="FCFP4", threshold=0.75),
        "amlodipine_mpo": sb.amlodipine_rings,
        "celecoxib_rediscovery": rediscovery(
            "CC1=CC=C(C=C1)C1=CC(=NN1C1=CC=C(C=C1)S(N)(=O)=O)C(F)(F)F", "Celecoxib"),
        "deco_hop": sb.decoration_hop,
        "fexofenadine_mpo": sb.hard_fexofenadine,
        "isomers_c7h8n2o2": sb.isomers_c7h8n2o2,
        "isomers_c9h10n2o2pf2cl": sb.isomers_c9h10n2o2pf2cl,
        "median1": sb.median_camphor_menthol,
        "median2": sb.median_tadalafil_sildenafil,
        "mestranol_similarity": lambda: sb.similarity(
            "COc1ccc2[C@H]3CC[C@@]4(C)[C@@H](CC[C@@]4(O)C#C)[C@@H]3CCc2c1", "Mestranol",
            fp_type="AP", threshold=0.75),
        "osimertinib_mpo": sb.hard_osimertinib,
        "perindopril_mpo": sb.perindopril_rings,
        "qed": sb.qed_benchmark,
        # guacamol has two: the v2 suite's (and TDC's) is ranolazine_mpo, a geometric mean with
        # TPSA; start_pop_ranolazine is the older arithmetic mean without it.
        "ranolazine_mpo": sb.ranolazine_mpo,
        "scaffold_hop": sb.scaffold_hop,
        "sitagliptin_mpo": sb.sitagliptin_replacement,
        "thiothixene_rediscovery": rediscovery(
            "CN(C)S(=O)(=O)c1ccc2Sc3ccccc3C(=CCCN4CCN(C)CC4)c2c1", "Thiothixene"),
        "troglitazone_rediscovery": rediscovery(
            "Cc1c(C)c2OC(C)(COc3ccc(CC4SC(=O)NC4=O)cc3)CCc2c(C)c1O", "Troglitazone"),
        "valsartan_smarts": sb.valsartan_smarts,
        "zaleplon_mpo": sb.zaleplon_with_other_formula,
    }


def make_task(name: str) -> Callable[[str], float]:
    """The scoring function of task ``name``: SMILES -> score in [0, 1].

    guacamol scores a molecule it cannot handle with its ``corrupt_score`` (-1); that is
    recorded as 0, what TDC gives an invalid molecule.
    """
    definitions = _definitions(guacamol_benchmarks())
    if name not in definitions:
        raise ValueError(f"unknown PMO task '{name}' (known: {', '.join(TASKS)})")
    objective = definitions[name]().objective

    def score(smiles: str) -> float:
        value = float(objective.score(smiles))
        return value if math.isfinite(value) and value >= 0 else 0.0

    score.__name__ = name
    return score
