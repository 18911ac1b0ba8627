"""Benchmark report: LoTUS-style tables, the RF-JSD/JSD correlation, the unlearning-challenge score, the HTML report."""
import base64
import io
import json
import math
import re
from html.parser import HTMLParser

import numpy as np
import pytest

from obliviate import challenge as C
from obliviate import report as R
from obliviate.errors import ObliviateError
from obliviate.store import RunStore, atomic_write_json

SPEC = "random:0.1"
BASE = {"avg_gap": 0.05, "jsd": 0.01, "rf_jsd": 0.02, "acc_forget": 0.9, "acc_retain": 0.99, "acc_unseen": 0.9,
        "acc_test": 0.9, "mia": 0.5, "mia_efficacy": 0.2, "seconds": 1.0}


def row(method, seed, spec=SPEC, status="ok", **metrics):
    rid = f"vision_digits_cnn_{spec}_s{seed}_{method}"
    return {"run_id": rid, "family": "vision", "dataset": "digits", "model": "cnn", "forget": spec, "seed": seed,
            "method": method, "status": status, "config_hash": "c0", "metrics": {**BASE, **metrics}}


def grid_rows(spec=SPEC):
    """Two seeds; gold acc_forget 0.5; c is closest to gold on acc_forget, a second; a has the lowest Avg Gap."""
    out = []
    for seed, (af_a, af_b, af_c) in enumerate([(0.40, 0.70, 0.52), (0.50, 0.70, 0.52)]):
        out += [row("original", seed, spec, acc_forget=0.5, avg_gap=0.0, mia=0.5),  # closest, but never ranked
                row("gold", seed, spec, acc_forget=0.5, avg_gap=0.0, jsd=0.0, mia=0.3),
                row("a", seed, spec, acc_forget=af_a, avg_gap=0.01, mia=0.3),
                row("b", seed, spec, acc_forget=af_b, avg_gap=0.02, mia=0.3),
                row("c", seed, spec, acc_forget=af_c, avg_gap=0.03, mia=0.9)]
    return out


# ------------------------------------------------------------------------------------------------------ tables
def test_table_has_methods_as_columns_and_every_metric_row():
    by_method = R.group_rows(grid_rows())[SPEC]
    table = R.build_table(SPEC, by_method, preferred=["c", "a", "b"])
    assert table.columns == ["original", "gold", "c", "a", "b"]  # references first, then the grid's order
    md = R.table_markdown(table)
    lines = md.splitlines()
    assert lines[0] == "| metric | original | gold | c | a | b |"
    labels = [line.split("|")[1].strip() for line in lines[2:]]
    assert labels == ["Avg Gap ↓", "JSD ↓", "RF-JSD ↓", "Acc forget ≈ gold", "Acc retain ≈ gold", "Acc unseen ≈ gold",
                      "Acc test ≈ gold", "MIA ≈ gold", "MIA-efficacy ≈ gold", "Time (s) ↓"]


def test_cells_are_mean_and_population_std_over_seeds():
    table = R.build_table(SPEC, R.group_rows(grid_rows())[SPEC])
    text, _ = table.cells["acc_forget"]["a"]
    assert text == "0.450 ± 0.050"  # mean of 0.40, 0.50; std ddof 0
    assert table.cells["acc_forget"]["b"][0] == "0.700 ± 0.000"
    one = R.build_table(SPEC, R.group_rows([r for r in grid_rows() if r["seed"] == 0])[SPEC])
    assert one.cells["acc_forget"]["a"][0] == "0.400"  # a single seed has no spread to show
    assert R.fmt(1.5e-4, 2e-5, 2) == "1.50e-04 ± 2.00e-05"  # JSD-sized values stay readable


def test_best_and_second_best_marks():
    table = R.build_table(SPEC, R.group_rows(grid_rows())[SPEC])
    # closest to gold (0.5): c at 0.52, then a at 0.45, b last; original (exactly 0.5) is not ranked
    assert {m: table.cells["acc_forget"][m][1] for m in table.columns} == \
        {"original": 0, "gold": 0, "c": R.BEST, "a": R.SECOND, "b": 0}
    # lower is better
    assert {m: table.cells["avg_gap"][m][1] for m in "abc"} == {"a": R.BEST, "b": R.SECOND, "c": 0}
    # ties share the mark: a and b have the gold model's MIA
    assert {m: table.cells["mia"][m][1] for m in "abc"} == {"a": R.BEST, "b": R.BEST, "c": R.SECOND}
    md = R.table_markdown(table)
    acc_line = next(line for line in md.splitlines() if line.startswith("| Acc forget"))
    assert acc_line.split(" | ")[1:] == ["0.500 ± 0.000", "0.500 ± 0.000", "_0.450 ± 0.050_", "0.700 ± 0.000",
                                         "**0.520 ± 0.000** |"]
    html_table = R.table_html(table)
    assert '<td><b>0.520<br><span class="sd">± 0.000</span></b></td>' in html_table
    assert '<td><u>0.450<br><span class="sd">± 0.050</span></u></td>' in html_table


