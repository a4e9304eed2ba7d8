"""The report's leaderboard: labels of variant outputs, the input store found by content, best first."""

from types import SimpleNamespace

from maskforge.leaderboard import leaderboard, run_labels
from maskforge.store import input_digest


def test_labels_keep_the_variant_folder_and_drop_suffixes():
    assert run_labels(["data/stores/seeds", "data/stores/seam/seeds"]) == ["seeds", "seam/seeds"]
    assert run_labels(["metrics/seeds.json", "metrics/seam/irn.json"]) == ["seeds", "seam/irn"]
    assert run_labels(["/r/seeds.json", "/r/cam_r0.json"]) == ["seeds", "cam_r0"]


def fake_store(tmp_path, name, content, inputs):
    path = tmp_path / name
    path.mkdir(parents=True)
    (path / "shard-00000.h5").write_bytes(content)
    return SimpleNamespace(path=path, meta={"inputs": inputs})


def test_each_store_is_ranked_with_its_ratio_to_the_store_it_was_made_from(tmp_path):
    cams = fake_store(tmp_path, "cam_r0", b"cams", {"ckpt": "ab"})
    seeds = fake_store(tmp_path, "seeds", b"seeds", {"cams": input_digest(tmp_path / "cam_r0")})
    other = fake_store(tmp_path, "seam/seeds", b"seeds of seam", {"cams": "not-a-scored-store"})
    crf = fake_store(tmp_path, "seeds_crf", b"crf", {"masks": input_digest(tmp_path / "seeds"), "prepared": "cd"})
    stores = {"cam_r0": cams, "seeds": seeds, "seam/seeds": other, "seeds_crf": crf}
    summaries = {"cam_r0": {"miou": 40.0, "split": "train"}, "seeds": {"miou": 30.0, "split": "train"},
                 "seam/seeds": {"miou": 35.0}, "seeds_crf": {"miou": 45.0, "split": "train"}}
    rows = leaderboard(stores, summaries)
    assert [(r.variant, r.store) for r in rows] == [("default", "seeds_crf"), ("default", "cam_r0"),
                                                    ("seam", "seeds"), ("default", "seeds")]
    assert rows[0].source == "seeds" and rows[0].ratio == 1.5
    assert rows[3].source == "cam_r0" and rows[3].ratio == 0.75
    assert rows[1].source is None and rows[2].source is None and rows[2].ratio is None


def test_stores_without_a_score_are_left_out(tmp_path):
    stores = {"saliency": fake_store(tmp_path, "saliency", b"s", {})}
    assert leaderboard(stores, {"saliency_ignored": {"ignored": 0.1}}) == []


def test_a_store_made_from_an_unscored_store_is_compared_with_that_one_s_scored_input(tmp_path):
    regions = fake_store(tmp_path, "regions_r0", b"regions", {})
    assembled = fake_store(tmp_path, "assemble_ae", b"assembled", {"regions": input_digest(tmp_path / "regions_r0")})
    crf = fake_store(tmp_path, "assemble_ae_crf", b"crf", {"masks": input_digest(tmp_path / "assemble_ae")})
    stores = {"regions_r0": regions, "assemble_ae": assembled, "assemble_ae_crf": crf}
    rows = leaderboard(stores, {"regions_r0": {"miou": 20.0}, "assemble_ae_crf": {"miou": 50.0}})
    assert [(r.store, r.source, r.ratio) for r in rows] == [("assemble_ae_crf", "regions_r0", 2.5), ("regions_r0", None, None)]
