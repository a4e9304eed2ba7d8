"""The stage table, dvc.yaml and the Snakefile describe one DAG: same jobs, deps, outs, params, args."""

import json
import re
import shlex
import sys

import pytest
import yaml

from maskforge.config import get_key, load_config, load_schema, select_keys, variant_config
from maskforge.data.fingerprint import FINGERPRINT, dataset_paths
from maskforge_workflow.codedeps import code_files
from maskforge_workflow.dvc_yaml import dvc_yaml, render_dvc_yaml
from maskforge_workflow.expand import VARIANT_SEPARATOR, Job, jobs, params_json
from maskforge_workflow.rules import snakemake_rules
from maskforge_workflow.table import STAGES, params_keys
from pipeline import REPO, copy_repo, sh

TWO_VARIANTS = {"compare": {"variants": {"tau30": {"cam.bg_threshold": 0.3}, "short": {"cam.train.epochs": 2}}}}


def test_dvc_yaml_is_generated_from_the_table():
    with open("dvc.yaml") as f:
        assert f.read() == render_dvc_yaml(load_config()), "dvc.yaml is stale: run `maskforge dvc-yaml`"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """The project without its outputs: dry runs never meet what a user's runs left in the working
    tree (outputs DVC wrote stop Snakemake until they are handed over). Beside it, the checkout's
    sibling datasets folder, so configs/msrc.yaml's relative root resolves as in the checkout."""
    repo = copy_repo(tmp_path_factory.mktemp("workflow") / "repo")
    if (REPO.parent / "shared").is_dir():
        (repo.parent / "shared").symlink_to(REPO.parent / "shared")
    return repo