def test_no_marks_without_a_target_or_a_competitor():
    rows = [r for r in grid_rows() if r["method"] != "gold"]
    table = R.build_table(SPEC, R.group_rows(rows)[SPEC])
    assert all(mark == 0 for _, mark in table.cells["acc_forget"].values())  # no gold model: no target
    assert table.cells["avg_gap"]["a"][1] == R.BEST  # lower-is-better rows still rank
    alone = R.build_table(SPEC, R.group_rows([r for r in grid_rows() if r["method"] in ("gold", "a")])[SPEC])
    assert all(mark == 0 for cells in alone.cells.values() for _, mark in cells.values())


def test_missing_seed_is_shown_in_the_header():
    rows = [r for r in grid_rows() if not (r["method"] == "b" and r["seed"] == 1)]
    table = R.build_table(SPEC, R.group_rows(rows)[SPEC])
    assert table.headers[table.columns.index("b")] == "b (n=1)"


# ------------------------------------------------------------------------------------------------ correlation
def test_rf_jsd_correlation_per_seed_and_over_seeds():
    rng = np.random.default_rng(0)
    rows, expected = [], []
    for seed in range(3):
        jsd = rng.uniform(0, 1, 5)
        rf = 0.5 * jsd + rng.normal(0, 0.1, 5)
        for m, j, f in zip(["original", "m1", "m2", "m3", "m4"], jsd, rf):
            rows.append(row(m, seed, jsd=j, rf_jsd=f))
        rows.append(row("gold", seed, jsd=0.0, rf_jsd=9.0))  # excluded: would dominate the correlation
        expected.append(np.corrcoef(jsd, rf)[0, 1])
    c = R.rf_jsd_correlation(R.group_rows(rows)[SPEC])
    assert c.n_methods == 5
    assert [c.per_seed[s] for s in range(3)] == pytest.approx(expected, abs=1e-12)
    assert c.mean == pytest.approx(np.mean(expected)) and c.std == pytest.approx(np.std(expected))
    by_m = {m: ([r["metrics"]["jsd"] for r in rows if r["method"] == m],
                [r["metrics"]["rf_jsd"] for r in rows if r["method"] == m]) for m in ["original", "m1", "m2", "m3", "m4"]}
    means = np.array([[np.mean(j), np.mean(f)] for j, f in by_m.values()])
    assert c.on_means == pytest.approx(np.corrcoef(means[:, 0], means[:, 1])[0, 1])
    assert "0.92 ± 0.04" in R.correlation_text(c)


def test_rf_jsd_correlation_needs_three_methods():
    rows = [row(m, 0, jsd=j, rf_jsd=j) for m, j in [("original", 0.1), ("a", 0.2), ("gold", 0.0)]]
    c = R.rf_jsd_correlation(R.group_rows(rows)[SPEC])
    assert c.n_methods == 2 and math.isnan(c.mean) and math.isnan(c.on_means)
    assert "needs at least 3 methods" in R.correlation_text(c)


# ------------------------------------------------------------------------------------------- challenge score
def test_logit_confidence_by_hand():
    # p = (e^2, 1, 1) / (e^2 + 2): log p_0 - log(p_1 + p_2) = 2 - log 2;  p_1: 0 - log(e^2 + 1)
    logits = np.array([[2.0, 0.0, 0.0], [2.0, 0.0, 0.0], [1000.0, -1000.0, 0.0]])
    c = C.logit_confidence(logits, [0, 1, 0])
    assert c[0] == pytest.approx(2 - math.log(2))
    assert c[1] == pytest.approx(-math.log(math.exp(2) + 1))
    assert c[2] == pytest.approx(1000.0)  # stable where the softmax saturates


