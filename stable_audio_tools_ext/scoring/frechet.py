"""The Fréchet distance between two sets of embeddings, and whether a set is large enough for it.

The distance fits a Gaussian to each set (mean and covariance) and measures
``|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))``, as FID and FAD do (here on CLAP audio
embeddings). Its covariance term needs many more samples than dimensions: with fewer, the
covariances are rank-deficient and the value mostly measures the sample size, so every result
comes with the number of embeddings it rests on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Added to both covariances' diagonals. A set with fewer samples than dimensions has a singular
# covariance whose product with another has no reliable square root (sqrtm returns NaN/Inf or large
# complex parts); the ridge makes both positive definite. It moves the distance by about
# EPSILON * dim, far below the differences between real sets.
EPSILON = 1e-6


@dataclass(frozen=True)
class SetSize:
    """How many embeddings a set has, and a warning when that is too few for a meaningful distance."""

    count: int
    warning: str | None


def set_size(embeddings: np.ndarray, name: str) -> SetSize:
    """The size of ``embeddings`` (n, dim), with a warning when ``n`` is below the dimension ``dim``."""
    count, dim = np.shape(embeddings)
    warning = None
    if count < dim:
        warning = (
            f"{name}: {count} files, fewer than the {dim} dimensions of the embedding: the covariance is "
            f"rank-deficient and the Fréchet distance mostly reflects the number of files; use at least {dim} "
            "(better several times as many) to compare models with it"
        )
    return SetSize(count, warning)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """The Fréchet distance between embedding sets ``a`` (n, dim) and ``b`` (m, dim); >= 0, 0 for equal sets.

    Computed in float64; the small negative values the subtraction can leave for (nearly) identical
    sets are clipped to 0.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"two (count, dim) sets of the same dim are needed, got shapes {a.shape} and {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"each set needs at least 2 embeddings for a covariance, got {len(a)} and {len(b)}")
    ridge = EPSILON * np.eye(a.shape[1])
    cov_a, cov_b = np.cov(a, rowvar=False) + ridge, np.cov(b, rowvar=False) + ridge
    mean_term = float(np.sum((a.mean(axis=0) - b.mean(axis=0)) ** 2))
    cov_term = float(np.trace(cov_a) + np.trace(cov_b) - 2.0 * _trace_sqrt_product(cov_a, cov_b))
    return max(0.0, mean_term + cov_term)


def _trace_sqrt_product(cov_a: np.ndarray, cov_b: np.ndarray) -> float:
    """tr((S_a S_b)^(1/2)) of two symmetric positive definite matrices, from two symmetric eigendecompositions.

    S_a S_b is similar to S_a^(1/2) S_b S_a^(1/2), which is symmetric: its eigenvalues are real and
    non-negative, and the trace of the root is the sum of their square roots. This is what
    ``scipy.linalg.sqrtm(S_a @ S_b)``'s trace gives (pytorch-fid, stable-audio-metrics), about 20
    times faster at 1024 dimensions (FD_openl3's: 13 s -> under 1 s on 2 cores), without the
    complex round-off of a general matrix root.
    """
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T
    product = root_a @ cov_b @ root_a
    return float(np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((product + product.T) / 2), 0.0, None))))
