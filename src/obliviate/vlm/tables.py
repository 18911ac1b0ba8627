"""Vision-language tables and report from rows only: Mem / For / H and per-domain accuracy per forget spec (mean ±
std over seeds, in %), their average over forget specs (the paper's protocol), and the feature figure (test image
features by domain, before and after unlearning) for the first seed of each forget spec. ``obliviate report`` redraws
them without rerunning anything."""
from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Dict, List

import numpy as np

from ..store import RunStore, atomic_write_bytes

ORDER = ["original", "domain-baseline", "adu+instapg", "adu+ddl", "adu", "bbf"]
HEADLINE = ["h", "mem", "for"]


def _fmt(values, percent: bool = True) -> str:
    a = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if len(a) == 0:
        return "–"
    a = a * 100 if percent else a
    digits = 1
    return f"{a.mean():.{digits}f} ± {a.std():.{digits}f}" if len(a) > 1 else f"{a.mean():.{digits}f}"


def _order(methods) -> List[str]:
    return [m for m in ORDER if m in methods] + sorted(m for m in methods if m not in ORDER)


def _name(r: dict) -> str:
    return "original (zero-shot)" if r["method"] == "original" else r.get("label", r["method"])


def _groups(rows: List[dict]) -> Dict[str, Dict[str, List[dict]]]:
    groups: Dict[str, Dict[str, List[dict]]] = {}
    for r in rows:
        if r.get("status") == "ok" and r.get("family") == "vlm":
            key = r["forget"] + (f" [{r['variant']}]" if r.get("variant") else "")
            groups.setdefault(key, {}).setdefault(r.get("label", r["method"]), []).append(r)
    return groups


def tables_markdown(rows: List[dict]) -> str:
    groups = _groups(rows)
    parts = []
    for key in sorted(groups):
        by_method = groups[key]
        first = next(iter(by_method.values()))[0]
        domains = [k.split("/", 1)[1] for k in first["metrics"] if k.startswith("acc/")]
        seeds = sorted({r["seed"] for rs in by_method.values() for r in rs})
        parts.append(f"## {first['dataset']} / {first['model']} / {key} (seeds {', '.join(map(str, seeds))})\n")
        parts.append("| model | H | Mem | For | " + " | ".join(domains) + " | seconds |")
        parts.append("|" + "---|" * (len(domains) + 5))
        for m in _order(by_method):
            rs = by_method[m]
            cells = [_fmt([r["metrics"].get(k) for r in rs]) for k in HEADLINE]
            cells += [_fmt([r["metrics"].get(f"acc/{d}") for r in rs]) for d in domains]
            cells.append(_fmt([r.get("seconds") for r in rs], percent=False))
            parts.append(f"| {_name(rs[0])} | " + " | ".join(cells) + " |")
        parts.append("")
    by_variant: Dict[str, Dict[str, List[dict]]] = {}
    specs: Dict[str, set] = {}
    for key, by_method in groups.items():  # averages over specs of one kind (domain or class) and configuration
        spec = key.split(" [", 1)[0]
        variant = (spec.split(":", 1)[0], key.split(" [", 1)[1] if " [" in key else "")
        specs.setdefault(variant, set()).add(spec)
        for m, rs in by_method.items():
            by_variant.setdefault(variant, {}).setdefault(m, []).extend(rs)
    for variant, by_method in sorted(by_variant.items()):
        if len(specs[variant]) < 2:
            continue
        title = ", ".join(sorted(specs[variant])) + (f" [{variant[1]}" if variant[1] else "")
        parts.append(f"## Average over forget specs {title}: mean ± std over every (forget spec, seed)\n")
        parts.append("| model | H | Mem | For | runs |")
        parts.append("|---|---|---|---|---|")
        for m in _order(by_method):
            rs = by_method[m]
            parts.append(f"| {_name(rs[0])} | " + " | ".join(_fmt([r["metrics"].get(k) for r in rs]) for k in HEADLINE)
                         + f" | {len(rs)} |")
        parts.append("")
    failed = [r for r in rows if r.get("status") == "failed"]
    if failed:
        parts.append("## Failed runs\n")
        parts += [f"- {r['method']} seed {r['seed']} {r['forget']}: {r.get('error', '')}" for r in failed]
        parts.append("")
    return "\n".join(parts) if parts else "No finished vision-language runs yet.\n"


def features_file(store: RunStore, row: dict) -> Path:
    return store.root / "artifacts" / (store.row_path(row["run_id"]).stem + ".npz")


def draw_figures(store: RunStore, rows: List[dict]) -> List[Path]:
    """The feature figure of every method, for the first seed of each forget spec (from the saved .npz features)."""
    from .figures import pca_by_domain
    out = []
    for key, by_method in sorted(_groups(rows).items()):
        if "original" not in by_method:
            continue
        seed = min(r["seed"] for r in by_method["original"])
        original = next(r for r in by_method["original"] if r["seed"] == seed)
        before_path = features_file(store, original)
        if not before_path.exists():
            continue
        with np.load(before_path) as z:
            before, domains = z["features"].astype(np.float32), z["domains"]
        names = list(original["config"]["common"]["domains"])
        forget_domains = [names.index(n) for n in key.split(" [")[0].split(":", 1)[1].split(",")] \
            if key.startswith("domain:") else []
        for m in _order(by_method):
            if m == "original":
                continue
            row = next((r for r in by_method[m] if r["seed"] == seed), None)
            if row is None or not features_file(store, row).exists():
                continue
            with np.load(features_file(store, row)) as z:
                after = z["features"].astype(np.float32)
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{key}-s{seed}-{m}")
            path = store.root / "figures" / f"features-{safe}.png"
            atomic_write_bytes(path, pca_by_domain(before, after, domains, names, forget_domains,
                                                   f"{m}, {key}, seed {seed}"))
            out.append(path)
    return out


def write_tables(store: RunStore, rows: List[dict]) -> None:
    """table.md, report.md (table and figures) and a self-contained report.html."""
    text = tables_markdown(rows)
    store.write_text("table.md", text)
    figures = draw_figures(store, rows)
    md = ["# Vision-language unlearning report\n", text, "## Image features by domain, before and after unlearning\n"]
    md += [f"![{p.stem}](figures/{p.name})\n" for p in figures]
    store.write_text("report.md", "\n".join(md))
    imgs = "".join(f"<h3>{html.escape(p.stem)}</h3><img src=\"data:image/png;base64,"
                   f"{base64.b64encode(p.read_bytes()).decode()}\" alt=\"{html.escape(p.stem)}\">" for p in figures)
    store.write_text("report.html", "<!doctype html><html><head><meta charset=\"utf-8\"><title>obliviate vlm report"
                                    "</title></head><body><h1>Vision-language unlearning report</h1><pre>"
                     + html.escape(text) + "</pre><h2>Image features by domain, before and after unlearning</h2>"
                     + imgs + "</body></html>\n")
