"""The real-data readers on tiny fixtures written in each dataset's published folder layout."""
import pytest
import torch
from PIL import Image

from obliviate.errors import ObliviateError
from obliviate.vlm.data import load_source, make_task


def image(path, colour=(255, 0, 0), size=(20, 12)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def test_office_home(tmp_path):
    root = tmp_path / "OfficeHomeDataset_10072016"
    for d in ("Art", "Clipart", "Product", "Real World"):
        for c in ("Alarm_Clock", "Bike"):
            for i in range(5):
                image(root / d / c / f"{i:05d}.jpg")
    src = load_source("office-home", str(tmp_path), image_size=8)
    assert src.domain_names == ("art", "clipart", "product", "real_world")
    assert src.class_names == ("alarm clock", "bike")
    assert len(src.pool) == 4 * 2 * 4 and len(src.test) == 4 * 2 * 1     # 20% of every (class, domain) held out
    x = src.test.__getitems__([0, 1])[0]
    assert x.shape == (2, 3, 8, 8) and torch.allclose(x[0, 0], torch.ones(8, 8), atol=0.02)   # red, centre-cropped
    task = make_task(src, "domain:clipart", shots=2)
    assert len(task.train) == 4 * 2 * 2 and int(task.train.forget.sum()) == 2 * 2


def test_office_home_missing_folders(tmp_path):
    (tmp_path / "Art").mkdir()
    with pytest.raises(ObliviateError, match=r"missing: Clipart/, Product/, Real World/"):
        load_source("office-home", str(tmp_path))
    with pytest.raises(ObliviateError, match="no --data-root"):
        load_source("office-home", None)


def write_split(root, rel_dir, domain, split, files):
    (root / rel_dir).mkdir(parents=True, exist_ok=True)
    (root / rel_dir / f"{domain}_{split}.txt").write_text("".join(f"{f} 0\n" for f in files))


@pytest.mark.parametrize("name,domains,rel_dir", [
    ("domainnet", ("clipart", "infograph", "painting", "quickdraw", "real", "sketch"), "."),
    ("mini-domainnet", ("clipart", "painting", "real", "sketch"), "splits_mini"),
])
def test_domainnet_layouts(tmp_path, name, domains, rel_dir):
    for d in domains:
        for split, n in (("train", 3), ("test", 1)):
            files = []
            for c in ("aircraft_carrier", "zebra"):
                for i in range(n):
                    rel = f"{d}/{c}/{d}_{split}_{i}.jpg"
                    image(tmp_path / rel)
                    files.append(rel)
            write_split(tmp_path, rel_dir, d, split, files)
    src = load_source(name, str(tmp_path), image_size=4)
    assert src.domain_names == domains and src.class_names == ("aircraft carrier", "zebra")
    assert len(src.pool) == len(domains) * 6 and len(src.test) == len(domains) * 2   # the official split files
    (tmp_path / rel_dir / f"{domains[-1]}_test.txt").unlink()
    with pytest.raises(ObliviateError, match=f"missing: .*{domains[-1]}_test.txt"):
        load_source(name, str(tmp_path))


def test_split_file_naming_a_missing_image(tmp_path):
    for d in ("clipart", "painting", "real", "sketch"):
        for s in ("train", "test"):
            write_split(tmp_path, "splits_mini", d, s, [f"{d}/cat/missing.jpg"])
    with pytest.raises(ObliviateError, match="clipart/cat/missing.jpg is listed"):
        load_source("mini-domainnet", str(tmp_path))


def test_imagenet_sketch(tmp_path):
    for w in ("n01440764", "n01443537"):
        for i in range(5):
            image(tmp_path / "imagenet" / "val" / w / f"ILSVRC_{i}.JPEG")
            image(tmp_path / "imagenet-sketch" / "sketch" / w / f"sketch_{i}.JPEG", (255, 255, 255))
    image(tmp_path / "imagenet" / "val" / "n09999999" / "only_real.JPEG")      # not in both domains: skipped
    (tmp_path / "imagenet" / "classnames.txt").write_text("n01440764 tench\nn01443537 goldfish\n")
    src = load_source("imagenet-sketch", str(tmp_path), image_size=4)
    assert src.domain_names == ("real", "sketch") and src.class_names == ("tench", "goldfish")
    assert len(src.pool) + len(src.test) == 20
    task = make_task(src, "domain:sketch", shots=3)
    assert int(task.train.forget.sum()) == 6


def test_imagenet_sketch_missing(tmp_path):
    (tmp_path / "imagenet" / "val").mkdir(parents=True)
    with pytest.raises(ObliviateError, match="missing: imagenet-sketch/sketch/"):
        load_source("imagenet-sketch", str(tmp_path))
