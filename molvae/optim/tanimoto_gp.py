"""A Gaussian process over Morgan fingerprints with the Tanimoto kernel: the surrogate that
screens the genetic algorithm's children.

Why: a GA's children are near molecules already scored, so the scored molecules predict which
children deserve an oracle call. A nearest-neighbour average
(:class:`molvae.chem.NeighbourScores`) predicts the mean only; a GP with the Tanimoto kernel
(the kernel of molecular GP-BO, Tripp et al. 2021, GAUCHE) also says how unsure it is, so the
screen can favour children that are predicted good *or* not yet known (upper confidence
bound), and its outputscale and noise are fitted to the scores. scikit-learn fits it; the kernel
is the one part it lacks.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Kernel, WhiteKernel

from molvae import chem


class TanimotoKernel(Kernel):
    """k(x, y) = |x ∧ y| / (|x| + |y| − |x ∧ y|) on 0/1 vectors; no hyperparameters (scale it
    with a ``ConstantKernel``)."""

    def __init__(self) -> None:  # scikit-learn reads a kernel's parameters from this signature
        pass

    def __call__(self, X: np.ndarray, Y: np.ndarray | None = None,
                 eval_gradient: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        Y = X if Y is None else Y
        both = X @ Y.T
        either = X.sum(axis=1)[:, None] + Y.sum(axis=1)[None, :] - both
        k = np.divide(both, either, out=np.zeros_like(both), where=either > 0)
        if eval_gradient:
            return k, np.empty((len(X), len(X), 0))
        return k

    def diag(self, X: np.ndarray) -> np.ndarray:
        return (X.sum(axis=1) > 0).astype(X.dtype)

    def is_stationary(self) -> bool:
        return False


class TanimotoGP:
    """The scores of unscored molecules, predicted from the scored ones by a Tanimoto GP.

    Args:
        size: the most molecules it learns from (the best half and the most recent half of
            them): the exact GP costs the cube of this. The kernel's outputscale and noise
            are fitted by marginal likelihood whenever the molecules known have doubled since
            the last fit, and reused in between, where a fit costs one Cholesky factorization.
        n_bits: Morgan (radius 2) fingerprint length.
    """

    def __init__(self, size: int = 1000, n_bits: int = 2048) -> None:
        self.size, self.n_bits = size, n_bits
        self.fingerprints: list[np.ndarray] = []
        self.scores: list[float] = []
        self._model: GaussianProcessRegressor | None = None
        self._kernel: Kernel = ConstantKernel(1.0, (1e-2, 1e2)) * TanimotoKernel() \
            + WhiteKernel(0.1, (1e-4, 1.0))
        self._tuned_at = 1  # molecules known when the kernel's parameters were last fitted

    def __len__(self) -> int:
        return len(self.scores)

    def _packed(self, smiles: str | None) -> np.ndarray | None:
        """The molecule's Morgan bits, eight to a byte (10,000 molecules take 2.5 MB)."""
        mol = chem.to_mol(smiles) if smiles else None
        return None if mol is None else chem.packed_fingerprint(mol, 2, self.n_bits)

    @staticmethod
    def _bits(packed: Sequence[np.ndarray]) -> np.ndarray:
        """0/1 rows [N, n_bits], as the kernel wants them."""
        return np.unpackbits(np.stack(packed), axis=1).astype(np.float64)

    def add(self, smiles: Sequence[str | None], scores: np.ndarray) -> None:
        """Learn scored molecules; those without a finite score or a parse are skipped."""
        for text, score in zip(smiles, scores, strict=True):
            if np.isfinite(score):
                packed = self._packed(text)
                if packed is not None:
                    self.fingerprints.append(packed)
                    self.scores.append(float(score))
                    self._model = None

    def _fitted(self) -> GaussianProcessRegressor:
        if self._model is None:
            scores = np.asarray(self.scores)
            picked = np.arange(len(scores))
            if len(picked) > self.size:
                best = np.argsort(-scores, kind="stable")[:self.size // 2]
                rest = np.setdiff1d(picked, best)  # ascending: the most recent last
                picked = np.concatenate([best, rest[len(best) - self.size:]])
            tune = len(scores) >= 2 * self._tuned_at  # the outputscale and noise, now and then
            self._model = GaussianProcessRegressor(
                self._kernel, normalize_y=True, optimizer="fmin_l_bfgs_b" if tune else None)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                self._model.fit(self._bits([self.fingerprints[i] for i in picked]),
                                scores[picked])
            if tune:
                self._kernel, self._tuned_at = self._model.kernel_, len(scores)
        return self._model

    def predict(self, smiles: list[str], kappa: float = 1.0) -> np.ndarray:
        """Upper confidence bounds, mean + ``kappa`` · sd; NaN for a SMILES that does not
        parse, or for all before two molecules are known."""
        predicted = np.full(len(smiles), np.nan)
        if len(self) < 2:
            return predicted
        parsed = [(i, bits) for i, text in enumerate(smiles)
                  if (bits := self._packed(text)) is not None]
        if parsed:
            rows = [i for i, _ in parsed]
            mean, sd = self._fitted().predict(self._bits([bits for _, bits in parsed]),
                                              return_std=True)
            predicted[rows] = mean + kappa * sd
        return predicted
