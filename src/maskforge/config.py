"""params.yaml loading: overlay merge, schema validation, and per-stage key selection.

Snakemake validates the merged config with the same schema (workflow/rules/common.smk), so a
stage run by Snakemake (params passed as JSON) and by DVC (params.yaml read here) sees identical
values, and neither can see a key its stage did not declare.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any, Iterable, Mapping

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "params.schema.yaml"   # package data (workflow/schemas links here)


class ConfigError(ValueError):
    """A config file or value that does not match the schema."""


# Two-number lists whose order JSON schema cannot state (it has no comparison between items):
# key → (which order, the words the error uses). Checked wherever the schema is.
ORDERED_PAIRS = {
    "cam.train.scale_range": ("ascending", "[low, high]"),
    "irn.train.scale_range": ("ascending", "[low, high]"),
    "seg.train.scale_range": ("ascending", "[low, high]"),
    "cam.spg.attention_thresholds": ("descending", "[delta_h, delta_l] with delta_h > delta_l"),
    "cam.spg.head_thresholds": ("descending", "[delta_h, delta_l] with delta_h > delta_l"),
    "cam.spg.fused_thresholds": ("descending", "[delta_h, delta_l] with delta_h > delta_l"),
}


def check_ordered_pairs(config: Mapping[str, Any], source: str) -> None:
    """ConfigError naming the key of the first pair in ORDERED_PAIRS that `config` holds out of
    order (keys it does not hold are skipped: a stage's selection holds only its own)."""
    for key, (order, form) in ORDERED_PAIRS.items():
        try:
            low, high = get_key(config, key)
        except (ConfigError, TypeError, ValueError):
            continue
        if (low > high) if order == "ascending" else (low <= high):
            raise ConfigError(f"{source}: key '{key}': {[low, high]} must be {form}; swap or fix the values")


def deep_merge(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """Return base with overlay merged in: nested dicts merge key by key, other values replace."""
    merged = copy.deepcopy(dict(base))
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_schema() -> dict[str, Any]:
    with open(SCHEMA_PATH) as f:
        return yaml.safe_load(f)


@functools.cache
def _validator(relaxed: bool) -> jsonschema.Draft202012Validator:
    """The schema's validator, built once per process (parsing the YAML schema is most of a
    validation's cost); `relaxed`: with `required` dropped, for a stage's partial selection."""
    def relax(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: relax(v) for k, v in node.items() if k != "required"}
        return node

    schema = load_schema()
    return jsonschema.Draft202012Validator(relax(schema) if relaxed else schema)


def _error_path(error: jsonschema.ValidationError) -> str:
    path = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        path = ".".join([path, extra[0]] if path else [extra[0]]) if extra else path
    return path or "<top level>"


def validate_config(config: Mapping[str, Any], source: str = "params.yaml") -> None:
    """Raise ConfigError naming the offending key (e.g. `cam.train.epochs`) and the schema rule."""
    errors = sorted(_validator(False).iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        error = errors[0]
        raise ConfigError(
            f"{source}: key '{_error_path(error)}': {error.message} "
            f"(see workflow/schemas/params.schema.yaml for allowed keys and values)"
        )
    check_ordered_pairs(config, source)


def read_yaml(path: str | Path) -> dict[str, Any]:
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file; pass an existing params.yaml or overlay") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc.__class__.__name__}); fix the syntax") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return data


def load_config(params_file: str | Path = "params.yaml", overlays: Iterable[str | Path] = ()) -> dict[str, Any]:
    """params.yaml deep-merged with each overlay in order, then validated."""
    config = read_yaml(params_file)
    sources = [str(params_file)]
    for overlay in overlays:
        config = deep_merge(config, read_yaml(overlay))
        sources.append(str(overlay))
    validate_config(config, " + ".join(sources))
    return config


def get_key(config: Mapping[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise ConfigError(f"params: key '{dotted}' is missing; add it to params.yaml")
        node = node[part]
    return node


def set_key(config: dict[str, Any], dotted: str, value: Any) -> None:
    """Set an existing dotted key in place (a missing key fails with its name)."""
    get_key(config, dotted)
    *parents, leaf = dotted.split(".")
    node = config
    for part in parents:
        node = node[part]
    node[leaf] = copy.deepcopy(value)


def variants(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """`compare.variants`: variant name → {dotted params key: value} overrides (empty: no compare)."""
    return dict(config.get("compare", {}).get("variants", {}))


def variant_config(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The config of variant `name`: the config with the variant's overrides applied, validated."""
    if name not in variants(config):
        raise ConfigError(f"compare.variants: no variant {name!r}; variants are {sorted(variants(config))}")
    varied = copy.deepcopy(dict(config))
    for dotted, value in variants(config)[name].items():
        try:
            set_key(varied, dotted, value)
        except ConfigError:
            raise ConfigError(f"compare.variants.{name}: key '{dotted}' does not exist; name a key of params.yaml") from None
    validate_config(varied, f"compare.variants.{name}")
    return varied


def select_keys(config: Mapping[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    """The nested sub-config holding exactly `keys` (dotted paths): what one stage may read."""
    selected: dict[str, Any] = {}
    for dotted in keys:
        *parents, leaf = dotted.split(".")
        node = selected
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = copy.deepcopy(get_key(config, dotted))
    return selected


def validate_selection(selected: Mapping[str, Any], source: str) -> None:
    """Validate a partial config (a stage's keys) against the schema with `required` relaxed."""
    error = next(iter(sorted(_validator(True).iter_errors(selected), key=lambda e: list(e.absolute_path))), None)
    if error is not None:
        raise ConfigError(f"{source}: key '{_error_path(error)}': {error.message}")
    check_ordered_pairs(selected, source)


def canonical_json(value: Any) -> str:
    """Deterministic JSON (sorted keys, compact): the form params are passed and hashed in."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