def test_epsilon_by_hand():
    # unlearned 0,1,2,3 vs gold 2.5,3.5,4,5. The only attack with both error rates non-zero that beats chance:
    # "gold iff c >= 3": FPR = 1/4 (the unlearned 3), FNR = 1/4 (the gold 2.5). eps = log(0.75 - delta) - log(0.25)
    eps = C.epsilons([[0, 1, 2, 3]], [[2.5, 3.5, 4, 5]])
    assert eps[0] == pytest.approx(math.log(0.75 - 1e-5) - math.log(0.25))
    assert C.points(eps)[0] == 0.25  # floor(1.0986 / 0.5) = 2
    # the orientation does not matter
    assert C.epsilons([[2.5, 3.5, 4, 5]], [[0, 1, 2, 3]])[0] == pytest.approx(eps[0])
    # perfectly separated: an attack with FPR = FNR = 0 certifies infinity, worth 0 points
    assert C.epsilons([[0, 1]], [[2, 3]])[0] == math.inf and C.points([math.inf])[0] == 0
    # interleaved with two models, and identical: nothing distinguishes them
    assert C.epsilons([[0, 1]], [[0.5, 2]])[0] == 0 and C.epsilons([[1, 1]], [[1, 1]])[0] == 0
    assert C.forget_quality([[0, 1, 2, 3], [0, 1, 2, 3]], [[2.5, 3.5, 4, 5], [10, 11, 12, 13]]) == pytest.approx(0.125)
    assert list(C.points([0.0, 0.49, 0.5, 1.2, 3.0])) == [1, 1, 0.5, 0.25, 2 ** -6]


def _brute_epsilon(u, g, delta=1e-5):
    """Independent re-implementation: a fine grid of thresholds, both orientations, the rules written out."""
    best = 0.0
    u, g = np.asarray(u), np.asarray(g)
    for t in np.linspace(min(u.min(), g.min()) - 1, max(u.max(), g.max()) + 1, 4001):  # finer than the 0.01 grid
        for pos, neg in ((u, g), (g, u)):
            fpr = float(np.mean(neg >= t))
            fnr = float(np.mean(pos < t))
            if fpr == 0 and fnr == 0:
                return math.inf
            if fpr == 0 or fnr == 0:
                continue
            cands = [math.log(1 - delta - a) - math.log(b) for a, b in ((fpr, fnr), (fnr, fpr)) if 1 - delta - a > 0]
            best = max([best] + cands)
    return best


def test_epsilon_matches_a_brute_force_search():
    rng = np.random.default_rng(1)
    u = np.round(rng.normal(0, 1, (12, 6)), 2)
    g = np.round(rng.normal(1.0, 1, (12, 6)), 2)
    eps = C.epsilons(u, g)
    assert eps == pytest.approx([_brute_epsilon(a, b) for a, b in zip(u, g)])
    assert len(set(np.round(eps, 6))) > 3  # the cases differ


def test_final_score_and_pairing_across_seeds():
    assert C.final_score(0.5, 0.9, 1.0, 0.8, 0.9) == pytest.approx(0.4)
    # random specs: seeds draw different forget sets; an example counts where at least two seeds forgot it
    per_seed = {0: (np.array([1, 2, 3]), np.array([10., 20., 30.]), np.array([-10., -20., -30.])),
                1: (np.array([2, 3, 4]), np.array([21., 31., 41.]), np.array([-21., -31., -41.])),
                2: (np.array([3, 5]), np.array([32., 52.]), np.array([-32., -52.]))}
    groups = C.pair_by_example(per_seed)
    assert sorted(groups) == [2, 3]
    np.testing.assert_array_equal(groups[2][0], [[20., 21.]])        # example 2: seeds 0 and 1
    np.testing.assert_array_equal(groups[2][1], [[-20., -21.]])
    np.testing.assert_array_equal(groups[3][0], [[30., 31., 32.]])   # example 3: every seed
    result = C.challenge_score(per_seed, ra_unlearned=0.9, ra_gold=1.0, ta_unlearned=0.8, ta_gold=0.9)
    assert result.n_examples == 2 and result.n_models == 3 and result.min_models == 2
    assert result.quality == 0.0  # both examples perfectly separated
    none = C.challenge_score({0: per_seed[0]}, 1, 1, 1, 1)
    assert none.n_examples == 0 and math.isnan(none.score)


