"""The texture parts of ``report.md``: reference cells, the legend and the gallery of texture PNGs.

Reads :func:`~policyshare.vision.compare.compare`'s metrics (plain data), so the end-to-end
report can embed the same gallery.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def number_cell(v: Any) -> str:
    """``0.123`` for a finite float, ``—`` otherwise."""
    return f"{v:.3f}" if isinstance(v, float) and math.isfinite(v) else "—"


def texture_reference_cells(tex: Mapping[str, Any], key: str | None, variant: str) -> list[str]:
    """The two texture cells of a reference row (``reference``, ``noise`` or ``deep`` per variant)."""
    d = tex.get(key, {}) if key else {}
    if key == "deep":
        d = d.get(variant, {})
        if "error" in d:
            return ["failed", "failed"]
    return [number_cell(d.get("gram")), number_cell(d.get("shifted_gram"))]


TEXTURE_LEGEND = (
    "* **Gram d. / shifted d.** (texture): how far a synthesis is from its source texture under an ensemble of "
    "held-out judges of different architectures and depths (random conv nets with 3x3, 5x5 and 7x7/11x11 kernels, "
    "a multi-scale pyramid, Gabor filter-bank energies, intensity histograms and co-occurrence matrices), never the "
    "trunk that generated it. Each judge's distance is divided by its distance for a held-out crop of the same "
    "texture, and the cell is the **worst** judge's ratio: 1 means as close as another piece of the real texture, "
    "above 1 is worse — **lower is better, 1 is the floor a perfect synthesis reaches**. A judge is used for a "
    "texture only after it ranks the held-out crop above the other bundled textures and noise. [gram]: synthesis "
    "matched Gramians only (Gatys et al. 2015); [gram+shift]: also shifted Gramians (Berger & Memisevic 2016).")


def texture_gallery_markdown(metrics: Mapping[str, Any], prefix: str = "") -> str:
    """The texture PNGs as a Markdown table with a legend: source and held-out crop, then per trunk each variant.

    Args:
        metrics: :func:`~policyshare.vision.compare.compare`'s metrics.
        prefix: prepended to every image path (the vision run folder relative to the report).
    """
    base = metrics["baselines"].get("texture", {})
    variants = list(metrics.get("texture_variants", []))
    if not base:
        return ""
    names = {"gram": "Gram only", "gram+shift": "Gram + shifts"}
    lines = ["## Textures", "",
             "Columns: **source** — the crop every synthesis matches; **held-out crop** — another piece of the same "
             "texture, the best a synthesis can look; then, per trunk, **Gram only** (Gatys et al. 2015) and "
             "**Gram + shifts** (Berger & Memisevic 2016): syntheses from noise on the trunk's conv layers. Under "
             "each synthesis: the worst judge's ratio to the held-out crop (1 = as close as real texture; lower "
             "is better) and the judges it fooled (scored it at least as close as the held-out crop), if any.", ""]
    for img, b in base.items():
        lines += [f"### {img}", "",
                  "| source | held-out crop |", "|:---:|:---:|",
                  f"| ![source]({prefix}textures/{img}_source.png) | "
                  f"![held-out]({prefix}textures/{img}_reference.png) |",
                  "", "| trunk | " + " | ".join(names.get(v, v) for v in variants) + " |",
                  "|---|" + "|".join([":---:"] * len(variants)) + "|"]
        rows: list[tuple[str, str, Mapping[str, Any]]] = [
            (label, f"{label}/{img}_", r.get("texture", {}).get(img, {})) for label, r in metrics["results"].items()]
        if "deep" in b:
            rows.append((f"{b['deep']['trunk']} (deep reference)", f"textures/{img}_deep_", b["deep"]))
        for label, stem, cells in rows:
            out = [f"`{label}`"]
            for v in variants:
                cell = cells.get(v, {})
                if "error" in cell or not cell:
                    out.append("failed" if "error" in cell else "—")
                    continue
                fooled = f" fooled: {', '.join(cell['fooled'])}" if cell.get("fooled") else ""
                out.append(f"![{label} {v}]({prefix}{stem}{v.replace('+', '_')}.png)<br>"
                           f"{number_cell(cell.get('gram'))} / {number_cell(cell.get('shifted_gram'))}{fooled}")
            lines.append("| " + " | ".join(out) + " |")
        failed = [e for e, ok in b.get("validation", {}).get("passed", {}).items() if not ok]
        lines += ["", f"Judges validated on {img}: {', '.join(b.get('validation', {}).get('validated', []))}"
                  + (f"; left out (did not rank the held-out crop first): {', '.join(failed)}" if failed else "") + ".",
                  ""]
    return "\n".join(lines) + "\n"
