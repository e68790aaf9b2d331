"""The catalogue's 2-D map: the first two principal components of the z-scored feature vectors, in
numpy. Constant features are multiplied by 0 after centring, as Spark's StandardScaler does."""
from __future__ import annotations

import numpy as np


def zscore_params(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and 1/std (0 where std is 0 or not finite) of the finite values."""
    x = np.asarray(x, dtype=np.float64)
    mean = np.nanmean(np.where(np.isfinite(x), x, np.nan), axis=0) if len(x) else np.zeros(x.shape[1])
    mean = np.nan_to_num(mean)
    std = np.nanstd(np.where(np.isfinite(x), x, np.nan), axis=0, ddof=1) if len(x) > 1 else np.zeros(x.shape[1])
    std = np.nan_to_num(std)
    inv = np.divide(1.0, std, out=np.zeros_like(std), where=std > 0)
    return mean, inv


def fit_pca_2d(x: np.ndarray, max_rows: int = 20_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fit on at most `max_rows` rows (a seeded random subset): returns (mean, inv_std, components (d, 2),
    explained variance ratio (2,)). Fewer than 2 usable rows or dimensions give zero components."""
    x = np.asarray(x, dtype=np.float64)
    n, d = x.shape
    if n > max_rows:
        x = x[np.sort(np.random.default_rng(seed).choice(n, size=max_rows, replace=False))]
    mean, inv = zscore_params(x)
    z = np.nan_to_num((x - mean) * inv)
    comps = np.zeros((d, 2))
    ratio = np.zeros(2)
    if len(z) >= 2 and d >= 1:
        _, s, vt = np.linalg.svd(z, full_matrices=False)
        k = min(2, vt.shape[0])
        comps[:, :k] = vt[:k].T
        var = s ** 2
        if var.sum() > 0:
            ratio[:k] = var[:k] / var.sum()
        # a deterministic sign: the largest-magnitude loading of each component is positive
        for j in range(k):
            if comps[np.argmax(np.abs(comps[:, j])), j] < 0:
                comps[:, j] *= -1
    return mean, inv, comps, ratio


def project(x: np.ndarray, mean: np.ndarray, inv: np.ndarray, comps: np.ndarray, chunk: int = 20_000) -> np.ndarray:
    """(n, d) raw features -> (n, 2) map coordinates, float32, in chunks (bounded memory)."""
    x = np.asarray(x)
    out = np.empty((len(x), comps.shape[1]), dtype=np.float32)
    for start in range(0, len(x), chunk):
        block = np.asarray(x[start:start + chunk], dtype=np.float64)
        out[start:start + chunk] = np.nan_to_num((block - mean) * inv) @ comps
    return out


def pca_2d(x: np.ndarray, max_rows: int = 20_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, d) raw features -> ((n, 2) coordinates, explained variance ratio of the two axes)."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"features must be a 2-D array, got shape {x.shape}")
    if len(x) == 0:
        return np.zeros((0, 2), dtype=np.float32), np.zeros(2)
    mean, inv, comps, ratio = fit_pca_2d(x, max_rows=max_rows, seed=seed)
    return project(x, mean, inv, comps), ratio


def sample_indices(n: int, k: int, keep: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """At most k of n positions for drawing (a seeded random subset, sorted), always including `keep`."""
    keep = np.unique(np.asarray([] if keep is None else keep, dtype=np.int64))
    keep = keep[(keep >= 0) & (keep < n)]
    if n <= k:
        return np.arange(n)
    picked = np.random.default_rng(seed).choice(n, size=k, replace=False)
    return np.unique(np.concatenate([picked, keep]))
