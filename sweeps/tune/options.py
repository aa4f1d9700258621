"""Where Ray runs: a local Ray started for the sweep, or an existing cluster (the flags of
``sweep launch``, ``resume`` and ``rerun``; the Python API's arguments). No ray import here."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class RayOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    address: str | None = Field(
        None,
        description="an existing Ray cluster: auto, or ray://host:port (default: start a local "
        "Ray)",
    )
    num_cpus: int | None = Field(None, description="CPUs for a local Ray (default: all)")
    num_gpus: int | None = Field(
        None,
        description="GPUs for a local Ray (default: those CUDA sees); without CUDA, logical GPUs "
        "that Ray packs trials on, training on CPU",
    )
