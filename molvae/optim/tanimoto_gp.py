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
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, Kernel, WhiteKernel

from molvae import chem


class TanimotoKernel(Kernel):
    """k(x, y) = |x ∧ y| / (|x| + |y| − |x ∧ y|) on 0/1 vectors, the first ``stop`` columns
    (all when None); no hyperparameters (scale it with a ``ConstantKernel``)."""

    def __init__(self, stop: int | None = None) -> None:  # scikit-learn reads a kernel's
        self.stop = stop                                   # parameters from this signature

    def __call__(self, X: np.ndarray, Y: np.ndarray | None = None,
                 eval_gradient: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        Y = X if Y is None else Y
        X, Y = X[:, :self.stop], Y[:, :self.stop]
        both = X @ Y.T
        either = X.sum(axis=1)[:, None] + Y.sum(axis=1)[None, :] - both
        k = np.divide(both, either, out=np.zeros_like(both), where=either > 0)
        if eval_gradient:
            return k, np.empty((len(X), len(X), 0))
        return k

    def diag(self, X: np.ndarray) -> np.ndarray:
        return (X[:, :self.stop].sum(axis=1) > 0).astype(X.dtype)

    def is_stationary(self) -> bool:
        return False


class DescriptorRBF(RBF):
    """A squared-exponential kernel on the columns from ``start`` on (the descriptors), one
    length scale per column, so the fit learns which descriptors the scores follow."""

    def __init__(self, start: int = 0, length_scale: float | np.ndarray = 1.0,
                 length_scale_bounds: tuple[float, float] = (1e-1, 1e2)) -> None:
        self.start = start
        super().__init__(length_scale, length_scale_bounds)

    def __call__(self, X: np.ndarray, Y: np.ndarray | None = None,
                 eval_gradient: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        return super().__call__(X[:, self.start:], None if Y is None else Y[:, self.start:],
                                eval_gradient)

    def diag(self, X: np.ndarray) -> np.ndarray:
        return np.ones(len(X))


class TanimotoGP:
    """The scores of unscored molecules, predicted from the scored ones by a Tanimoto GP.

    Args:
        size: the most molecules it learns from (the best half and the most recent half of
            them): the exact GP costs the cube of this. The kernel's parameters are fitted by
            marginal likelihood whenever the molecules known have doubled since the last fit,
            and reused in between, where a fit costs one Cholesky factorization.
        n_bits: Morgan (radius 2) fingerprint length.
        descriptors: multiply the Tanimoto kernel by a squared-exponential kernel on the
            descriptors of GuacaMol's benchmarks (logP, TPSA, weight, Bertz complexity, H-bond
            donors and acceptors, rotatable bonds, rings), standardized, one length scale
            each: why: most design objectives weigh such properties beside the structure, and
            two molecules alike in bits can differ in them (a fingerprint does not count
            what TPSA adds up).
    """

    def __init__(self, size: int = 1000, n_bits: int = 2048, descriptors: bool = False) -> None:
        self.size, self.n_bits, self.descriptors = size, n_bits, descriptors
        self.fingerprints: list[np.ndarray] = []
        self.values: list[np.ndarray] = []  # descriptors, when used
        self.scores: list[float] = []
        self._model: GaussianProcessRegressor | None = None
        kernel: Kernel = ConstantKernel(1.0, (1e-2, 1e2)) * TanimotoKernel(n_bits)
        if descriptors:
            kernel = kernel * DescriptorRBF(n_bits, np.full(len(chem.GUACAMOL_DESCRIPTORS), 3.0))
        self._kernel = kernel + WhiteKernel(0.1, (1e-4, 1.0))
        self._tuned_at = 1  # molecules known when the kernel's parameters were last fitted
        self._center, self._spread = np.zeros(0), np.ones(0)  # the descriptors' standardization
        self._predicted: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # last predict's features

    def __len__(self) -> int:
        return len(self.scores)

    def _featurized(self, smiles: str | None) -> tuple[np.ndarray, np.ndarray] | None:
        """The molecule's Morgan bits, eight to a byte (10,000 molecules take 2.5 MB), and its
        descriptors (empty when not used); None when it does not parse. The molecules
        scored are mostly those the last :meth:`predict` rated, so their features are kept."""
        if smiles in self._predicted:
            return self._predicted[smiles]
        mol = chem.to_mol(smiles) if smiles else None
        if mol is None:
            return None
        values = np.asarray(chem.guacamol_descriptors(mol)) if self.descriptors else np.zeros(0)
        return chem.packed_fingerprint(mol, 2, self.n_bits), values

    def _matrix(self, rows: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """Rows [N, n_bits + descriptors]: 0/1 bits, then standardized descriptors."""
        bits = np.unpackbits(np.stack([packed for packed, _ in rows]), axis=1).astype(np.float64)
        if not self.descriptors:
            return bits
        values = (np.stack([v for _, v in rows]) - self._center) / self._spread
        return np.hstack([bits, np.clip(values, -5.0, 5.0)])

    def add(self, smiles: Sequence[str | None], scores: np.ndarray) -> None:
        """Learn scored molecules; those without a finite score or a parse are skipped."""
        for text, score in zip(smiles, scores, strict=True):
            if np.isfinite(score):
                features = self._featurized(text)
                if features is not None:
                    self.fingerprints.append(features[0])
                    self.values.append(features[1])
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
            rows = [(self.fingerprints[i], self.values[i]) for i in picked]
            if self.descriptors:
                values = np.stack([v for _, v in rows])
                spread = values.std(axis=0)
                self._center, self._spread = values.mean(axis=0), np.where(spread > 0, spread, 1.0)
            tune = len(scores) >= 2 * self._tuned_at  # the kernel's parameters, now and then
            self._model = GaussianProcessRegressor(
                self._kernel, normalize_y=True, optimizer="fmin_l_bfgs_b" if tune else None)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                self._model.fit(self._matrix(rows), scores[picked])
            if tune:
                self._kernel, self._tuned_at = self._model.kernel_, len(scores)
        return self._model

    def predict(self, smiles: list[str], kappa: float = 1.0) -> np.ndarray:
        """Upper confidence bounds, mean + ``kappa`` · sd; NaN for a SMILES that does not
        parse, or for all before two molecules are known."""
        predicted = np.full(len(smiles), np.nan)
        if len(self) < 2:
            return predicted
        parsed = [(i, features) for i, text in enumerate(smiles)
                  if (features := self._featurized(text)) is not None]
        self._predicted = {smiles[i]: features for i, features in parsed}
        if parsed:
            model = self._fitted()  # sets the standardization the rows below use
            rows = [i for i, _ in parsed]
            mean, sd = model.predict(self._matrix([f for _, f in parsed]), return_std=True)
            predicted[rows] = mean + kappa * sd
        return predicted
