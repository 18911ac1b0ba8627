import pytest
import torch

from obliviate.errors import ObliviateError
from obliviate.grid import GridOptions, make_plan, run_grid, same_rows
from obliviate.vlm.family import ABLATION, VlmFamily
from obliviate.vlm.methods import create

FAST = ["domain-baseline.epochs=1", "adu.epochs=1", "domain-baseline.n_prompts=2", "adu.n_prompts=2"]


def test_ablation_grid_resumes_and_reproduces(clip_dir, tmp_path):
    fam = VlmFamily(model=str(clip_dir), shots=1, overrides=FAST, cpu=True, progress=False)
    options = GridOptions(methods=["ablation"], seeds=[0], forgets=["domain:noisy"], name="abl", root=str(tmp_path),
                          threads=1, progress=False)
    result = run_grid(fam, options, log=lambda s: None)
    rows = {r["method"]: r for r in result.store.rows()}
    assert set(rows) == {"original", *ABLATION}
    assert rows["adu+instapg"]["params"]["instapg"] and not rows["adu+instapg"]["params"]["ddl_ce"]
    assert not rows["adu+ddl"]["params"]["instapg"] and rows["adu+ddl"]["params"]["ddl_mmd"]
    table = (tmp_path / "abl" / "table.md").read_text()
    assert "original (zero-shot)" in table and "| adu+ddl |" in table and "acc/" not in table
    assert len(list((tmp_path / "abl" / "figures").glob("*.png"))) == 4
    (tmp_path / "abl" / "table.md").unlink()
    from obliviate.cli import main
    assert main(["report", str(tmp_path / "abl")]) == 0            # redrawn from rows and .npz files only
    assert (tmp_path / "abl" / "table.md").read_text() == table
    again = run_grid(fam, options, log=lambda s: None)
    assert again.written == []                                   # resumed: nothing redone
    fresh = run_grid(fam, GridOptions(**{**options.__dict__, "name": "abl2"}), log=lambda s: None)
    for r in fresh.store.rows():                                 # same command, same rows (apart from timings)
        assert same_rows(r, rows[r["method"]])


def test_adu_with_every_switch_off_is_the_baseline(clip, task, loop):
    kw = dict(epochs=1, n_prompts=2, batch_size=64)
    a = create("adu", instapg=False, ddl_ce=False, ddl_mmd=False, **kw).unlearn(clip, task, loop)
    b = create("domain-baseline", **kw).unlearn(clip, task, loop)
    assert torch.equal(a.visual_prompts, b.visual_prompts)


def test_plan_checks_before_work(clip_dir, tmp_path):
    fam = VlmFamily(model=str(clip_dir), shots=1, cpu=True, progress=False)
    plan = make_plan(fam, GridOptions(methods=["adu"], seeds=[0], forgets=["each"], root=str(tmp_path)))
    assert [c.forget for c in plan.cells] == [f"domain:{d}" for d in fam.source().domain_names]
    with pytest.raises(ObliviateError, match="unknown domain 'cartoon'"):
        make_plan(fam, GridOptions(methods=["adu"], seeds=[0], forgets=["domain:cartoon"], root=str(tmp_path)))
    with pytest.raises(ObliviateError, match="unknown vlm method 'adx'"):
        make_plan(VlmFamily(model=str(clip_dir), overrides=["adx.gamma=1"]),
                  GridOptions(methods=["adu"], seeds=[0], forgets=["domain:sketch"], root=str(tmp_path)))
    with pytest.raises(ObliviateError, match="office-home: expected"):
        make_plan(VlmFamily(dataset="office-home", data_root=str(tmp_path), model=str(clip_dir)),
                  GridOptions(methods=["adu"], seeds=[0], forgets=["domain:art"], root=str(tmp_path)))
    bbf = make_plan(fam, GridOptions(methods=["bbf"], seeds=[0], forgets=["class:3", "domain:sketch"],
                                     root=str(tmp_path)))
    assert len(bbf.cells) == 2
