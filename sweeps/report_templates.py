"""The reports' jinja2 templates (``sweeps/templates/``) and the text helper they share: one
environment for the A/B report, the data-preparation report and ``sweep errors``' errors.md."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import jinja2

TEMPLATES = Path(__file__).parent / "templates"
MD_CLIP = 160  # characters of a text the Markdown shows; the HTML and the JSON files have all


def template_env() -> jinja2.Environment:
    """HTML autoescaped (a model's output cannot inject markup), undefined names an error, the
    ``clip`` filter and ``md_clip``; each report adds its own filters."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(["html", "html.j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["clip"] = clip
    env.globals["md_clip"] = MD_CLIP
    return env


def clip(text: object, limit: int = MD_CLIP) -> str:
    """``text`` on one line, cut at ``limit`` characters with a mark that it was cut."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"