# ----------------------------------------------------------------------------------------------- the report
def write_store(root, with_outputs=True, failed=False):
    """A synthetic benchmark directory: rows for two specs and two seeds, and per-sample outputs where
    method "a" behaves exactly like the gold model and "b" like the original."""
    store = RunStore(root)
    rng = np.random.default_rng(0)
    atomic_write_json(root / "grid.json", {"methods": ["b", "a", "c"]})
    for spec in (SPEC, "class:3"):
        for r in grid_rows(spec):
            store.write_row(r)
            if not with_outputs:
                continue
            seed = r["seed"]
            draw = np.random.default_rng(seed).choice(60, 30, replace=False)  # a random spec: one draw per seed
            idx = np.arange(0, 40, 2) if spec == "class:3" else np.sort(draw)
            labels = idx % 3
            like_gold = r["method"] in ("gold", "a")
            logits = np.zeros((len(idx), 3))
            logits[np.arange(len(idx)), labels] = (-1.0 if like_gold else 6.0) + 0.1 * seed + 0.01 * np.arange(len(idx))
            arrays = dict(forget_idx=idx, forget_labels=labels, forget_logits=logits.astype(np.float32),
                          entropy_forget=rng.uniform(0, 1, len(idx)).astype(np.float32),
                          entropy_retain=rng.exponential(0.01, 50).astype(np.float32),
                          entropy_test=rng.exponential(0.1, 20).astype(np.float32))
            buf = io.BytesIO()
            np.savez_compressed(buf, **arrays)
            path = R.outputs_path(store, r["run_id"])
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(buf.getvalue())
    if failed:
        store.write_row({**row("c", 2), "status": "failed", "error": "NonFiniteLossError: loss <nan>"})
    return store


