"""Molecule pictures: grids of 2D depictions drawn by RDKit."""

from __future__ import annotations

from collections.abc import Sequence

from molvae.chem.mol import to_mol


def draw_grid(smiles: Sequence[str], legends: Sequence[str] | None = None, per_row: int = 6,
              size: tuple[int, int] = (250, 250)) -> bytes:
    """A PNG image (bytes) of molecules drawn on a grid; unparsable SMILES are left out."""
    from rdkit.Chem import Draw

    legends = list(legends) if legends is not None else [""] * len(smiles)
    pairs = [(mol, legend) for mol, legend in zip(map(to_mol, smiles), legends)
             if mol is not None]
    options = Draw.MolDrawOptions()
    # one scale for all: a fixed bond length (pixels) rather than "fit the largest molecule",
    # which would shrink every other one; only a molecule too big for its cell is shrunk
    options.drawMolsSameScale = False
    options.fixedBondLength = size[0] / 10
    options.legendFontSize = 14
    options.legendFraction = 0.25
    return Draw.MolsToGridImage([m for m, _ in pairs], molsPerRow=per_row, subImgSize=size,
                                legends=[lg for _, lg in pairs], returnPNG=True,
                                drawOptions=options)
