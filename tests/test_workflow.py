"""The stage table, dvc.yaml and the Snakefile describe one DAG: same jobs, deps, outs, params, args."""

import json
import re
import shlex
import subprocess
import sys

import pytest
import yaml

from maskforge.config import get_key, load_config, select_keys
from workflow.stages import STAGES, Job, code_files, dvc_yaml, params_json, params_keys, render_dvc_yaml


def test_dvc_yaml_is_generated_from_the_table():
    with open("dvc.yaml") as f:
        assert f.read() == render_dvc_yaml(load_config()), "dvc.yaml is stale: run `maskforge dvc-yaml`"


def snakemake_plan(*extra):
    """Every job Snakemake would run, parsed from a forced dry run: name → inputs, outputs, argv."""
    out = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-p", "--forceall", "--cores", "1", *extra],
                         capture_output=True, text=True, check=True).stdout
    jobs = {}
    for block in re.split(r"\n(?=rule \w+:)", out)[1:]:
        rule = re.match(r"rule (\w+):", block).group(1)
        if rule == "all":
            continue
        fields = dict(re.findall(r"^    (\w+): (.*)$", block, re.M))
        wildcards = dict(w.split("=", 1) for w in fields.get("wildcards", "").split(", ") if w)
        command = re.search(r"^Shell command: (.*)$", block, re.M).group(1)
        jobs[Job(STAGES[rule], wildcards, {}, {}).name] = {
            "deps": set(fields.get("input", "").split(", ")) - {""},
            "outs": set(fields["output"].split(", ")),
            "argv": shlex.split(command.split(" > ")[0]),
            "rule": rule,
            "gpu": int(dict(r.split("=", 1) for r in fields.get("resources", "").split(", ") if "=" in r).get("gpu", 0)),
        }
    return jobs


def stage_args(argv):
    """(module, params source, {--name: values}) with empty optional inputs dropped."""
    module, source, rest = argv[2], argv[3:5], argv[5:]
    named, name = {}, None
    for token in rest:
        if token.startswith("--"):
            name = token
        else:
            named.setdefault(name, []).append(token)
    return module, source, {k: tuple(v) for k, v in named.items()}


def resolve_dvc_templates(dvc, config):
    """dvc.yaml with DVC's own `${key}` interpolation from params.yaml done, as `dvc repro` does."""
    text = yaml.safe_dump(dvc)
    for dotted in set(re.findall(r"\$\{([\w.]+)\}", text)):
        text = text.replace("${" + dotted + "}", str(get_key(config, dotted)))
    return yaml.safe_load(text)


def assert_same_graph(plan, dvc):
    assert set(plan) == set(dvc["stages"])
    for name, stage in dvc["stages"].items():
        job = plan[name]
        outs = set(stage.get("outs", [])) | set(stage.get("metrics", [])) | set(stage.get("plots", []))
        assert job["deps"] == set(stage["deps"]), name
        assert job["outs"] == outs, name
        assert job["gpu"] == STAGES[job["rule"]].gpu, f"{name}: the rule's gpu resource differs from the table"
        smk_module, smk_source, smk_args = stage_args(job["argv"])
        dvc_module, dvc_source, dvc_args = stage_args(shlex.split(stage["cmd"]))
        assert (smk_module, smk_args) == (dvc_module, dvc_args), name
        assert dvc_source == ["--params-file", "params.yaml"] and smk_source[0] == "--params-json"
        passed = json.loads(smk_source[1])
        assert select_keys(passed, stage.get("params", [])) == passed, f"{name}: Snakemake passes undeclared keys"


@pytest.mark.slow
def test_snakefile_and_dvc_yaml_plan_the_same_jobs():
    with open("dvc.yaml") as f:
        assert_same_graph(snakemake_plan(), resolve_dvc_templates(yaml.safe_load(f), load_config()))


@pytest.mark.slow
def test_engines_agree_under_an_overlay(tmp_path):
    overlay = tmp_path / "o.yaml"
    overlay.write_text("ae:\n  rounds: 2\ncam:\n  bg_threshold: 0.3\n")
    plan = snakemake_plan("--configfile", str(overlay))
    assert "train_cam_r2" not in plan and "train_cam_r1" in plan
    config = load_config("params.yaml", [overlay])
    assert_same_graph(plan, resolve_dvc_templates(dvc_yaml(config), config))
    assert json.loads(plan["seeds"]["argv"][4]) == {"cam": {"bg_threshold": 0.3}}


@pytest.mark.slow
def test_engines_agree_on_sharded_cam_inference(tmp_path):
    """cam.infer.shards: 3 → three make_cam jobs per round, each writing a part; readers depend on all parts."""
    overlay = tmp_path / "o.yaml"
    overlay.write_text("ae:\n  rounds: 2\ncam:\n  infer:\n    shards: 3\n")
    plan = snakemake_plan("--configfile", str(overlay))
    config = load_config("params.yaml", [overlay])
    assert_same_graph(plan, resolve_dvc_templates(dvc_yaml(config), config))
    assert {f"make_cam_r{r}_p{i}" for r in range(2) for i in range(3)} <= set(plan)
    parts = {f"data/stores/cam_r0/part-{i:05d}-of-00003" for i in range(3)}
    assert parts <= plan["seeds"]["deps"] and parts <= plan["evaluate_cam_r0"]["deps"]
    assert "data/stores/cam_r0" not in plan["seeds"]["deps"]


@pytest.mark.parametrize("name", sorted(STAGES))
def test_declared_code_is_what_the_stage_imports(name):
    """Editing any core module a stage imports must rerun it, so each must be a declared dep."""
    probe = ("import sys, os, importlib; importlib.import_module(sys.argv[1]); "
             "print('\\n'.join(os.path.relpath(m.__file__) for n, m in list(sys.modules.items()) "
             "if n.startswith(('maskforge.', 'stages.')) and m.__file__ and not m.__file__.endswith('__init__.py')))")
    loaded = subprocess.run([sys.executable, "-c", probe, f"stages.{name}"], capture_output=True, text=True,
                            check=True).stdout.split()
    assert set(loaded) == set(code_files(STAGES[name]))


@pytest.mark.slow
def test_snakemake_plans_on_msrc_with_the_same_graph():
    plan = snakemake_plan("--configfile", "configs/msrc.yaml")
    config = load_config("params.yaml", ["configs/msrc.yaml"])
    assert_same_graph(plan, resolve_dvc_templates(dvc_yaml(config), config))
    assert json.loads(plan["prepare"]["argv"][4])["dataset"]["root"] == "../shared/datasets/msrc"


def test_a_stage_reads_only_the_selected_methods_section():
    """METHOD_SECTION resolves to `cam.<method>` when that section exists, and to nothing otherwise,
    so a knob of an unselected method is neither passed to nor declared for train_cam/make_cam."""
    config = load_config()
    config["cam"]["method"] = "cam"
    config["cam"]["othermethod"] = {"knob": 1}          # a section of a method that is not selected
    assert params_keys(STAGES["train_cam"].params, config)[:2] == ("cam.method", "cam.backbone")
    config["cam"]["method"] = "othermethod"
    assert "cam.othermethod" in params_keys(STAGES["make_cam"].params, config)
    assert json.loads(params_json(STAGES["make_cam"], config))["cam"]["othermethod"] == {"knob": 1}