class StrictHTML(HTMLParser):
    """Records structure errors: a closing tag that does not close the innermost open element, or an unclosed one."""
    VOID = {"meta", "img", "br", "hr", "link", "input", "col", "source", "wbr", "area", "base", "embed", "track"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.errors, self.images, self.tags, self.urls = [], [], [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        self.urls += [v for k, v in attrs.items() if k in ("src", "href") and v]
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
        else:
            self.stack.pop()


def parse_html(text):
    parser = StrictHTML()
    parser.feed(text)
    parser.close()
    return parser


def test_report_html_is_well_formed_self_contained_with_png_figures(tmp_path):
    from matplotlib.image import imread
    store = write_store(tmp_path / "bench", failed=True)
    paths = R.write_report(store)
    text = paths["report.html"].read_text()
    assert text.startswith("<!DOCTYPE html>")
    p = parse_html(text)
    assert p.errors == [] and p.stack == []
    assert p.tags.count("table") == 4  # the metric table and the challenge table of each spec
    assert "script" not in p.tags and "link" not in p.tags
    assert all(u.startswith("data:image/png;base64,") for u in p.urls)  # no external resource
    assert len(p.images) == 5  # trade-off, and bars and entropy per spec
    for src in p.images:
        png = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        img = imread(io.BytesIO(png), format="png")
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    assert "NonFiniteLossError" in text  # failed runs are listed
    md = paths["report.md"].read_text()
    for name in re.findall(r"\]\(figures/([^)]+)\)", md):
        assert (store.root / "figures" / name).read_bytes()[:4] == b"\x89PNG"
    assert (store.root / "table.md").read_text().count("| metric | original | gold | b | a | c |") == 2


def test_challenge_scores_from_saved_outputs(tmp_path):
    store = write_store(tmp_path / "bench")
    by_method = R.group_rows(store.rows())["class:3"]
    scores = R.challenge_scores(store, by_method)
    assert set(scores) == {"original", "a", "b", "c"}
    a, b = scores["a"], scores["b"]
    assert a.n_models == 2 and a.n_examples == 20  # class spec: every forget example, every seed
    assert a.quality == 1.0 and b.quality == 0.0  # a's confidences equal the gold model's; b's are far above
    assert a.score == pytest.approx(1.0 * (0.99 / 0.99) * (0.9 / 0.9))
    random_scores = R.challenge_scores(store, R.group_rows(store.rows())[SPEC])
    assert 0 < random_scores["a"].n_examples < 30  # only examples drawn by both seeds
    md = R.write_report(store, plots=False)["report.md"].read_text()
    assert "| a | 2 | 20 | 1.000 | 1.000 | 1.000 | **1.000** |" in md


def test_report_without_outputs_or_gold_explains_what_is_missing(tmp_path):
    store = write_store(tmp_path / "bench", with_outputs=False)
    md = R.write_report(store, plots=False)["report.md"].read_text()
    assert "needs per-sample outputs" in md
    empty = RunStore(tmp_path / "empty")
    with pytest.raises(ObliviateError, match="no classifier result rows"):
        R.write_report(empty)


def test_report_command(tmp_path, capsys):
    from obliviate.cli import main
    store = write_store(tmp_path / "bench")
    assert main(["report", str(store.root), "--no-plots"]) == 0
    assert "report.html" in capsys.readouterr().out
    assert parse_html((store.root / "report.html").read_text()).errors == []
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_report_keeps_to_classifier_rows_and_hands_text_grids_their_tables(tmp_path, capsys):
    from obliviate.cli import main
    store = write_store(tmp_path / "bench", with_outputs=False)
    text_row = {"run_id": "text_muse_tiny_forget_s0_gold", "family": "text", "dataset": "muse", "model": "tiny",
                "forget": "forget", "seed": 0, "method": "gold", "status": "ok", "metrics": {"verbmem_f": 0.25},
                "config_hash": "c1"}
    store.write_row(text_row)
    md = R.write_report(store, plots=False)["table.md"].read_text()
    assert "muse" not in md and "| metric | original | gold | b | a | c |" in md
    text_only = RunStore(tmp_path / "text")
    text_only.write_row(text_row)
    assert main(["report", str(text_only.root)]) == 0
    table = (text_only.root / "table.md").read_text()
    assert "| gold | 0.250 | 0/1 |" in table and not (text_only.root / "report.html").exists()


# ----------------------------------------------------------------------------------------------- end to end
def test_bench_saves_outputs_and_writes_the_report(tmp_path):
    from obliviate.grid import GridOptions, run_grid
    from obliviate.vision.family import VisionFamily
    family = VisionFamily(dataset="digits", overrides=["recipe.epochs=2", "lotus.epochs=1"], cpu=True, progress=False)
    store = run_grid(family, GridOptions(forgets=["class:3"], methods=["lotus"], seeds=[0, 1], name="g",
                                         root=str(tmp_path), progress=False)).store
    for r in store.rows():
        r.update(r["config"]["cell"])
        with np.load(R.outputs_path(store, r["run_id"])) as z:
            assert z["forget_logits"].shape == (r["n_forget"], 10)
            assert (z["forget_labels"] == 3).all() and len(z["forget_idx"]) == r["n_forget"]
            assert len(z["entropy_retain"]) == min(r["n_retain"], 5000)
            assert np.isfinite(z["entropy_test"]).all() and (z["entropy_forget"] >= 0).all()
    text = (store.root / "report.html").read_text()
    assert parse_html(text).errors == []
    md = (store.root / "report.md").read_text()
    assert re.search(r"\| lotus \| 2 \| \d+ \| ", md)  # the challenge score was computed from the outputs
    assert json.loads(store.row_path(store.rows()[0]["run_id"]).read_text())["status"] == "ok"


def test_pruned_rows_form_their_own_group():
    dense = [row("finetune", s) for s in (0, 1)]
    pruned = [dict(row("finetune", s), prune={"sparsity": 0.95, "rounds": 1}) for s in (0, 1)]
    groups = R.group_rows(dense + pruned)
    assert list(groups) == [SPEC, f"{SPEC}, pruned 0.95"]
    assert all(len(g["finetune"]) == 2 for g in groups.values())


def test_table_names_the_preset_each_column_used():
    rows = grid_rows()
    for r in rows:
        if r["method"] in ("a", "b"):
            r["preset"] = {"a": "digits-cnn.yaml+digits-cnn-class.yaml", "b": "defaults"}[r["method"]]
    table = R.build_table(SPEC, R.group_rows(rows)[SPEC], preferred=["a", "b", "c"])
    last = R.table_markdown(table).splitlines()[-1]
    assert last == "| preset | – | – | digits-cnn.yaml+digits-cnn-class.yaml | defaults | – |"
    assert "<th>preset</th>" in R.table_html(table)
    assert "preset" not in R.table_markdown(R.build_table(SPEC, R.group_rows(grid_rows())[SPEC]))  # none recorded


def test_method_sources_names_the_files_that_set_a_method():
    from obliviate.presets import method_sources
    assert method_sources("digits", "cnn", "class", "lotus") == "digits-cnn-class.yaml"
    assert method_sources("digits", "cnn", "random", "ssd") == "digits-cnn.yaml+digits-cnn-random.yaml"
    assert method_sources("digits", "cnn", "indices", "ssd") == "digits-cnn.yaml"   # no file for that kind
    assert method_sources("digits", "cnn", "class", "ssd") == "digits-cnn.yaml+digits-cnn-class.yaml"
    assert method_sources("nowhere", "cnn", None, "ssd", ["ssd.alpha=2"]) == "--set"
    assert method_sources("nowhere", "cnn", None, "ssd") == "defaults"
