"""``sweep export REF --merged DIR``: base model + LoRA adapter as one plain model directory.

The adapter is merged into the base weights (PEFT's ``merge_and_unload``) and saved with the
tokenizer, so ``AutoModelForCausalLM.from_pretrained(DIR)`` serves it with no PEFT at all. The
directory is written under a temporary name and renamed at the end: an interrupted export leaves
no half-written model behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from sweeps.config import ConfigError
from sweeps.serving.refs import AdapterRef

EXPORT_INFO = "lora_sweep_export.json"


def export_merged(
    adapter: AdapterRef,
    out_dir: Path,
    *,
    base: str | None = None,
    trust_remote_code: bool = False,
    progress: Callable[[str], None] = print,
) -> Path:
    """Merge ``adapter`` into its base model and save both weights and tokenizer to ``out_dir``."""
    out_dir = out_dir.expanduser().resolve()
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ConfigError(f"{out_dir}: already exists and is not an empty directory")
    from peft import PeftModel

    from trainers.models import load_causal_lm, load_tokenizer, resolve_base_model

    base_path = resolve_base_model(base or adapter.base_model, progress=progress).path
    progress(f"Merging {adapter.describe()} into {base_path} ...")
    model = load_causal_lm(base_path, trust_remote_code=trust_remote_code)
    tokenizer = load_tokenizer(base_path, trust_remote_code=trust_remote_code)
    merged = PeftModel.from_pretrained(model, adapter.path).merge_and_unload()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        merged.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        info = {
            "base_model": str(base_path),
            "adapter": str(adapter.path),
            "sweep": adapter.sweep,
            "trial_id": adapter.trial_id,
            "run_id": adapter.run_id,
        }
        (staging / EXPORT_INFO).write_text(json.dumps(info, indent=2))
        if out_dir.exists():
            out_dir.rmdir()  # empty, checked above
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    progress(
        f"Wrote {out_dir}: load it with AutoModelForCausalLM.from_pretrained({str(out_dir)!r})"
    )
    return out_dir
