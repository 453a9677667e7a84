"""``report.md`` of ``vision compare``: the thesis table (one row per trunk, reference rows) and its legend."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from policyshare.vision.texture_report import (
    TEXTURE_LEGEND,
    number_cell,
    texture_gallery_markdown,
    texture_reference_cells,
)


def _pct(v: Any) -> str:
    return f"{100 * v:.1f}%" if isinstance(v, float) and math.isfinite(v) else "—"


def markdown_table(metrics: Mapping[str, Any]) -> str:
    """The thesis table (Markdown) from :func:`~policyshare.vision.compare.compare`'s metrics."""
    results: Mapping[str, Any] = metrics["results"]
    base = metrics["baselines"]
    images = list(base.get("texture", {}))
    variants = list(metrics.get("texture_variants", []))
    scale = metrics.get("guidance_scale")
    head = ["trunk", "probe acc.", f"guided acc. (s={scale})", "CAS"]
    for img in images:
        for v in variants:
            head += [f"{img} Gram d. [{v}]", f"{img} shifted d. [{v}]"]
    rows = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for label, r in results.items():
        cells = [f"`{label}`", _pct(r.get("probe", {}).get("accuracy")), _pct(r.get("generate", {}).get("accuracy")),
                 _pct(r.get("generate", {}).get("cas"))]
        for img in images:
            for v in variants:
                cell = r.get("texture", {}).get(img, {}).get(v, {})
                if "error" in cell:
                    cells += ["failed", "failed"]
                else:
                    cells += [number_cell(cell.get("gram")), number_cell(cell.get("shifted_gram"))]
        rows.append("| " + " | ".join(cells) + " |")
    ung = base.get("unguided", {})
    tex = base.get("texture", {})
    deep_ref = next((tex[i]["deep"]["trunk"] for i in images if "deep" in tex.get(i, {})), None)
    for label, acc, cas, key in (("unguided prior (s=0)", ung.get("accuracy"), ung.get("cas"), None),
                                 ("real digits", base.get("judge_accuracy"), base.get("real_cas"), None),
                                 ("held-out crop of the source", None, None, "reference"),
                                 ("initial noise", None, None, "noise"),
                                 (f"deep texture trunk {deep_ref}", None, None, "deep")):
        if key == "deep" and deep_ref is None:
            continue
        cells = [f"*{label}*", "—", _pct(acc), _pct(cas)]
        for img in images:
            for v in variants:
                cells += texture_reference_cells(tex.get(img, {}), key, v)
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def report_markdown(metrics: Mapping[str, Any], wall_seconds: float | None = None) -> str:
    """``report.md``: the table plus what each column means (and the wall time, if given)."""
    data = metrics["data"]
    lines = [
        "# Vision comparison: classification, guided generation and texture synthesis per trunk",
        "",
        markdown_table(metrics),
        f"Data: {data['dataset']} — train {data['train']} (trunks, heads, prior), eval {data['eval']} (judge only), "
        f"test {data['test']} (every accuracy). Probe and texture columns: seed {metrics['seed']}"
        + (f"; wall time {wall_seconds:.0f} s." if wall_seconds is not None else "."),
        "",
        "* **probe acc.**: linear probe on the frozen trunk's features, test split.",
        "* **guided acc.**: share of class-conditional samples of the classes no trunk was labelled with "
        "(thesis.target_classes; prior guided by a noisy classifier on the frozen trunk, at the trunk's best swept "
        "scale, mean over seeds) that an independent RBF-SVM, trained on the eval split, assigns to their target "
        "class. Intervals, matched diversity and paired differences: the sections below.",
        "* **CAS**: classification accuracy score — the same SVM trained on the generated samples only, tested on "
        "real test digits of those classes.",
        TEXTURE_LEGEND,
        "* Reference rows: the prior unguided (targets are arbitrary, so chance); real digits (the judge on real test "
        "digits, and the CAS classifier trained on the real training split); a held-out crop of the same texture "
        "(1 by construction: what a perfect synthesis scores), the initial noise, and syntheses on a trunk deep "
        "enough to carry a texture (texture.deep_trunk).",
        "",
        texture_gallery_markdown(metrics),
    ]
    return "\n".join(lines)
