"""Run configuration: YAML files of nested sections, with ``section.key=value`` overrides.

Unknown keys and wrongly typed values are errors that name the key, so a typo in a config
never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, get_origin, get_type_hints

import yaml

from thyronet.data.augment import AugmentConfig
from thyronet.data.preprocess import PreprocessConfig
from thyronet.data.region import RegionConfig
from thyronet.errors import ThyronetError
from thyronet.runs.shipped import config_path


@dataclass
class DataConfig:
    path: str | None = None  # None: --data, then $THYRONET_DDTI, then ../shared/data/ddti
    in_chans: int = 1
    # the input's grey levels (0-1) are normalised by these, DDTI scan areas' statistics after
    # preprocessing; null for both: each input by its own mean and std, so that a scanner's gain
    # (a scaling of the grey levels) leaves the input unchanged (docs/results.md, "Another scanner")
    mean: float | None = 0.2
    std: float | None = 0.2
    num_workers: int = 0
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    roi: RegionConfig = field(default_factory=RegionConfig)
    # the classes to tell apart, read from each image's ``class`` attribute (BUSI: benign,
    # malignant, normal), in the order of the network's outputs; None: the source's own
    # benign-vs-malignant labels. More than two classes train and cross-validate a multi-class
    # classifier (softmax, macro one-vs-rest AUROC); the clinical tools take binary ones only
    classes: list[str] | None = None

    def __post_init__(self) -> None:
        if self.classes is not None and (len(self.classes) < 2 or len(set(self.classes)) != len(self.classes)):
            raise ThyronetError(f"config data.classes: expected two or more distinct class names (or null), got {self.classes}")
        if (self.mean is None) != (self.std is None) or (self.std is not None and self.std <= 0):
            raise ThyronetError(f"config data.mean, data.std: expected both numbers (std > 0) or both null (each input's own), "
                                f"got {self.mean}, {self.std}")


@dataclass
class ModelConfig:
    name: str = "thyronet_x4"
    weights: str | None = None  # a local file; nothing is downloaded
    # "imagenet": start from the ImageNet weights an installed package ships (efficientnet_lite0/2,
    # unet_lite0; `thyronet models` lists them); null: random initialisation
    pretrained: str | None = None
    drop_rate: float = 0.2
    descriptor_heads: bool = False  # also predict composition, echogenicity, margins, calcifications
    # also predict the TI-RADS category (2 < 3 < 4a < 4b < 4c < 5) the label is cut from, with an
    # ordinal head: a training signal finer than benign/malignant; the output stays malignancy
    tirads_head: bool = False
    channels: int = 64  # ResNet family: the first stage's width (each later stage doubles it)
    # ResNet family: start each residual branch at zero (Goyal et al. 2017), so that a deep network
    # begins as a shallow one; needed for ThyroNet-X4 to train from scratch on a few hundred images
    zero_init_residual: bool = False


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    # adamw: decoupled weight decay (Loshchilov & Hutter); sgd: Nesterov momentum 0.9
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    scheduler: Literal["cosine", "step", "none"] = "cosine"
    warmup_epochs: float = 0.0  # linear learning-rate warm-up from 1% before the schedule
    grad_clip: float | None = None  # clip the gradients' global norm to this
    step_size: int = 30  # epochs between x0.1 decays for the "step" scheduler
    imbalance: Literal["weighted_loss", "sampler", "none"] = "weighted_loss"
    # "auto": bf16-mixed where the CPU has bf16 instructions (AMX/AVX512-BF16) or on a GPU, else
    # 32-true (bf16 is emulated, and slower, on AVX2-only CPUs); or any Lightning precision string
    precision: str = "auto"
    descriptor_loss_weight: float = 0.5  # weight of the summed descriptor losses beside malignancy
    tirads_loss_weight: float = 0.5  # weight of the TI-RADS head's ordinal loss beside malignancy
    label_smoothing: float = 0.0  # of the malignancy targets in training (0: none)
    # mixup (Zhang et al. 2018): each training batch blended with a shuffled copy of itself, the
    # weight drawn from Beta(mixup, mixup), the losses blended alike; 0 turns it off
    mixup: float = 0.0
    # exponential moving average of the weights (EMA): validation, checkpoints and predictions use
    # the average; None turns it off. A DDTI epoch is ~7 steps, so 0.95 averages ~3 epochs
    ema_decay: float | None = None
    channels_last: bool = False
    early_stopping_patience: int | None = None
    # fine-tuning: the encoder's learning rate as a fraction of train.lr (the task heads, and a
    # segmenter's decoder, learn at train.lr); 1 trains every layer alike
    encoder_lr_scale: float = 1.0
    # keep the encoder's batch-norm layers at their pretrained statistics (eval mode) in training:
    # small batches of a few hundred ultrasound crops would otherwise overwrite ImageNet's
    freeze_norm: bool = False
    target_sensitivity: float = 0.9  # the operating threshold is chosen on validation for this

    def __post_init__(self) -> None:
        if not 0 <= self.label_smoothing < 1:
            raise ThyronetError(f"config train.label_smoothing: expected 0 <= value < 1, got {self.label_smoothing}")
        if self.mixup < 0:
            raise ThyronetError(f"config train.mixup: expected a Beta parameter >= 0 (0: off), got {self.mixup}")
        if not 0 < self.encoder_lr_scale <= 1:
            raise ThyronetError(f"config train.encoder_lr_scale: expected 0 < value <= 1, got {self.encoder_lr_scale}")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ThyronetError(f"config train.ema_decay: expected 0 < value < 1 (or null: off), got {self.ema_decay}")


@dataclass
class SplitConfig:
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    folds: int = 5
    file: str | None = None  # a saved split JSON to reuse instead of making one
    # the seed that splits the cases; None: the run's seed. Set it to repeat a recipe with another
    # training seed on the same cases per side (the folds of a CV, the split of a run)
    seed: int | None = None


@dataclass
class TrainerConfig:
    accelerator: str = "auto"
    devices: Any = 1
    num_nodes: int = 1
    strategy: str = "auto"
    threads: int | None = None  # torch CPU threads; None: torch's default
    # epochs between the resume checkpoints (last.ckpt): on a GPU an epoch of DDTI takes well under
    # a second while writing ThyroNet-X4's weights and optimiser state (300 MB) takes about as long
    checkpoint_every: int = 1

    def __post_init__(self) -> None:
        if self.checkpoint_every < 1:
            raise ThyronetError(f"config trainer.checkpoint_every: expected a whole number of epochs >= 1, got {self.checkpoint_every}")


@dataclass
class InferenceConfig:
    # test-time augmentation: "hflip" averages the answers for the image and its mirror image
    # (ultrasound has no preferred left-right orientation; training mirrors too)
    tta: Literal["none", "hflip"] = "none"


@dataclass
class PretrainConfig:
    """Self-supervised pretraining of the encoder (``thyronet pretrain``, SimCLR): two views of
    each image that differ in what should not matter (the box's position and size, gain,
    speckle), and an encoder taught to tell which views belong together."""

    epochs: int = 40
    batch_size: int = 64  # images per step; the contrastive loss sees 2 x batch_size views
    lr: float = 1e-3
    temperature: float = 0.2
    projection_dim: int = 128
    jitter: float = 0.5  # box jitter of the views (fraction of the box's size), wider than training's
    photometric: float = 0.4  # brightness and contrast range of the views

    def __post_init__(self) -> None:
        if self.batch_size < 2:
            raise ThyronetError(f"config pretrain.batch_size: a contrastive batch needs >= 2 images, got {self.batch_size}")
        if self.temperature <= 0:
            raise ThyronetError(f"config pretrain.temperature: expected > 0, got {self.temperature}")


@dataclass
class FederatedConfig:
    """Federated training on Flower (``thyronet federated``): each site trains the run's recipe on
    its own data for ``local_epochs``, the server aggregates the networks' weights, ``rounds`` times."""

    rounds: int = 10
    local_epochs: int = 1
    # sites that train in a round (drawn at random among those connected); None: every connected site
    clients_per_round: int | None = None
    min_sites: int = 2  # a round waits until this many sites are connected
    # fedavg: the case-weighted mean of the sites' weights (McMahan et al. 2017); fedprox: the same,
    # each site's loss pulled towards the global weights by proximal_mu/2 ||w - w_global||^2 (Li et
    # al. 2020), for sites whose data differ; fedadam: the mean update applied by a server-side Adam
    # (Reddi et al. 2021) at server_lr
    strategy: Literal["fedavg", "fedprox", "fedadam"] = "fedavg"
    proximal_mu: float = 0.01
    server_lr: float = 0.01
    round_timeout: float = 3600.0  # seconds a round waits for the sites' replies

    def __post_init__(self) -> None:
        for name in ("rounds", "local_epochs", "min_sites"):
            if getattr(self, name) < 1:
                raise ThyronetError(f"config federated.{name}: expected a whole number >= 1, got {getattr(self, name)}")
        if self.clients_per_round is not None and not 1 <= self.clients_per_round:
            raise ThyronetError(f"config federated.clients_per_round: expected >= 1 (or null: every site), got {self.clients_per_round}")
        if self.proximal_mu < 0 or self.server_lr <= 0:
            raise ThyronetError(f"config federated.proximal_mu, server_lr: expected >= 0 and > 0, got {self.proximal_mu}, {self.server_lr}")


