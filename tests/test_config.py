"""params.yaml, overlays and the schema: typos fail at once with the key's name."""

import pytest
import yaml

from maskforge.config import ConfigError, deep_merge, load_config, select_keys, validate_config
from stages._stage import parse_stage_args


def test_params_yaml_is_valid():
    config = load_config("params.yaml")
    assert config["dataset"]["root"] == "synthetic"


@pytest.mark.parametrize("overlay", ["configs/msrc.yaml", "configs/voc.yaml", "tests/configs/tiny.yaml"])
def test_shipped_overlays_validate(overlay):
    load_config("params.yaml", [overlay])


def test_overlay_naming_only_root_changes_only_root(tmp_path):
    overlay = tmp_path / "o.yaml"
    overlay.write_text("dataset:\n  root: /some/voc\n")
    base, merged = load_config("params.yaml"), load_config("params.yaml", [overlay])
    assert merged["dataset"]["root"] == "/some/voc"
    merged["dataset"]["root"] = base["dataset"]["root"]
    assert merged == base


def test_deep_merge_replaces_lists_and_keeps_siblings():
    merged = deep_merge({"a": {"b": [1, 2], "c": 1}}, {"a": {"b": [3]}})
    assert merged == {"a": {"b": [3], "c": 1}}


@pytest.mark.parametrize("path, value, key", [
    (("cam", "train", "epochs"), 0, "cam.train.epochs"),
    (("cam", "backbone"), "resnet18", "cam.backbone"),
    (("cam", "train", "freeze_bn"), "false", "cam.train.freeze_bn"),
    (("ae", "erase_threshold"), 1.5, "ae.erase_threshold"),
])
def test_bad_values_name_the_key(path, value, key):
    config = load_config("params.yaml")
    node = config
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    with pytest.raises(ConfigError, match=f"'{key}'"):
        validate_config(config)


def test_misspelled_key_is_named(tmp_path):
    overlay = tmp_path / "typo.yaml"
    overlay.write_text(yaml.safe_dump({"cam": {"trian": {"epochs": 3}}}))
    with pytest.raises(ConfigError, match=r"'cam\.trian'"):
        load_config("params.yaml", [overlay])


def test_select_keys_gives_exactly_the_declared_keys():
    config = load_config("params.yaml")
    assert select_keys(config, ["cam.bg_threshold", "ae"]) == {
        "cam": {"bg_threshold": config["cam"]["bg_threshold"]}, "ae": config["ae"]}


def test_stage_params_json_must_hold_exactly_its_keys():
    argv = ["--cams", "x", "--store", "y"]
    _, params = parse_stage_args("stages.seeds", None, ["--params-json", '{"cam": {"bg_threshold": 0.2}}', *argv])
    assert params == {"cam": {"bg_threshold": 0.2}}
    with pytest.raises(ConfigError, match="exactly the keys"):
        parse_stage_args("stages.seeds", None, ["--params-json", '{"cam": {"bg_threshold": 0.2, "x": 1}}', *argv])
    with pytest.raises(ConfigError, match="bg_threshold"):
        parse_stage_args("stages.seeds", None, ["--params-json", '{"cam": {"bg_threshold": 2}}', *argv])


def test_unknown_cam_method_is_rejected_with_its_name_and_the_valid_ones():
    config = load_config("params.yaml")
    config["cam"]["method"] = "seem"
    with pytest.raises(ConfigError, match=r"'cam\.method'.*'seem' is not one of \['cam', 'gradcam'"):
        validate_config(config)
