"""Language-model tables from rows: MUSE's six-way metrics and TOFU's per forget spec, scalability and sustainability
series. Drawn from rows only (``obliviate report`` redraws them without rerunning anything)."""
from __future__ import annotations

from typing import Dict, List

import numpy as np

from ..store import RunStore

REFERENCES = ("target", "gold")


# Metrics only: wall-clock seconds stay in the rows (they differ between runs; the table must not)
SIX_WAY = ["fact_f", "fact_r", "prob_f", "prob_r", "verbmem_f", "knowmem_f", "knowmem_r", "privleak", "mink_auc",
           "forget_quality", "model_utility", "truth_ratio_f", "utility_ratio"]


def _fmt(values: List[float]) -> str:
    a = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if len(a) == 0:
        return "–"
    mean = a.mean()
    digits = 1 if abs(mean) >= 10 else 2 if abs(mean) >= 1 else 3
    return f"{mean:.{digits}f} ± {a.std():.{digits}f}" if len(a) > 1 else f"{mean:.{digits}f}"


def _value(row: dict, key: str):
    if key == "utility_ratio":
        return row.get("utility_ratio")
    v = row["metrics"].get(key)
    return v if isinstance(v, (int, float)) else None


def tables_markdown(rows: List[dict]) -> str:
    groups: Dict[str, Dict[str, List[dict]]] = {}
    for r in rows:
        if r.get("status") == "ok":
            forget = r["forget"] + (f" [{r['variant']}]" if r.get("variant") else "")  # one table per configuration
            groups.setdefault(forget, {}).setdefault(r.get("label", r["method"]), []).append(r)
    parts = []
    for forget in sorted(groups, key=_spec_order):
        by_method = groups[forget]
        metrics = [k for k in SIX_WAY if any(_value(r, k) is not None for rs in by_method.values() for r in rs)]
        first = next(iter(by_method.values()))[0]
        seeds = sorted({r["seed"] for rs in by_method.values() for r in rs})
        parts.append(f"## {first['dataset']} / {first['model']} / {forget} (seeds {', '.join(map(str, seeds))})\n")
        parts.append("| method | " + " | ".join(metrics) + " | collapsed |")
        parts.append("|" + "---|" * (len(metrics) + 2))
        order = [m for m in REFERENCES if m in by_method] + sorted(m for m in by_method if m not in REFERENCES)
        for m in order:
            rs = by_method[m]
            cells = [_fmt([_value(r, k) for r in rs]) for k in metrics]
            flags = sum(bool(r.get("collapsed")) for r in rs)
            parts.append(f"| {m} | " + " | ".join(cells) + f" | {flags}/{len(rs)} |")
        parts.append("")
    parts += epoch_table(groups)
    for kind, title in (("scale", "Scalability: forget sets of growing size"),
                        ("sustain", "Sustainability: requests applied one after another")):
        parts += series_table(groups, kind, title)
    failed = [r for r in rows if r.get("status") == "failed"]
    if failed:
        parts.append("## Failed runs\n")
        parts.extend(f"- {r['run_id']}: {r.get('error', '')}" for r in failed)
    return "\n".join(parts) + "\n"


def series_table(groups: Dict[str, Dict[str, List[dict]]], kind: str, title: str) -> List[str]:
    """Method x step table of "verbmem_f / privleak / utility_ratio" for the scaleK or sustainK specs of a grid."""
    steps = sorted((f for f in groups if _spec_order(f)[0] == kind and _spec_order(f)[1] > 0), key=_spec_order)
    if not steps:
        return []
    methods = sorted({m for f in steps for m in groups[f]},
                     key=lambda m: (REFERENCES.index(m) if m in REFERENCES else len(REFERENCES), m))
    keys = ("verbmem_f", "privleak", "utility_ratio")
    out = [f"## {title}\n", f"Each cell: {' / '.join(keys)}.\n",
           "| method | " + " | ".join(steps) + " |", "|" + "---|" * (len(steps) + 1)]
    for m in methods:
        cells = []
        for f in steps:
            rs = groups[f].get(m, [])
            cells.append(" / ".join(_fmt([_value(r, k) for r in rs]) for k in keys)
                         if rs else "–")
        out.append(f"| {m} | " + " | ".join(cells) + " |")
    out.append("")
    return out


EPOCH_KEYS = ("fact_f", "fact_r", "forget_quality")


def epoch_table(groups: Dict[str, Dict[str, List[dict]]]) -> List[str]:
    """With --eval-every-epoch: one line per (method, seed), one cell per epoch, "fact_f / fact_r / forget_quality"
    (the whole path, as TOFU plots it); the selected epoch (chosen without the gold model) is in bold."""
    out = []
    for forget in sorted(groups, key=_spec_order):
        lines = [(m, r) for m, rs in sorted(groups[forget].items()) for r in sorted(rs, key=lambda r: r["seed"])
                 if r.get("epoch_metrics")]
        if not lines:
            continue
        n = max(len(r["epoch_metrics"]) for _, r in lines)
        out += [f"## Every epoch: {forget}\n", f"Each cell: {' / '.join(EPOCH_KEYS)}; in bold the selected epoch.\n",
                "| method | seed | " + " | ".join(str(e + 1) for e in range(n)) + " |", "|" + "---|" * (n + 2)]
        for m, r in lines:
            cells = []
            for e in r["epoch_metrics"]:
                cell = " / ".join(_fmt([e.get(k)]) for k in EPOCH_KEYS)
                cells.append(f"**{cell}**" if e["epoch"] == r.get("selected_epoch") else cell)
            out.append(f"| {m} | {r['seed']} | " + " | ".join(cells + ["–"] * (n - len(cells))) + " |")
        out.append("")
    return out


def _spec_order(spec: str):
    import re
    m = re.fullmatch(r"([a-z]+?)(\d*)", spec)
    return (m.group(1), int(m.group(2) or 0)) if m else (spec, 0)


LEGEND = ("fact_f, fact_r: fraction of forget / retain questions whose greedy answer states the fact. prob_f, prob_r: "
          "length-normalised probability of the answer. "
          "verbmem_f, knowmem_f: ROUGE-L F1 on the forget set (lower = more forgotten; compare with gold). "
          "knowmem_r: on the retain set (utility). privleak: MUSE's PrivLeak on Min-K% (0 ideal, negative = "
          "under-unlearning). forget_quality: TOFU's KS-test p-value against the gold model (higher is better). "
          "model_utility: TOFU's harmonic mean (retain, real authors, world facts). utility_ratio: retain utility "
          "(retain fact accuracy on QA with facts) / the target's; a run below the collapse threshold (or whose model "
          "utility is) is flagged as collapsed. Timings are in the rows.\n\n")


def write_tables(store: RunStore, rows: List[dict] = None) -> str:
    """table.md from (labelled) language-model rows; default: every text row of the store."""
    if rows is None:
        from ..grid import labelled_rows
        rows = labelled_rows(store.rows())
    text = "# Results\n\n" + LEGEND + tables_markdown([r for r in rows if r.get("family") == "text"])
    store.write_text("table.md", text)
    return text
