from obliviate.vlm.tables import tables_markdown


def row(method, forget, seed, h):
    return {"family": "vlm", "status": "ok", "dataset": "d", "model": "m", "method": method, "forget": forget,
            "seed": seed, "seconds": 1.0, "metrics": {"h": h, "mem": 0.5, "for": 0.5, "acc/a": 0.5, "acc/b": 0.5}}


def test_tables_mean_over_seeds_and_average_over_forget_specs_of_one_kind():
    rows = [row("adu", "domain:a", 0, 0.6), row("adu", "domain:a", 1, 0.8), row("adu", "domain:b", 0, 0.4),
            row("bbf", "class:3", 0, 0.9), row("bbf", "class:4", 0, 0.7)]
    text = tables_markdown(rows)
    assert "| adu | 70.0 ± 10.0 | 50.0 ± 0.0 | 50.0 ± 0.0 | 50.0 ± 0.0 | 50.0 ± 0.0 | 1.0 ± 0.0 |" in text
    assert "## Average over forget specs domain:a, domain:b" in text
    assert "| adu | 60.0 ± 16.3 | 50.0 ± 0.0 | 50.0 ± 0.0 | 3 |" in text      # mean of 0.6, 0.8, 0.4
    assert "## Average over forget specs class:3, class:4" in text and "| bbf | 80.0 ± 10.0" in text