def snakemake_plan(project, *extra):
    """Every job Snakemake would run in `project`, parsed from a forced dry run: name → inputs,
    outputs, argv. The job headers the default profile leaves out are asked for (--quiet host)."""
    out = sh(project, sys.executable, "-m", "snakemake", "-n", "-p", "--quiet", "host", "--forceall", "--cores", "1",
             *extra).stdout
    jobs = {}
    for block in re.split(r"\n(?=rule \w+:)", out)[1:]:
        rule = re.match(r"rule (\w+):", block).group(1)
        if rule == "all":
            continue
        variant, _, stage = rule.rpartition(VARIANT_SEPARATOR)
        fields = dict(re.findall(r"^    (\w+): (.*)$", block, re.M))
        wildcards = dict(w.split("=", 1) for w in fields.get("wildcards", "").split(", ") if w)
        command = re.search(r"^Shell command: (.*)$", block, re.M).group(1)
        jobs[Job(STAGES[stage], wildcards, {}, {}, variant=variant).name] = {
            "deps": set(fields.get("input", "").split(", ")) - {""},
            "outs": set(fields["output"].split(", ")),
            "argv": shlex.split(command.split(" 2>&1 | tee ")[0]),
            "rule": stage,
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


def assert_same_graph(plan, dvc, config):
    assert set(plan) == set(dvc["stages"])
    for name, stage in dvc["stages"].items():
        job = plan[name]
        outs = set(stage.get("outs", [])) | set(stage.get("metrics", [])) | set(stage.get("plots", []))
        # Snakemake reads the dataset's content fingerprint, DVC hashes the dataset files themselves
        dataset = set(dataset_paths(config["dataset"])) if FINGERPRINT in job["deps"] else set()
        assert job["deps"] - {FINGERPRINT} == set(stage["deps"]) - dataset and dataset <= set(stage["deps"]), name
        assert job["outs"] == outs, name
        assert job["gpu"] == STAGES[job["rule"]].gpu, f"{name}: the rule's gpu resource differs from the table"
        smk_module, smk_source, smk_args = stage_args(job["argv"])
        dvc_module, dvc_source, dvc_args = stage_args(shlex.split(stage["cmd"]))
        variant = dvc_args.pop("--variant", ())                  # DVC applies a variant's overrides itself
        assert variant == ((name.split(VARIANT_SEPARATOR)[0],) if VARIANT_SEPARATOR in name else ()), name
        assert (smk_module, smk_args) == (dvc_module, dvc_args), name
        assert dvc_source == ["--params-file", "params.yaml"] and smk_source[0] == "--params-json"
        passed = json.loads(smk_source[1])
        declared = params_keys(STAGES[job["rule"]].params, passed)
        assert select_keys(passed, declared) == passed, f"{name}: Snakemake passes undeclared keys"
        assert {p for p in stage.get("params", []) if not p.startswith("compare.")} <= set(declared), name


def format_rule(template, job):
    """A rule's template with one job's wildcards, inputs and outputs filled in, as Snakemake does."""
    named = {**job.deps, **job.collected}
    text = re.sub(r"\{input\.(\w+)\}", lambda m: " ".join([named[m[1]]] if isinstance(named.get(m[1], []), str)
                                                            else named.get(m[1], [])), template)
    text = re.sub(r"\{output\.(\w+)\}", lambda m: job.outs[m[1]], text)
    return re.sub(r"\{(?:wildcards\.)?(\w+)\}", lambda m: job.wildcards[m[1]], text)


@pytest.mark.parametrize("overlay", [{}, TWO_VARIANTS], ids=["default", "two_variants"])
def test_snakemake_rules_and_dvc_yaml_agree_job_by_job(tmp_path, overlay):
    """Without running an engine: each rule's jobs have dvc.yaml's deps, outs and arguments, and
    each output template, under the rule's wildcard constraints, matches only its own jobs."""
    (tmp_path / "o.yaml").write_text(yaml.safe_dump(overlay))
    config = load_config("params.yaml", [tmp_path / "o.yaml"])
    dvc = resolve_dvc_templates(dvc_yaml(config), config)["stages"]
    rules = snakemake_rules(config)
    planned = {job.name: (rule, job) for rule in rules for job in rule.by_wildcards.values()}
    assert set(planned) == set(dvc) and len(planned) == sum(len(r.by_wildcards) for r in rules)
    for name, (rule, job) in planned.items():
        stage = dvc[name]
        inputs = rule.inputs(job.wildcards)
        assert {p for v in inputs.values() for p in ([v] if isinstance(v, str) else v)} == set(stage["deps"]), name
        outs = {format_rule(t, job) for t in rule.outputs.values()}
        assert outs == set(stage.get("outs", [])) | set(stage.get("metrics", [])) | set(stage.get("plots", [])), name
        shell = shlex.split(format_rule(rule.shell.split(" 2>&1 | tee ")[0].replace("{params.values:q}", "JSON"), job))
        dvc_argv = shlex.split(stage["cmd"])
        assert shell[:3] == dvc_argv[:3] and dvc_argv[3:5] == ["--params-file", "params.yaml"], name
        assert stage_args(shell)[2] == {k: v for k, v in stage_args(dvc_argv)[2].items() if k != "--variant"}, name
        own = variant_config(config, job.variant) if job.variant else config
        assert json.loads(rule.params) == select_keys(own, job.params), name
        assert format_rule(rule.log, job) == ("logs/" + (f"{job.variant}/" if job.variant else "")
                                              + name.split(VARIANT_SEPARATOR)[-1] + ".log")
    templates = [(rule, re.sub(r"\{(\w+)\}", lambda m: f"(?:{rule.wildcard_constraints[m[1]]})", t))
                 for rule in rules for t in rule.outputs.values()]
    for name, (rule, job) in planned.items():
        for out in job.outs.values():
            assert [r.name for r, pattern in templates if re.fullmatch(pattern, out)] == [rule.name], out


def test_a_variant_reruns_what_reads_its_keys_and_shares_the_rest():
    config = load_config("params.yaml")
    config["compare"] = TWO_VARIANTS["compare"]
    names = {job.name for job in jobs(config)}
    default = {job.name for job in jobs(load_config("params.yaml"))}
    tau = {n.split(VARIANT_SEPARATOR)[1] for n in names if n.startswith("tau30__")}
    assert tau == {"seeds", "crf_seeds", "evaluate_seeds", "evaluate_seeds_crf"}       # not train_cam, not assemble_ae
    short = {n.split(VARIANT_SEPARATOR)[1] for n in names if n.startswith("short__")}
    assert "train_cam_r0" in short and "saliency" not in short and "prepare" not in short and "ground_truth" not in short
    assert names - {n for n in names if VARIANT_SEPARATOR in n} == default            # the default run is unchanged
    dvc = dvc_yaml(config)["stages"]       # DVC reads a variant's values from its compare entry
    assert dvc["tau30__seeds"]["params"] == ["compare.variants.tau30"]
    assert dvc["tau30__seeds"]["cmd"].startswith("python -m stages.seeds --params-file params.yaml --variant tau30 ")
    assert dvc["short__train_cam_r0"]["params"] == ["cam.method", "cam.backbone", "cam.weights", "cam.output_stride",
                                                    "cam.train", "compare.variants.short"]
    report = next(job for job in jobs(config) if job.stage.name == "report")
    assert {"metrics/tau30/seeds.json", "metrics/short/irn.json", "metrics/seeds.json"} <= set(report.collected["metrics"])


def test_a_variant_named_like_a_store_is_refused():
    from maskforge.config import ConfigError
    config = load_config("params.yaml")
    config["compare"] = {"variants": {"prepared": {"cam.train.epochs": 2}}}   # data/prepared/predictions
    with pytest.raises(ConfigError, match="compare.variants.prepared"):
        jobs(config)


def test_the_schema_lists_the_mask_stores_of_the_table_as_training_labels():
    """seg.labels names a mask store of the default graph (or the GT masks): the schema's enum is
    exactly those, so adding a mask-writing stage to the table without the schema fails here."""
    enum = load_schema()["properties"]["seg"]["properties"]["labels"]["enum"]
    stores = [job.outs["store"].rpartition("/")[2] for job in jobs(load_config("params.yaml"))
              if job.stage.store_kind == "mask" and job.stage.name not in ("train_seg", "predict")]
    assert sorted(enum) == sorted(stores)


@pytest.mark.slow
def test_snakefile_and_dvc_yaml_plan_the_same_jobs(project):
    config = load_config(project / "params.yaml")
    assert_same_graph(snakemake_plan(project), resolve_dvc_templates(yaml.safe_load((project / "dvc.yaml").read_text()),
                                                                     config), config)


@pytest.mark.slow
def test_engines_agree_under_an_overlay(project, tmp_path):
    overlay = tmp_path / "o.yaml"
    overlay.write_text("ae:\n  rounds: 2\ncam:\n  bg_threshold: 0.3\n")
    plan = snakemake_plan(project, "--configfile", str(overlay))
    assert "train_cam_r2" not in plan and "train_cam_r1" in plan
    config = load_config(project / "params.yaml", [overlay])
    assert_same_graph(plan, resolve_dvc_templates(dvc_yaml(config), config), config)
    assert json.loads(plan["seeds"]["argv"][4]) == {"cam": {"bg_threshold": 0.3}}


@pytest.mark.slow
def test_engines_agree_on_sharded_cam_inference(project, tmp_path):
    """cam.infer.shards: 3 → three make_cam jobs per round, each writing a part; readers depend on all parts."""
    overlay = tmp_path / "o.yaml"
    overlay.write_text("ae:\n  rounds: 2\ncam:\n  infer:\n    shards: 3\n")
    plan = snakemake_plan(project, "--configfile", str(overlay))
    config = load_config(project / "params.yaml", [overlay])
    assert_same_graph(plan, resolve_dvc_templates(dvc_yaml(config), config), config)
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
    loaded = sh(REPO, sys.executable, "-c", probe, f"stages.{name}").stdout.split()
    assert set(loaded) == set(code_files(STAGES[name]))


@pytest.mark.slow
def test_engines_agree_on_two_variants(project, tmp_path):
    overlay = tmp_path / "o.yaml"
    overlay.write_text(yaml.safe_dump(TWO_VARIANTS))
    plan = snakemake_plan(project, "--configfile", str(overlay))
    config = load_config(project / "params.yaml", [overlay])
    assert_same_graph(plan, resolve_dvc_templates(dvc_yaml(config), config), config)
    assert "tau30__seeds" in plan and "tau30__train_cam_r0" not in plan
    assert json.loads(plan["tau30__seeds"]["argv"][4]) == {"cam": {"bg_threshold": 0.3}}


@pytest.mark.slow
def test_snakemake_plans_on_msrc_with_the_same_graph(project):
    plan = snakemake_plan(project, "--configfile", "configs/msrc.yaml")
    config = load_config(project / "params.yaml", [project / "configs/msrc.yaml"])
    assert_same_graph(plan, resolve_dvc_templates(dvc_yaml(config), config), config)
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
