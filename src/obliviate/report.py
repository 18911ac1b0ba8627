"""Tables and reports drawn from result rows (and the per-sample outputs saved beside them).

Rows are data: everything here can be redrawn at any time without rerunning anything (`obliviate report RUN_DIR`).
A benchmark directory gets

- ``table.md``: one table per forget spec in the style of LoTUS Tables 1-3: methods as columns (original and gold
  first), metrics as rows, each cell the mean ± std over seeds, the best and second-best method per metric marked;
- ``report.md`` (figures under ``figures/``) and ``report.html`` (self-contained, figures embedded): the tables, the
  Pearson correlation of RF-JSD with JSD across methods (LoTUS Table 7), the NeurIPS 2023 unlearning-challenge score
  (see :mod:`obliviate.challenge`), the time/quality trade-off, per-metric bars and the distribution of the MIA feature.
"""
from __future__ import annotations

import base64
import html
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from .errors import ObliviateError
from .store import RunStore, atomic_write_bytes

# Metric rows of the tables. Rule "low": lower is better. Rule "gold": closest to the gold model is better (the gold
# model's score is the target, not 0 or 1).
METRICS: List[Tuple[str, str, str]] = [
    ("avg_gap", "Avg Gap", "low"),
    ("jsd", "JSD", "low"),
    ("rf_jsd", "RF-JSD", "low"),
    ("acc_forget", "Acc forget", "gold"),
    ("acc_retain", "Acc retain", "gold"),
    ("acc_unseen", "Acc unseen", "gold"),
    ("acc_test", "Acc test", "gold"),
    ("mia", "MIA", "gold"),
    ("mia_efficacy", "MIA-efficacy", "gold"),
    ("seconds", "Time (s)", "low"),
]
TABLE_METRICS = [k for k, _, _ in METRICS]
LABELS = {k: label for k, label, _ in METRICS}
RULES = {k: rule for k, _, rule in METRICS}
REFERENCES = ("original", "gold")
BEST, SECOND = 1, 2


