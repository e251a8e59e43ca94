"""All RDKit chemistry lives in this package (an architecture test holds that wall).

``mol`` parses and standardizes, ``properties`` describes, ``fingerprints`` compares,
``filters`` flags, ``draw`` depicts. The names below are the ones the rest of molvae uses.
"""

from molvae.chem.draw import draw_grid
from molvae.chem.filters import (
    MOSES_FILTER_ELEMENTS,
    filter_catalog_names,
    matches_catalog,
    pains_alerts,
    passes_moses_filters,
    smarts_catalog,
    structure_alerts,
)
from molvae.chem.fingerprints import (
    NeighbourScores,
    brics_fragments,
    morgan_fingerprint,
    packed_fingerprint,
    ring_scaffold,
    scaffold,
    similarity,
)
from molvae.chem.mol import (
    HEAVY_ATOM_LIMIT,
    ORGANIC_ELEMENTS,
    SMILES_CHAR_LIMIT,
    RejectReason,
    canonical_smiles,
    filter_reason,
    heavy_atom_count,
    nonstereo_smiles,
    parse_with_reason,
    random_smiles,
    screen_smiles,
    standardize_mol,
    to_mol,
)
from molvae.chem.properties import (
    GUACAMOL_DESCRIPTORS,
    PROPERTY_NAMES,
    guacamol_descriptors,
    largest_ring_size,
    penalized_logp,
    properties,
    sa_score,
    smiles_properties,
)
from molvae.chem.sdf import SDF_REASON, read_sdf, write_sdf

__all__ = [
    "GUACAMOL_DESCRIPTORS", "HEAVY_ATOM_LIMIT", "MOSES_FILTER_ELEMENTS", "NeighbourScores",
    "ORGANIC_ELEMENTS",
    "PROPERTY_NAMES", "RejectReason", "SDF_REASON", "SMILES_CHAR_LIMIT", "brics_fragments",
    "canonical_smiles",
    "draw_grid", "filter_catalog_names", "filter_reason", "guacamol_descriptors",
    "heavy_atom_count",
    "largest_ring_size", "matches_catalog", "morgan_fingerprint", "nonstereo_smiles",
    "packed_fingerprint", "pains_alerts", "parse_with_reason", "passes_moses_filters",
    "penalized_logp", "properties", "random_smiles", "read_sdf", "ring_scaffold", "sa_score",
    "scaffold",
    "screen_smiles", "similarity", "smarts_catalog", "smiles_properties", "standardize_mol",
    "structure_alerts", "to_mol", "write_sdf",
]