@dataclass
class RunConfig:
    task: Literal["classify", "segment"] = "classify"
    seed: int = 42
    output_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    federated: FederatedConfig = field(default_factory=FederatedConfig)

    @property
    def split_seed(self) -> int:
        """The seed that splits the cases (``split.seed``, else the run's)."""
        return self.seed if self.split.seed is None else self.split.seed

    @property
    def class_names(self) -> tuple[str, ...]:
        """The classifier's outputs in order: ``data.classes``, else benign and malignant."""
        return tuple(self.data.classes or ("benign", "malignant"))

    @property
    def multiclass(self) -> bool:
        return len(self.class_names) > 2

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check_type(name: str, value: Any, kind: Any) -> Any:
    origin = get_origin(kind)
    if kind is Any or value is None and type(None) in get_args(kind):
        return value
    options = [t for t in get_args(kind) if t is not type(None)]
    if len(options) == 1 and get_origin(options[0]) in (Literal, list):  # Optional[Literal[...]], Optional[list[...]]
        return _check_type(name, value, options[0])
    if origin is list:
        if not isinstance(value, list):
            raise ThyronetError(f"config {name}: expected a list, got {value!r}")
        return [_check_type(f"{name}[{i}]", item, get_args(kind)[0]) for i, item in enumerate(value)]
    if origin is Literal:
        if value not in get_args(kind):
            raise ThyronetError(f"config {name}: {value!r} is not one of {list(get_args(kind))}")
        return value
    allowed = tuple(t for t in (get_args(kind) or (kind,)) if isinstance(t, type))
    if float in allowed and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if allowed == (str,) and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)  # YAML reads `precision: 32` as a number
    if allowed and not isinstance(value, allowed) or isinstance(value, bool) and bool not in allowed:
        names = " or ".join(t.__name__ for t in allowed)
        raise ThyronetError(f"config {name}: expected {names}, got {value!r}")
    return value


