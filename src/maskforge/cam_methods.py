"""Seed methods selectable with `cam.method`: how each builds, trains and infers its CAM network.

train_cam and make_cam are thin: they look the method up here and call its three functions.
A method is one `CamMethod` entry in `METHODS`:

- `build(backbone, num_classes, knobs, freeze_bn) -> nn.Module`: the network. It must provide
  `backbone` (with `normalize`), `num_classes` (foreground classes K), `param_groups(lr, wd)` for
  the optimizer and `cams(x)`: B×K×h×w non-negative maps of normalised images at feature
  resolution. `knobs` is the method's own params section `cam.<name>` ({} for a method without
  one); the section is closed in workflow/schemas/params.schema.yaml and the stage table reads it
  through `METHOD_SECTION`, so a knob of another method never reruns this one.
- `train(model, knobs, run) -> curve rows`: the whole training of one AE round. Most methods
  pass their loss `loss(model, batch) -> Tensor` (batch = float 0..255 images B×3×S×S, multi-hot
  labels B×K) to `train_with_loss`, which runs `maskforge.training.fit` (poly LR, resume per
  epoch). A method with several phases (e.g. freeze the backbone, then train a sampler) writes
  its own `train` from the same `TrainingRun` (it may call `run.fit` once per phase with its own
  optimizer, resume file suffix and loss).
- `inference_view(model, knobs) -> module`: what `maskforge.cam.multiscale_cams` calls `cams` on
  (the model itself for CAM/SEAM; a Grad-CAM view for gradcam). Multi-scale + flip and the
  per-class max normalisation are shared by every method.

The checkpoint of train_cam records the method name and its knobs (`network_from_checkpoint`
rebuilds the network), and make_cam's store provenance records `cam.method`.
To add a method: its network in `maskforge/models/`, its loss (or train) here, an entry in
`METHODS`, its name in the schema's `cam.method` enum and, if it has knobs, a closed `cam.<name>`
section in the schema and params.yaml.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch
from torch import Tensor, nn

from maskforge.cam import CamView, gradcams, multilabel_loss
from maskforge.checkpoint import CheckpointError
from maskforge.config import ConfigError
from maskforge.models.backbones import Backbone, create_backbone
from maskforge.models.cam import CAMNet
from maskforge.models.esol import ESOLNet, expanded_classification_loss, expansion_step, shrinkage_loss
from maskforge.models.seam import SEAMNet
from maskforge.models.spg import SPGNet, spg_loss
from maskforge.seam import seam_loss
from maskforge.training import Batch, fit

Knobs = Mapping[str, Any]
LossFn = Callable[[nn.Module, Batch], Tensor]


@dataclass(frozen=True)
class TrainingRun:
    """What train_cam hands a method's `train`: batches, schedule, and resume bookkeeping."""

    make_batches: Callable[[np.random.Generator], Iterable[Batch]]
    lr: float
    weight_decay: float
    epochs: int
    steps_per_epoch: int
    seed: int
    resume_path: str
    fingerprint: str
    device: torch.device
    desc: str

    def fit(self, model: nn.Module, optimizer: torch.optim.Optimizer, loss: LossFn, *,
            epochs: int | None = None, resume_suffix: str = "",
            on_epoch_start: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
        """maskforge.training.fit with this run's batches and bookkeeping (`resume_suffix` keeps
        the resume files of several phases apart; `on_epoch_start(epoch)` for epoch-dependent losses)."""
        return fit(model, optimizer, loss, self.make_batches, epochs=epochs or self.epochs,
                   steps_per_epoch=self.steps_per_epoch, seed=self.seed,
                   resume_path=f"{self.resume_path}{resume_suffix}", fingerprint=self.fingerprint,
                   device=self.device, desc=self.desc, on_epoch_start=on_epoch_start)


def sgd(model: nn.Module, run: TrainingRun) -> torch.optim.Optimizer:
    """SGD with momentum 0.9 over the model's parameter groups (new layers at 10× lr)."""
    return torch.optim.SGD(model.param_groups(run.lr, run.weight_decay), lr=run.lr, momentum=0.9)


def train_with_loss(loss: Callable[[Knobs], LossFn]) -> Callable[[nn.Module, Knobs, TrainingRun], list[dict[str, Any]]]:
    """A method's `train` from its loss (built from the method's knobs): one `fit` with SGD."""
    def train(model: nn.Module, knobs: Knobs, run: TrainingRun) -> list[dict[str, Any]]:
        return run.fit(model, sgd(model, run), loss(knobs))
    return train


@dataclass(frozen=True)
class CamMethod:
    name: str
    build: Callable[[Backbone, int, Knobs, bool], nn.Module]
    train: Callable[[nn.Module, Knobs, TrainingRun], list[dict[str, Any]]]
    inference_view: Callable[[nn.Module, Knobs], nn.Module]


def _camnet(backbone: Backbone, num_classes: int, knobs: Knobs, freeze_bn: bool) -> CAMNet:
    return CAMNet(backbone, num_classes, freeze_bn=freeze_bn)


def _spg_thresholds(knobs: Knobs) -> tuple[tuple[float, float], tuple[float, float], tuple[float, float]]:
    """(δh, δl) of the three SPG guidance masks (attention, deep head, fused heads), checked:
    each needs δl < δh."""
    levels = []
    for key in ("attention_thresholds", "head_thresholds", "fused_thresholds"):
        high, low = knobs[key]
        if not low < high:
            raise ConfigError(f"cam.spg.{key}: [delta_h, delta_l] needs delta_l < delta_h, got {[high, low]}; "
                              "e.g. [0.5, 0.05]")
        levels.append((float(high), float(low)))
    return levels[0], levels[1], levels[2]


def _spgnet(backbone: Backbone, num_classes: int, knobs: Knobs, freeze_bn: bool) -> SPGNet:
    _spg_thresholds(knobs)
    return SPGNet(backbone, num_classes, freeze_bn=freeze_bn)


def train_spg(model: SPGNet, knobs: Knobs, run: TrainingRun) -> list[dict[str, Any]]:
    """SPG's stagewise training (maskforge.models.spg): one `fit` with SGD and one poly schedule;
    epochs before `start_epoch` train classification alone, from it on the guidance BCEs join."""
    thresholds, start = _spg_thresholds(knobs), knobs["start_epoch"]
    if not start < run.epochs:
        raise ConfigError(f"cam.spg.start_epoch: {start} leaves no guided epoch of cam.train.epochs {run.epochs}; "
                          f"set it below {run.epochs}")
    epoch = [0]

    def loss(model: nn.Module, batch: Batch) -> Tensor:
        images, targets = batch
        return spg_loss(model, model.backbone.normalize(images), targets, thresholds, guided=epoch[0] >= start)[0]
    return run.fit(model, sgd(model, run), loss, on_epoch_start=lambda e: epoch.__setitem__(0, e))


def _esolnet(backbone: Backbone, num_classes: int, knobs: Knobs, freeze_bn: bool) -> ESOLNet:
    return ESOLNet(backbone, num_classes, freeze_bn=freeze_bn, max_offset=knobs["max_offset"])


def train_esol(model: ESOLNet, knobs: Knobs, run: TrainingRun) -> list[dict[str, Any]]:
    """ESOL's three phases (maskforge.models.esol): plain CAM training (`run.epochs`), expansion
    (`expansion_epochs`: per batch an `expansion_step` of the expansion sampler, then SGD of
    backbone + classifier on the clipped, sampled features), shrinkage (`shrinkage_epochs`: SGD
    of the shrinkage sampler alone on `shrinkage_loss`, BatchNorm frozen). Each phase resumes
    from its own epoch checkpoint; the curve rows name their phase."""
    clip = knobs["clip_ratio"]
    rows = [{"phase": "base", **row} for row in run.fit(model, sgd(model, run), multilabel_loss)]
    adversary = torch.optim.SGD(model.sampler_param_groups(model.expansion, run.lr), lr=run.lr)

    def expansion_loss(model: ESOLNet, batch: Batch) -> Tensor:
        images, targets = batch
        x = model.backbone.normalize(images)
        expansion_step(model, x, targets, adversary, clip)
        return expanded_classification_loss(model, x, targets, clip)

    rows += [{"phase": "expansion", **row} for row in run.fit(
        model, sgd(model, run), expansion_loss, epochs=knobs["expansion_epochs"], resume_suffix="-expansion")]
    for module in (model.backbone, model.classifier, model.expansion):
        module.requires_grad_(False)
    freeze_bn, model.freeze_bn = model.freeze_bn, True
    optimizer = torch.optim.SGD(model.sampler_param_groups(model.shrinkage, run.lr), lr=run.lr, momentum=0.9)
    area = knobs["area_weight"]
    rows += [{"phase": "shrinkage", **row} for row in run.fit(
        model, optimizer, lambda m, batch: shrinkage_loss(m, m.backbone.normalize(batch[0]), batch[1], area),
        epochs=knobs["shrinkage_epochs"], resume_suffix="-shrinkage")]
    model.freeze_bn = freeze_bn
    return rows
def _seamnet(backbone: Backbone, num_classes: int, knobs: Knobs, freeze_bn: bool) -> SEAMNet:
    return SEAMNet(backbone, num_classes, freeze_bn=freeze_bn)


METHODS: dict[str, CamMethod] = {m.name: m for m in [
    # Zhou et al. CVPR 2016: GAP + 1×1 classifier, multi-label soft margin; maps = classifier at every position.
    CamMethod("cam", _camnet, train_with_loss(lambda knobs: multilabel_loss), lambda model, knobs: model),
    # Selvaraju et al. ICCV 2017: the same training; maps from the gradients of each class score.
    CamMethod("gradcam", _camnet, train_with_loss(lambda knobs: multilabel_loss),
              lambda model, knobs: CamView(model, lambda x: gradcams(model, x))),
    # Wang et al. CVPR 2020: siamese ER + PCM + ECR; inference on the PCM-refined CAM (or the raw one).
    CamMethod("seam", _seamnet, train_with_loss(seam_loss),
              lambda model, knobs: model if knobs["pcm_inference"] else CamView(model, model.raw_cams)),
    # Zhang et al. ECCV 2018: thresholded self-produced attention supervises class-agnostic guidance heads.
    CamMethod("spg", _spgnet, train_spg, lambda model, knobs: model),
    # Li et al. NeurIPS 2022: expansion sampler (adversarial offsets), then shrinkage sampler; maps after shrinkage.
    CamMethod("esol", _esolnet, train_esol, lambda model, knobs: model),
]}


def get_method(name: str) -> CamMethod:
    if name not in METHODS:
        raise ValueError(f"unknown cam.method {name!r}; choose one of {sorted(METHODS)}")
    return METHODS[name]


def method_knobs(cam_params: Mapping[str, Any]) -> Knobs:
    """The selected method's own section of the `cam` params ({} for a method without knobs)."""
    return cam_params.get(cam_params["method"], {})


def build_network(cam_params: Mapping[str, Any], num_classes: int, weights: Any, freeze_bn: bool) -> nn.Module:
    """The untrained network of `cam.method` on `cam.backbone` with `weights` (see create_backbone)."""
    method = get_method(cam_params["method"])
    backbone = create_backbone(cam_params["backbone"], weights, cam_params["output_stride"])
    return method.build(backbone, num_classes, method_knobs(cam_params), freeze_bn)


def checkpoint_fields(cam_params: Mapping[str, Any]) -> dict[str, Any]:
    """What a cam checkpoint records to rebuild its network: method, its knobs, backbone, stride."""
    return {"method": cam_params["method"], "method_knobs": dict(method_knobs(cam_params)),
            "backbone": cam_params["backbone"], "output_stride": cam_params["output_stride"]}


def network_from_checkpoint(state: Mapping[str, Any], num_classes: int, method: str) -> nn.Module:
    """The (untrained) network a cam checkpoint's weights belong to; it must be of `method`."""
    if state.get("method") != method:
        raise CheckpointError(f"trained with cam.method {state.get('method')!r}, but cam.method is {method!r}; "
                              "rerun train_cam")
    cam_params = {"method": state["method"], state["method"]: state["method_knobs"],
                  "backbone": state["backbone"], "output_stride": state["output_stride"]}
    return build_network(cam_params, num_classes, None, freeze_bn=False)