# --------------------------------------------------------------------------------------------------------- rows
def group_rows(rows: List[dict]) -> Dict[str, Dict[str, List[dict]]]:
    """{forget spec: {method: [ok rows over seeds]}}, in first-seen order. Pruned runs form groups of their own."""
    out: Dict[str, Dict[str, List[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r.get("status") == "ok":
            out[group_key(r)][r.get("label", r["method"])].append(r)
    return out


def group_key(row: dict) -> str:
    """A table per forget spec; pruned runs, and each configuration of a directory that holds several (``variant``,
    see :func:`obliviate.grid.labelled_rows`), get tables of their own."""
    prune = row.get("prune")
    key = row["forget"]
    if prune:
        rounds = prune.get("rounds", 1)
        key += f", pruned {prune['sparsity']:g}" + (f" in {rounds} rounds" if rounds > 1 else "")
    return key + (f" [{row['variant']}]" if row.get("variant") else "")


def outputs_path(store: RunStore, run_id: str) -> Path:
    """Where a run's per-sample outputs live: ``artifacts/<row file name>.npz``."""
    return store.root / "artifacts" / (store.row_path(run_id).stem + ".npz")


def method_order(methods, preferred: Optional[List[str]] = None) -> List[str]:
    """Original and gold first, then ``preferred`` (the grid's order), then the rest sorted."""
    methods = list(methods)
    rest = [m for m in (preferred or []) if m in methods and m not in REFERENCES]
    rest += sorted(m for m in methods if m not in REFERENCES and m not in rest)
    return [m for m in REFERENCES if m in methods] + rest


# ------------------------------------------------------------------------------------------------ statistics
@dataclass
class Cell:
    mean: float
    std: float
    n: int


def mean_std(values: List[float]):
    """Mean and population standard deviation (ddof 0) of the finite values."""
    a = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if len(a) == 0:
        return float("nan"), float("nan")
    return float(a.mean()), float(a.std(ddof=0))


def summarize(by_method: Dict[str, List[dict]], keys=TABLE_METRICS) -> Dict[str, Dict[str, Cell]]:
    out = {}
    for m, rows in by_method.items():
        out[m] = {}
        for k in keys:
            vals = [r["metrics"].get(k) for r in rows]
            finite = [v for v in vals if v is not None and np.isfinite(v)]
            out[m][k] = Cell(*mean_std(finite), len(finite))
    return out


def rank(summary: Dict[str, Dict[str, Cell]], key: str, rule: str) -> Dict[str, int]:
    """{method: BEST or SECOND} for one metric among the unlearning methods (original and gold are not ranked).

    "low": the lowest mean wins; "gold": the mean closest to the gold model's. Means are compared as the table shows
    them, so that cells that read the same share a mark. Nothing is marked with fewer than two candidates, or for a
    "gold" rule without a gold model."""
    shown = {m: _as_shown(c[key].mean) for m, c in summary.items() if key in c}
    if rule == "gold":
        if not np.isfinite(shown.get("gold", float("nan"))):
            return {}
        distance = {m: abs(v - shown["gold"]) for m, v in shown.items()}
    else:
        distance = shown
    return best_two(distance)


def best_two(values: Dict[str, float], higher_is_better: bool = False) -> Dict[str, int]:
    """{method: BEST or SECOND} among the unlearning methods with finite values; ties share a mark; nothing with
    fewer than two candidates."""
    sign = -1.0 if higher_is_better else 1.0
    keys = {m: round(sign * v, 12) for m, v in values.items() if m not in REFERENCES and np.isfinite(v)}
    if len(keys) < 2:
        return {}
    levels = sorted(set(keys.values()))[:2]
    return {m: BEST if k == levels[0] else SECOND for m, k in keys.items() if k in levels}


def emphasis_md(text: str, mark: int) -> str:
    return f"**{text}**" if mark == BEST else f"_{text}_" if mark == SECOND else text


def emphasis_html(inner: str, mark: int) -> str:
    return f"<b>{inner}</b>" if mark == BEST else f"<u>{inner}</u>" if mark == SECOND else inner


def fmt_number(x: float, like: Optional[float] = None) -> str:
    """Three decimals, fewer for large values, scientific for small non-zero ones (JSD is often ~1e-4).
    ``like``: format as that value is formatted (a std in the style of its mean)."""
    ref = x if like is None else like
    if not np.isfinite(x):
        return "–"
    if ref != 0 and abs(ref) < 0.01:
        return f"{x:.2e}"
    digits = 0 if abs(ref) >= 100 else 1 if abs(ref) >= 10 else 3
    return f"{x:.{digits}f}"


def _as_shown(x: float) -> float:
    return float(fmt_number(x)) if np.isfinite(x) else float("nan")


def fmt(mean: float, std: float, n: int) -> str:
    if not np.isfinite(mean):
        return "–"
    text = fmt_number(mean)
    return f"{text} ± {fmt_number(std, like=mean)}" if n > 1 else text


# ---------------------------------------------------------------------------------------------------- tables
@dataclass
class Table:
    """One forget spec's table: ``columns`` are methods, ``cells[metric][method] = (text, mark)``."""
    spec: str
    title: str
    columns: List[str]
    headers: List[str]
    cells: Dict[str, Dict[str, Tuple[str, int]]]
    seeds: List[int]
    presets: Dict[str, str] = field(default_factory=dict)   # method -> preset files its rows recorded


def build_table(spec: str, by_method: Dict[str, List[dict]], preferred: Optional[List[str]] = None) -> Table:
    summary = summarize(by_method)
    columns = method_order(by_method, preferred)
    seeds = sorted({r["seed"] for rs in by_method.values() for r in rs})
    headers = [m if len(by_method[m]) == len(seeds) else f"{m} (n={len(by_method[m])})" for m in columns]
    cells = {}
    for key, _, rule in METRICS:
        marks = rank(summary, key, rule)
        cells[key] = {m: (fmt(summary[m][key].mean, summary[m][key].std, summary[m][key].n), marks.get(m, 0))
                      for m in columns}
    first = next(iter(by_method.values()))[0]
    title = f"{first['dataset']} / {first['model']} / forget {spec} (seeds {', '.join(map(str, seeds))})"
    presets = {m: ", ".join(sorted({r["preset"] for r in by_method[m] if r.get("preset")})) for m in columns}
    return Table(spec, title, columns, headers, cells, seeds, presets)


def _row_label(key: str) -> str:
    return f"{LABELS[key]} {'↓' if RULES[key] == 'low' else '≈ gold'}"


def table_markdown(table: Table) -> str:
    lines = ["| metric | " + " | ".join(table.headers) + " |", "|---|" + "---:|" * len(table.columns)]
    for key in TABLE_METRICS:
        cells = [emphasis_md(*table.cells[key][m]) for m in table.columns]
        lines.append(f"| {_row_label(key)} | " + " | ".join(cells) + " |")
    if any(table.presets.values()):
        lines.append("| preset | " + " | ".join(table.presets.get(m) or "–" for m in table.columns) + " |")
    return "\n".join(lines)


def table_html(table: Table) -> str:
    def cell(text, m):
        # mean above, "± std" in small type below: keeps wide tables (many methods) within the page
        mean, _, std = text.partition(" ± ")
        inner = html.escape(mean) + (f'<br><span class="sd">± {html.escape(std)}</span>' if std else "")
        return f"<td>{emphasis_html(inner, m)}</td>"
    head = "".join(f'<th class="{"ref" if m in REFERENCES else "method"}">{html.escape(h)}</th>'
                   for m, h in zip(table.columns, table.headers))
    body = "".join(f"<tr><th>{html.escape(_row_label(k))}</th>"
                   + "".join(cell(*table.cells[k][m]) for m in table.columns) + "</tr>" for k in TABLE_METRICS)
    if any(table.presets.values()):
        body += "<tr><th>preset</th>" + "".join(f"<td>{html.escape(table.presets.get(m) or '–')}</td>"
                                               for m in table.columns) + "</tr>"
    return f'<table><thead><tr><th>metric</th>{head}</tr></thead><tbody>{body}</tbody></table>'


def markdown_table(by_method: Dict[str, List[dict]], spec: str = "") -> str:
    return table_markdown(build_table(spec, by_method))


def gap_line(by_method: Dict[str, List[dict]]) -> str:
    """How far the original is from the gold model on the forget set: the room unlearning has to work in."""
    if "original" not in by_method or "gold" not in by_method:
        return ""
    o = {k: mean_std([r["metrics"][k] for r in by_method["original"]])[0] for k in ("acc_forget", "mia")}
    g = {k: mean_std([r["metrics"][k] for r in by_method["gold"]])[0] for k in ("acc_forget", "mia")}
    return (f"Original vs gold on the forget set: accuracy {o['acc_forget']:.3f} vs {g['acc_forget']:.3f} "
            f"(gap {100 * (o['acc_forget'] - g['acc_forget']):.1f} points); MIA {o['mia']:.3f} vs {g['mia']:.3f}.")


LEGEND = ("Cells: mean ± std over seeds (population std). Best per metric in bold, second best underlined "
          "(Markdown: italic) among the unlearning methods; ↓ lower is better, ≈ gold: closest to the gold model is "
          "better. Original and gold are not ranked. Time: seconds of the unlearning run (gold: retraining; "
          "original: training).")


# ------------------------------------------------------------------------------------------------ correlation
@dataclass
class Correlation:
    per_seed: Dict[int, float]     # Pearson r across methods, one seed at a time
    mean: float                    # mean ± std of per_seed
    std: float
    on_means: float                # r across methods on seed-averaged JSD and RF-JSD
    n_methods: int


def _pearson(x: List[float], y: List[float]) -> float:
    from scipy.stats import pearsonr
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")  # two points always correlate perfectly; a constant has no correlation
    return float(pearsonr(x, y)[0])


def rf_jsd_correlation(by_method: Dict[str, List[dict]]) -> Correlation:
    """Pearson correlation of RF-JSD with JSD across methods (LoTUS Table 7: 0.92 ± 0.04).

    The original model counts as a method (unlearning that does nothing); the gold model does not (its JSD to itself
    is 0 by construction). Needs at least three methods with both metrics."""
    methods = [m for m in by_method if m != "gold"]
    by_seed: Dict[int, Dict[str, Tuple[float, float]]] = defaultdict(dict)
    for m in methods:
        for r in by_method[m]:
            j, f = r["metrics"].get("jsd"), r["metrics"].get("rf_jsd")
            if j is not None and f is not None and np.isfinite(j) and np.isfinite(f):
                by_seed[r["seed"]][m] = (j, f)
    per_seed = {s: _pearson(*zip(*v.values())) if len(v) >= 3 else float("nan") for s, v in sorted(by_seed.items())}
    finite = [r for r in per_seed.values() if np.isfinite(r)]
    means = [(mean_std([by_seed[s][m][0] for s in by_seed if m in by_seed[s]])[0],
              mean_std([by_seed[s][m][1] for s in by_seed if m in by_seed[s]])[0])
             for m in methods if any(m in v for v in by_seed.values())]
    on_means = _pearson(*zip(*means)) if len(means) >= 3 else float("nan")
    mean, std = mean_std(finite)
    return Correlation(per_seed, mean, std, on_means, len(means))


CLASS_NOTE = (" RF-JSD is an instance-unlearning measure: its reference is the original model on unseen samples of "
              "the forgotten class, which a model that forgot the whole class should not match, so it is not expected "
              "to track JSD for class forgetting.")


def correlation_text(c: Correlation, spec: str = "") -> str:
    note = CLASS_NOTE if spec.startswith("class:") else ""
    if c.n_methods < 3:
        return (f"Pearson r(RF-JSD, JSD) across methods: needs at least 3 methods with both metrics "
                f"(the original counts, the gold model does not); this grid has {c.n_methods}.")
    if not np.isfinite(c.on_means) and not np.isfinite(c.mean):
        return (f"Pearson r(RF-JSD, JSD) across {c.n_methods} methods: undefined, JSD or RF-JSD does not vary across "
                f"methods.{note}")
    seeds = ", ".join(f"seed {s}: {fmt_number(r)}" for s, r in c.per_seed.items())
    per = f"{fmt_number(c.mean)} ± {fmt_number(c.std, like=c.mean)}" if np.isfinite(c.mean) else "–"
    return (f"Pearson r(RF-JSD, JSD) across {c.n_methods} methods (original included, gold excluded): "
            f"{per} over seeds ({seeds}); on seed means {fmt_number(c.on_means)}. LoTUS reports 0.92 ± 0.04 "
            f"(instance unlearning).{note}")


# ----------------------------------------------------------------------------------------- challenge score
def _load(path: Path, cache: Dict[Path, dict]) -> Optional[dict]:
    if path not in cache:
        if not path.exists():
            cache[path] = None
        else:
            with np.load(path, allow_pickle=False) as z:
                cache[path] = {k: z[k] for k in z.files}
    return cache[path]


def challenge_scores(store: RunStore, by_method: Dict[str, List[dict]], loaded: Optional[dict] = None) -> dict:
    """{method: ChallengeResult} for the original and every unlearning method with outputs for at least two seeds
    that also have the gold model's outputs; RA and TA are averaged over those seeds."""
    from .challenge import challenge_score, logit_confidence
    loaded = {} if loaded is None else loaded
    gold = {r["seed"]: r for r in by_method.get("gold", [])}
    out = {}
    for m, rows in by_method.items():
        if m == "gold":
            continue
        per_seed, acc = {}, []
        for r in rows:
            g = gold.get(r["seed"])
            if g is None:
                continue
            a, b = _load(outputs_path(store, r["run_id"]), loaded), _load(outputs_path(store, g["run_id"]), loaded)
            if a is None or b is None or not np.array_equal(a["forget_idx"], b["forget_idx"]):
                continue
            per_seed[r["seed"]] = (a["forget_idx"], logit_confidence(a["forget_logits"], a["forget_labels"]),
                                   logit_confidence(b["forget_logits"], b["forget_labels"]))
            acc.append([r["metrics"][k] for k in ("acc_retain", "acc_test")] +
                       [g["metrics"][k] for k in ("acc_retain", "acc_test")])
        if len(per_seed) >= 2:
            ra_u, ta_u, ra_g, ta_g = np.mean(acc, axis=0)
            out[m] = challenge_score(per_seed, ra_u, ra_g, ta_u, ta_g)
    return out


CHALLENGE_COLUMNS = ["method", "models per side", "examples", "F (forget quality)", "RA / RA gold", "TA / TA gold",
                     "score ↑"]


def challenge_rows(scores: dict, preferred: Optional[List[str]] = None) -> List[Tuple[List[str], int]]:
    """Table rows (cells, mark of the score); the best and second-best score among unlearning methods are marked."""
    marks = best_two({m: _as_shown(s.score) for m, s in scores.items()}, higher_is_better=True)
    def models(s):
        return str(s.n_models) if s.min_models in (0, s.n_models) else f"{s.min_models}–{s.n_models}"
    return [([m, models(s), str(s.n_examples), fmt_number(s.quality), fmt_number(s.retain_ratio),
              fmt_number(s.test_ratio), fmt_number(s.score)], marks.get(m, 0))
            for m, s in ((m, scores[m]) for m in method_order(scores, preferred))]


CHALLENGE_NOTE = ("NeurIPS 2023 unlearning-challenge score: per forget example, the logit-scaled confidence under the N "
                  "unlearned and N gold models (one per seed) is attacked with threshold rules (delta 1e-5); points "
                  "2^-floor(epsilon/0.5), F = their mean, score = F × RA ratio × TA ratio. An example is scored when it "
                  "is in the forget set of at least two seeds, pairing the unlearned and gold models of those seeds "
                  "(class specs: every example; random specs: only examples drawn by several seeds). With N = 2 an "
                  "example scores 1 or 0 only.")


# ------------------------------------------------------------------------------------------------- figures
@dataclass
class Figure:
    name: str        # file name under figures/
    caption: str
    png: bytes


def _summary_points(summary, ykey):
    """{method: (time mean, time std, y mean, y std)}; the original has no unlearning time (it is drawn as a line)."""
    return {m: (c["seconds"].mean, c["seconds"].std, c[ykey].mean, c[ykey].std) for m, c in summary.items()
            if m != "original" and c["seconds"].mean > 0 and np.isfinite(c[ykey].mean)}


def figures(store: RunStore, groups: Dict[str, Dict[str, List[dict]]], preferred: Optional[List[str]] = None,
            loaded: Optional[dict] = None) -> List[Figure]:
    """The trade-off over every spec, then per spec the metric bars and the MIA-feature distributions."""
    loaded = {} if loaded is None else loaded
    summaries = {spec: summarize(bm) for spec, bm in groups.items()}
    out = [_tradeoff_figure(summaries, preferred)]
    for i, (spec, bm) in enumerate(groups.items()):
        out.append(_bars_figure(f"bars-{i + 1}.png", spec, summaries[spec], method_order(bm, preferred)))
        entropy = _entropy_figure(f"entropy-{i + 1}.png", spec, store, bm, method_order(bm, preferred), loaded)
        if entropy is not None:
            out.append(entropy)
    return out


def _tradeoff_figure(summaries: Dict[str, Dict[str, Dict[str, Cell]]], preferred) -> Figure:
    from . import plots
    has_gold = all("gold" in s for s in summaries.values())
    ykey = "avg_gap" if has_gold else "rf_jsd"  # RF-JSD needs no gold model
    points = {spec: _summary_points(s, ykey) for spec, s in summaries.items()}
    baselines = {spec: s["original"][ykey].mean for spec, s in summaries.items() if "original" in s}
    order = method_order(set().union(*summaries.values()), preferred)
    caption = (f"{LABELS[ykey]} against unlearning time (log scale), mean ± std over seeds; "
               + ("the gold model sits at its retraining time; " if has_gold else "")
               + "the dashed line is the original model (no unlearning). Lower left is better.")
    return Figure("tradeoff.png", caption, plots.tradeoff(points, LABELS[ykey], order=order, baselines=baselines))


def _bars_figure(name: str, spec: str, summary: Dict[str, Dict[str, Cell]], order: List[str]) -> Figure:
    from . import plots
    values = {LABELS[k]: {m: (summary[m][k].mean, summary[m][k].std) for m in order} for k in TABLE_METRICS}
    targets = {LABELS[k]: summary["gold"][k].mean for k in TABLE_METRICS if RULES[k] == "gold" and "gold" in summary}
    caption = (f"forget {spec}: every metric, mean ± std over seeds"
               + ("; dashed: the gold model's value (the target for accuracies and MIA)." if targets else "."))
    return Figure(name, caption, plots.metric_bars(values, order, targets, log_scale={LABELS["seconds"]}))


def _entropy_figure(name: str, spec: str, store: RunStore, by_method: Dict[str, List[dict]], order: List[str],
                    loaded: dict) -> Optional[Figure]:
    from . import plots
    samples, xmax = {}, 0.0
    for m in order:
        parts = [d for r in by_method[m] if (d := _load(outputs_path(store, r["run_id"]), loaded)) is not None]
        if parts:
            samples[m] = {split: np.concatenate([d[f"entropy_{split}"] for d in parts])
                          for split in ("forget", "test", "retain")}
            xmax = max(xmax, math.log(parts[0]["forget_logits"].shape[1]))  # entropy <= ln(number of classes)
    if not samples:
        return None
    caption = (f"forget {spec}: distribution of the MIA feature (entropy of the softmax output) on forget, test and "
               f"retain samples, all seeds pooled"
               + (". An unlearned model should look like the gold model." if "gold" in samples else "."))
    return Figure(name, caption, plots.feature_distributions(samples, "entropy (nats)", xmax=xmax))


# --------------------------------------------------------------------------------------------------- reports
def _grid_info(store: RunStore) -> dict:
    path = store.root / "grid.json"
    try:
        return json.loads(path.read_text()) if path.exists() else {}
    except json.JSONDecodeError:
        return {}


@dataclass
class Section:
    spec: str
    table: Table
    gap: str
    correlation: str
    challenge: List[Tuple[List[str], int]]
    challenge_missing: str


def sections(store: RunStore, rows: List[dict], preferred: Optional[List[str]] = None,
             loaded: Optional[dict] = None) -> List[Section]:
    out = []
    for spec, bm in group_rows(rows).items():
        table = build_table(spec, bm, preferred)
        scores = challenge_scores(store, bm, loaded)
        missing = ""
        if not scores:
            have = sum(outputs_path(store, r["run_id"]).exists() for r in bm.get("gold", []))
            missing = ("Unlearning-challenge score: needs per-sample outputs (artifacts/*.npz) of the gold model and "
                       f"of a method for at least two seeds; this spec has {len(table.seeds)} seed(s), {have} with "
                       "the gold model's outputs.")
        out.append(Section(spec, table, gap_line(bm), correlation_text(rf_jsd_correlation(bm), spec),
                           challenge_rows(scores, preferred), missing))
    return out


def tables_markdown(rows: List[dict], preferred: Optional[List[str]] = None) -> str:
    parts = []
    for spec, by_method in group_rows(rows).items():
        table = build_table(spec, by_method, preferred)
        parts.append(f"## {table.title}\n")
        line = gap_line(by_method)
        if line:
            parts.append(line + "\n")
        parts.append(table_markdown(table) + "\n")
    if parts:
        parts.append(LEGEND + "\n")
    parts.extend(_failed_markdown(rows))
    return "\n".join(parts) + "\n"


def _failed_markdown(rows):
    failed = [r for r in rows if r.get("status") == "failed"]
    if not failed:
        return []
    return ["## Failed runs\n"] + [f"- {r['run_id']}: {r.get('error', '')}" for r in failed]


def _preferred(store: RunStore) -> List[str]:
    return list(_grid_info(store).get("methods", []))


def classifier_rows(store: RunStore) -> List[dict]:
    """The rows of classifier runs, labelled by configuration (other families draw their own tables)."""
    from .grid import labelled_rows
    return [r for r in labelled_rows(store.rows()) if r.get("family", "vision") == "vision"]


def write_tables(store: RunStore, rows: Optional[List[dict]] = None) -> str:
    rows = classifier_rows(store) if rows is None else rows
    text = "# Results\n\n" + tables_markdown(rows, _preferred(store))
    store.write_text("table.md", text)
    return text


def _heading(store: RunStore, rows: List[dict]) -> List[str]:
    ok = [r for r in rows if r.get("status") == "ok"]
    lines = [f"Run directory: {store.root}"]
    if ok:
        first = ok[0]
        seeds = sorted({r["seed"] for r in ok})
        methods = method_order({r["method"] for r in ok}, _preferred(store))
        lines.append(f"Dataset {first['dataset']}, model {first['model']}; forget specs "
                     f"{', '.join(dict.fromkeys(r['forget'] for r in ok))}; seeds {', '.join(map(str, seeds))}; "
                     f"models {', '.join(methods)}.")
        if "threads" in first:
            lines.append(f"Torch threads: {first['threads']}; determinism settings: {first.get('determinism', {})}.")
        v = first.get("versions", {})
        if v:
            lines.append("Versions: " + ", ".join(f"{k} {v[k]}" for k in ("obliviate", "torch", "python", "platform")
                                                  if k in v) + ".")
    return lines


def report_markdown(store: RunStore, rows: List[dict], secs: List[Section], figs: List[Figure]) -> str:
    by_name = {f.name: f for f in figs}
    parts = ["# Unlearning benchmark report\n", *(f"{line}\n" for line in _heading(store, rows))]
    if "tradeoff.png" in by_name:
        f = by_name["tradeoff.png"]
        parts += ["## Trade-off\n", f"![{f.caption}](figures/{f.name})\n", f"{f.caption}\n"]
    for i, s in enumerate(secs):
        parts += [f"## {s.table.title}\n"]
        if s.gap:
            parts.append(s.gap + "\n")
        parts += [table_markdown(s.table) + "\n", LEGEND + "\n", s.correlation + "\n",
                  "### Unlearning-challenge score\n"]
        if s.challenge:
            parts += ["| " + " | ".join(CHALLENGE_COLUMNS) + " |", "|---|" + "---:|" * (len(CHALLENGE_COLUMNS) - 1)]
            parts += ["| " + " | ".join(cells[:-1] + [emphasis_md(cells[-1], m)]) + " |" for cells, m in s.challenge]
            parts += ["", CHALLENGE_NOTE + "\n"]
        else:
            parts.append(s.challenge_missing + "\n")
        for name in (f"bars-{i + 1}.png", f"entropy-{i + 1}.png"):
            if name in by_name:
                parts += [f"![{by_name[name].caption}](figures/{name})\n", f"{by_name[name].caption}\n"]
    parts.extend(_failed_markdown(rows))
    return "\n".join(parts) + "\n"


CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1500px;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.85em; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.45em; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f3f3f3; white-space: normal; max-width: 7em; vertical-align: bottom; }
thead th.ref { background: #e8e8e8; color: #555; }
tbody th { font-weight: normal; background: #fafafa; text-align: left; }
.wrap { overflow-x: auto; } .note { color: #555; font-size: 0.9em; max-width: 1100px; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; max-width: 1100px; } .failed { color: #a00; }
.sd { font-size: 0.85em; color: #666; }
"""


def report_html(store: RunStore, rows: List[dict], secs: List[Section], figs: List[Figure]) -> str:
    e = html.escape
    by_name = {f.name: f for f in figs}

    def figure(name):
        if name not in by_name:
            return ""
        f = by_name[name]
        data = base64.b64encode(f.png).decode("ascii")
        return (f'<figure><img alt="{e(f.caption)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{e(f.caption)}</figcaption></figure>")

    def challenge(s):
        if not s.challenge:
            return f'<p class="note">{e(s.challenge_missing)}</p>'
        head = "".join(f"<th>{e(c)}</th>" for c in CHALLENGE_COLUMNS)
        body = ""
        for cells, m in s.challenge:
            body += ("<tr>" + "".join(f"<td>{e(c)}</td>" for c in cells[:-1])
                     + f"<td>{emphasis_html(e(cells[-1]), m)}</td></tr>")
        return (f'<div class="wrap"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'
                f'<p class="note">{e(CHALLENGE_NOTE)}</p>')

    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             "<title>Unlearning benchmark report</title>", f"<style>{CSS}</style>", "</head>", "<body>",
             "<h1>Unlearning benchmark report</h1>", *(f"<p>{e(line)}</p>" for line in _heading(store, rows))]
    if "tradeoff.png" in by_name:
        parts += ["<h2>Trade-off</h2>", figure("tradeoff.png")]
    for i, s in enumerate(secs):
        parts += [f"<h2>{e(s.table.title)}</h2>"]
        if s.gap:
            parts.append(f"<p>{e(s.gap)}</p>")
        parts += [f'<div class="wrap">{table_html(s.table)}</div>', f'<p class="note">{e(LEGEND)}</p>',
                  f"<p>{e(s.correlation)}</p>", "<h3>Unlearning-challenge score</h3>", challenge(s),
                  figure(f"bars-{i + 1}.png"), figure(f"entropy-{i + 1}.png")]
    failed = [r for r in rows if r.get("status") == "failed"]
    if failed:
        parts += ["<h2>Failed runs</h2>", "<ul>"]
        parts += [f'<li class="failed">{e(r["run_id"])}: {e(r.get("error", ""))}</li>' for r in failed]
        parts.append("</ul>")
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"


def write_report(store: RunStore, plots: bool = True, rows: Optional[List[dict]] = None) -> Dict[str, Path]:
    """Write table.md, report.md (figures under figures/) and the self-contained report.html; returns their paths.
    ``rows``: labelled classifier rows (default: read from the store)."""
    rows = classifier_rows(store) if rows is None else [r for r in rows if r.get("family", "vision") == "vision"]
    if not rows:
        raise ObliviateError(f"{store.root} holds no classifier result rows (expected JSON files under "
                             f"{store.rows_dir})")
    preferred = _preferred(store)
    loaded: dict = {}
    secs = sections(store, rows, preferred, loaded)
    groups = group_rows(rows)
    figs = figures(store, groups, preferred, loaded) if plots and groups else []
    for f in figs:
        atomic_write_bytes(store.root / "figures" / f.name, f.png)
    write_tables(store, rows)
    store.write_text("report.md", report_markdown(store, rows, secs, figs))
    store.write_text("report.html", report_html(store, rows, secs, figs))
    return {name: store.root / name for name in ("table.md", "report.md", "report.html")}
