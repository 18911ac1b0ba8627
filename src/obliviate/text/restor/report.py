"""RESTOR's table (``table.md``) and figure (``restor.png``) from rows only (``obliviate report`` redraws them)."""
from __future__ import annotations

from typing import Dict, List

import numpy as np

from ...store import RunStore, atomic_write_bytes
from ..tables import _fmt

REFERENCES = ("clean", "corrupted")
COLUMNS = ["acc", "corrupted_rate", "neither", "recovery", "lp_clean", "lp_corrupted", "lp_random", "utility"]

LEGEND = ("RESTOR (Rezaei et al. 2024): the clean model, the corrupted model (trained further on documents stating "
          "wrong facts about a few entities, mixed with correct documents), and each method unlearning the "
          "corruption documents from the corrupted model. acc: fraction of probes whose greedy answer states the "
          "clean value; corrupted_rate: states the corrupted value; neither: states neither (forgetting both is not "
          "recovery: a method with low corrupted_rate and high neither has erased, not recovered). recovery: "
          "(acc - acc_corrupted) / (acc_clean - acc_corrupted), 1 = the clean answers are back, 0 = still corrupted, "
          "NaN when the corruption did not lower the accuracy. lp_*: mean per-token log-probability of the clean, "
          "corrupted and a random answer. utility: fact accuracy on facts no document contradicts (retain probes; "
          "with user files without retain probes, the correct documents' token probability). Timings are in the "
          "rows.\n\n")


def _value(row: dict, key: str):
    v = row["metrics"].get(key)
    return v if isinstance(v, (int, float)) else None


def _groups(rows: List[dict]) -> Dict[str, Dict[str, List[dict]]]:
    groups: Dict[str, Dict[str, List[dict]]] = {}
    for r in rows:
        if r.get("status") == "ok" and r.get("family") == "restor":
            key = f"{r['dataset']} / {r['model']}" + (f" [{r['variant']}]" if r.get("variant") else "")
            groups.setdefault(key, {}).setdefault(r.get("label", r["method"]), []).append(r)
    return groups


def _order(by_method: Dict[str, List[dict]]) -> List[str]:
    return [m for m in REFERENCES if m in by_method] + sorted(m for m in by_method if m not in REFERENCES)


def restor_markdown(rows: List[dict]) -> str:
    parts = []
    for key, by_method in _groups(rows).items():
        seeds = sorted({r["seed"] for rs in by_method.values() for r in rs})
        parts += [f"## {key} (seeds {', '.join(map(str, seeds))})\n",
                  "| model | " + " | ".join(COLUMNS) + " | collapsed |", "|" + "---|" * (len(COLUMNS) + 2)]
        order = _order(by_method)
        for m in order:
            rs = by_method[m]
            cells = [_fmt([_value(r, k) for r in rs]) for k in COLUMNS]
            flags = sum(bool(r.get("collapsed")) for r in rs)
            parts.append(f"| {m} | " + " | ".join(cells) + f" | {flags}/{len(rs)} |")
        notes = sorted({r["metrics"]["recovery_note"] for rs in by_method.values() for r in rs
                        if r["metrics"].get("recovery_note")})
        parts += [""] + [f"Note: recovery {n}." for n in notes] + ([""] if notes else [])
        entities = sorted({e for rs in by_method.values() for r in rs for e in r["metrics"].get("per_entity", {})})
        if entities:
            parts += ["Per entity: acc / corrupted_rate / neither (recovery).\n",
                      "| model | " + " | ".join(entities) + " |", "|" + "---|" * (len(entities) + 1)]
            for m in order:
                cells = []
                for e in entities:
                    per = [r["metrics"]["per_entity"][e] for r in by_method[m] if e in r["metrics"]["per_entity"]]
                    cells.append(" / ".join(_fmt([p[k] for p in per]) for k in ("acc", "corrupted_rate", "neither"))
                                 + f" ({_fmt([p['recovery'] for p in per])})")
                parts.append(f"| {m} | " + " | ".join(cells) + " |")
            parts.append("")
    failed = [r for r in rows if r.get("family") == "restor" and r.get("status") == "failed"]
    if failed:
        parts.append("## Failed runs\n")
        parts.extend(f"- {r['run_id']}: {r.get('error', '')}" for r in failed)
    return "\n".join(parts) + "\n"


def restor_figure(rows: List[dict]) -> bytes:
    """Per model: the share of answers stating the clean value, the corrupted value and neither (grouped bars), and
    the recovery ratio (no bar where it is undefined)."""
    from ...plots import _figure, _png
    groups = _groups(rows)
    fig = _figure(max(7.0, 0.9 * max((len(g) for g in groups.values()), default=1) + 3), 4.2 * max(1, len(groups)))
    axes = np.atleast_2d(fig.subplots(max(1, len(groups)), 2, squeeze=False))
    for (key, by_method), (ax_acc, ax_rec) in zip(groups.items(), axes):
        order = _order(by_method)
        x = np.arange(len(order))
        mean = lambda m, k: np.nanmean([_value(r, k) if _value(r, k) is not None else np.nan  # noqa: E731
                                        for r in by_method[m]])
        for j, (k, color) in enumerate((("acc", "#2ca02c"), ("corrupted_rate", "#d62728"), ("neither", "#7f7f7f"))):
            ax_acc.bar(x + (j - 1) * 0.27, [mean(m, k) for m in order], width=0.27, color=color, label=k)
        ax_acc.set_xticks(x, order, rotation=55, ha="right", fontsize=8)
        ax_acc.set_ylim(0, 1.05)
        ax_acc.set_title(f"{key}: greedy answers stating each value", fontsize=9)
        ax_acc.legend(fontsize=7, frameon=False)
        rec = np.array([mean(m, "recovery") for m in order], dtype=float)
        ok = np.isfinite(rec)
        ax_rec.bar(x[ok], rec[ok], color="#1f77b4")
        for y in (0.0, 1.0):
            ax_rec.axhline(y, color="#333", ls="--", lw=0.8)
        ax_rec.set_xticks(x, order, rotation=55, ha="right", fontsize=8)
        ax_rec.set_title("recovery ratio (1 = clean back, 0 = still corrupted)", fontsize=9)
        for ax in (ax_acc, ax_rec):
            ax.grid(True, axis="y", alpha=0.25)
    return _png(fig)


def write_restor_report(store: RunStore, rows: List[dict] = None) -> str:
    """table.md and restor.png of a RESTOR run directory; default: every restor row of the store."""
    if rows is None:
        from ...grid import labelled_rows
        rows = labelled_rows(store.rows())
    text = "# RESTOR: knowledge recovery\n\n" + LEGEND + restor_markdown(rows)
    store.write_text("table.md", text)
    if _groups(rows):
        atomic_write_bytes(store.root / "restor.png", restor_figure(rows))
    return text


__all__ = ["restor_markdown", "restor_figure", "write_restor_report"]