def _build(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    if not isinstance(values, dict):
        raise ThyronetError(f"config {prefix.rstrip('.') or 'file'}: expected a mapping, got {values!r}")
    hints = get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise ThyronetError(f"config {prefix}{sorted(unknown)[0]}: unknown key (known: {', '.join(sorted(known))})")
    kwargs = {}
    for name, value in values.items():
        kind = hints[name]
        if dataclasses.is_dataclass(kind):
            kwargs[name] = _build(kind, value, f"{prefix}{name}.")
        else:
            kwargs[name] = _check_type(prefix + name, value, kind)
    return cls(**kwargs)


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        merged[key] = _merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return merged


def parse_override(text: str) -> dict[str, Any]:
    """'train.epochs=5' -> {'train': {'epochs': 5}} (the value is read as YAML)."""
    if "=" not in text:
        raise ThyronetError(f"override {text!r}: expected section.key=value")
    dotted, raw = text.split("=", 1)
    value: Any = yaml.safe_load(raw) if raw.strip() else None
    if isinstance(value, str):  # YAML 1.1 reads "3e-4" (no dot) as text
        try:
            value = float(value)
        except ValueError:
            pass
    for key in reversed(dotted.strip().split(".")):
        value = {key: value}
    return value


def load_config(name_or_path: str = "cpu", overrides: Sequence[str] = ()) -> RunConfig:
    """Read a YAML config (file or shipped name) and apply ``section.key=value`` overrides."""
    path = config_path(name_or_path)
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ThyronetError(f"{path}: not valid YAML ({error})") from None
    for override in overrides:
        values = _merge(values, parse_override(override))
    return _build(RunConfig, values)


def config_from_dict(values: dict[str, Any]) -> RunConfig:
    return _build(RunConfig, values)


def dump_config(config: RunConfig) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)
