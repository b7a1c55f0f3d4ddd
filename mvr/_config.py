"""Frozen, keyword-only configuration shared by indexing and serving."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from mvr.errors import ConfigError

__all__ = ["FDEConfig", "PoolingConfig", "config_to_dict", "config_from_dict"]


@dataclass(frozen=True, kw_only=True)
class FDEConfig:
    """MUVERA fixed-dimensional-encoding parameters (Google's reference semantics).

    Parameters
    ----------
    dim : int
        Dimension of the input token vectors.
    num_repetitions : int
        R, independent SimHash partitionings whose encodings are concatenated.
    num_simhash_projections : int
        k, sign bits per repetition; each repetition has ``2**k`` partitions.
    projection_dim : int or None
        d_proj of the inner count-sketch ("AMS") projection; ``None`` = identity
        (d_proj = dim).
    fill_empty_partitions : bool
        Documents only: an empty partition takes the point of smallest Hamming
        distance. Encoding queries with this on is an error (as in the reference).
    final_projection_dim : int or None
        Optional final count-sketch projection of the whole FDE (seeded with ``seed``).
    seed : int
        Repetition r uses ``seed + r``.
    """

    dim: int
    num_repetitions: int = 20
    num_simhash_projections: int = 5
    projection_dim: int | None = 16
    fill_empty_partitions: bool = True
    final_projection_dim: int | None = None
    seed: int = 42

    def __post_init__(self) -> None:
        _positive("dim", self.dim)
        _positive("num_repetitions", self.num_repetitions)
        if not isinstance(self.num_simhash_projections, int) or not 0 <= self.num_simhash_projections <= 30:
            raise ConfigError(
                f"num_simhash_projections: expected an int in [0, 30], got {self.num_simhash_projections!r}"
            )
        if self.projection_dim is not None:
            _positive("projection_dim", self.projection_dim)
        if self.final_projection_dim is not None:
            _positive("final_projection_dim", self.final_projection_dim)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ConfigError(f"seed: expected an int, got {self.seed!r}")

    @property
    def num_partitions(self) -> int:
        return 1 << self.num_simhash_projections

    @property
    def effective_projection_dim(self) -> int:
        return self.dim if self.projection_dim is None else self.projection_dim

    @property
    def intermediate_dim(self) -> int:
        """R * 2**k * d_proj: the FDE length before the optional final projection."""
        return self.num_repetitions * self.num_partitions * self.effective_projection_dim

    @property
    def output_dim(self) -> int:
        return self.final_projection_dim or self.intermediate_dim

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FDEConfig:
        return config_from_dict(cls, d)


def _positive(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{name}: expected a positive int, got {value!r}")


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready dict of a config dataclass (for the manifest)."""
    return dataclasses.asdict(cfg)


def config_from_dict(cls: Any, d: dict[str, Any]) -> Any:
    """Rebuild a config dataclass, refusing unknown keys (never silently ignored)."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown keys {unknown}; expected a subset of {sorted(names)}")
    return cls(**d)


@dataclass(frozen=True, kw_only=True)
class PoolingConfig:
    """Token pooling: Ward hierarchical clustering on cosine distance per document.

    Parameters
    ----------
    pool_factor : int
        Tokens merged per cluster: clusters = max(n // pool_factor, 1). 1 = no pooling.
    protected_tokens : int
        The first ``protected_tokens`` tokens of each document are kept as they are.
    normalize : bool
        Re-normalise each cluster mean to unit length. Default ``False`` (plain means,
        as PyLate), chosen by measurement: SciFact nDCG@10 0.7103 vs 0.7093 with
        re-normalised means at pool_factor 2 (``scripts/measure_pool_norm.py``,
        BENCHMARKS.md "Token pooling").
    """

    pool_factor: int = 2
    protected_tokens: int = 0
    normalize: bool = False

    def __post_init__(self) -> None:
        _positive("pool_factor", self.pool_factor)
        if not isinstance(self.protected_tokens, int) or self.protected_tokens < 0:
            raise ConfigError(f"protected_tokens: expected an int >= 0, got {self.protected_tokens!r}")

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PoolingConfig:
        return config_from_dict(cls, d)
