"""LoRA adapters on the backbones through peft: added in place, one shared by the tasks or one per task (switched
per task), and plain copies of a backbone with an adapter merged in or left out, for export."""

from __future__ import annotations

import copy
import importlib.util
import warnings
from typing import Any

from qarac_gui.core.errors import UserError
from qarac_gui.core.kinds import kind_of
from qarac_gui.core.model.backbone import embeddings_module, encoder_layers
from qarac_gui.core.project.config import BackboneConfig, Project

SHARED = "shared"           # the adapter's name when the tasks share one
PIP = "pip install peft   (or: pip install 'qarac-gui[peft]')"
# Architectures the exports know that peft's own table (TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING) leaves
# out: their attention's query and value projections, the layers peft picks for BERT.
EXTRA_TARGETS = {"distilbert": ["q_lin", "v_lin"], "mpnet": ["q", "v"], "camembert": ["query", "value"]}
# The encoder's own pooler is never trained (heads pool for themselves), and a BERT sequence export puts a head's
# layer in its place: an adapter there would be in the way.
NEVER = ["pooler.dense"]


def uses_lora(project: Project, backbone: str) -> bool:
    return project.backbones[backbone].adapter == "lora"


def check_peft(where: str) -> None:
    if importlib.util.find_spec("peft") is None:
        raise UserError(f"{where} = \"lora\" needs the peft library, which is not installed: {PIP}")


def default_targets(model_type: str) -> list[str] | str:
    """peft's choice of layers for the architecture; every linear layer when it has none."""
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as PEFT_TARGETS
    return list(PEFT_TARGETS.get(model_type) or EXTRA_TARGETS.get(model_type) or []) or "all-linear"


def lora_config(cfg: BackboneConfig, model_type: str, module: Any = None, **extra: Any) -> Any:
    """peft's LoraConfig for a backbone; given the module it goes into, only the layers of NEVER it has are
    excluded (peft warns of an exclusion that matches nothing: a decoder, an encoder saved without a pooler)."""
    from peft import LoraConfig
    targets: list[str] | str = list(cfg.lora_targets) or default_targets(model_type)
    if targets == ["all-linear"]:
        targets = "all-linear"      # peft's shorthand is a string, never a list item
    never = NEVER if module is None else [n for n in NEVER if any(name == n or name.endswith("." + n)
                                                                  for name, _ in module.named_modules())]
    return LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=targets, **({"exclude_modules": never or None} | extra))


def adapter_names(project: Project, backbone: str) -> dict[str, str]:
    """Task -> the name of its adapter on the backbone, for the tasks that read it."""
    cfg = project.backbones[backbone]
    readers = [t.name for t in project.tasks if backbone in kind_of(t.head).backbones(t)]
    return {t: t if cfg.adapter_scope == "per_task" else SHARED for t in readers}


def adapter_of(project: Project, task: str, backbone: str) -> str | None:
    """The adapter a task trained on a backbone; None when the backbone has none."""
    if not uses_lora(project, backbone):
        return None
    return adapter_names(project, backbone).get(task, SHARED)


def lora_layers(module: Any) -> dict[str, Any]:
    """Name -> each layer of the module that carries adapters."""
    from peft.tuners.tuners_utils import BaseTunerLayer
    return {name: m for name, m in module.named_modules() if isinstance(m, BaseTunerLayer)}


def apply_adapters(project: Project, model: Any, init_from: bool = True) -> None:
    """Add the project's LoRA adapters to the model's backbones in place (after apply_freezing, before the
    optimiser): every weight of such a backbone is then frozen except its adapters, whose layers above
    freeze_layers train; heads and poolers train in full. With one adapter per task, model.forward makes the task's
    adapter the active one. With `init_from`, the adapters of train.init_from's model are loaded when it has them
    (the rest of it is loaded before, by the run's setup)."""
    if any(cfg.adapter == "lora" and name in model.backbones and _has_adapters(model.backbones[name])
           for name, cfg in project.backbones.items()):
        return          # already added: a second call must not add them twice
    switch: dict[str, dict[str, str]] = {}
    layers: dict[str, list] = {}
    for name, cfg in project.backbones.items():
        if cfg.adapter != "lora" or name not in model.backbones:
            continue
        where = f"backbones.{name}.adapter"
        check_peft(where)
        from peft import inject_adapter_in_model
        backbone = model.backbones[name]
        names = sorted(set(adapter_names(project, name).values())) or [SHARED]
        config = lora_config(cfg, backbone.config.model_type, backbone)
        for adapter in names:
            try:
                with warnings.catch_warnings():     # peft warns that a second adapter is a second adapter
                    warnings.filterwarnings("ignore", "Already found a `peft_config`", UserWarning)
                    inject_adapter_in_model(config, backbone, adapter)
            except ValueError as e:
                message = str(e).splitlines()[0]
                if "target" not in message.lower():
                    raise UserError(f"{where}: peft could not add adapters to this {backbone.config.model_type} "
                                    f"model ({message}); train it without (adapter = \"none\")") from None
                raise UserError(f"backbones.{name}.lora_targets: {message}; name layers this "
                                f"{backbone.config.model_type} model has (e.g. {_linear_names(backbone)}), or "
                                "leave the list empty for the default") from None
        # Frozen parts stay as they were: their adapters (when a target is in them) are frozen too.
        frozen = encoder_layers(backbone)[:cfg.freeze_layers]
        for module in frozen + ([embeddings_module(backbone)] if cfg.freeze_embeddings else []):
            module.requires_grad_(False)
        layers[name] = list(lora_layers(backbone).values())
        _activate(layers[name], names[0])
        if cfg.adapter_scope == "per_task":
            for task, adapter in adapter_names(project, name).items():
                switch.setdefault(task, {})[name] = adapter
    model.task_adapters = TaskSwitch(layers, switch) if switch else None
    if init_from and project.train.init_from and layers:
        _load_exported(project, model)


def _has_adapters(backbone: Any) -> bool:
    return importlib.util.find_spec("peft") is not None and bool(lora_layers(backbone))


def _linear_names(backbone: Any) -> str:
    import torch
    names = {n.rpartition(".")[2] for n, m in backbone.named_modules() if isinstance(m, torch.nn.Linear)}
    return ", ".join(sorted(names)[:6])


def _activate(layers: list, adapter: str) -> None:
    """Make `adapter` the one that runs. peft's set_adapter also freezes the others: the trainable flags are kept
    as they were, so that frozen layers stay frozen and an adapter that waits for its task keeps its place in the
    optimiser."""
    for layer in layers:
        flags = [(p, p.requires_grad) for p in layer.parameters()]
        layer.set_adapter(adapter)
        for p, flag in flags:
            p.requires_grad_(flag)


class TaskSwitch:
    """Called by MultiTaskModel.forward with the task about to run: its adapter becomes the active one on each
    backbone it reads."""

    def __init__(self, layers: dict[str, list], adapters: dict[str, dict[str, str]]) -> None:
        self.layers = layers            # backbone -> its layers with adapters
        self.adapters = adapters        # task -> backbone -> adapter

    def __call__(self, task: str) -> None:
        for backbone, adapter in self.adapters.get(task, {}).items():
            layers = self.layers[backbone]
            if layers and layers[0].active_adapters != [adapter]:
                _activate(layers, adapter)


def plain_copy(backbone: Any, adapter: str | None) -> Any:
    """A copy of the backbone as its own transformers class, without adapter layers: `adapter` merged into its
    weights, or (None) the base weights alone."""
    out = copy.deepcopy(backbone)
    for name, layer in lora_layers(out).items():
        if adapter:
            layer.merge(adapter_names=[adapter])
        parent, _, child = name.rpartition(".")
        setattr(out.get_submodule(parent), child, layer.get_base_layer())
    out.__dict__.pop("peft_config", None)       # left by inject_adapter_in_model
    return out


def adapter_state(model: Any) -> dict[str, Any]:
    """Every adapter tensor of the model's backbones, keyed as in model.backbones."""
    return {k: v.detach().contiguous().cpu() for k, v in model.backbones.state_dict().items() if ".lora_" in k}


def load_adapter_state(model: Any, state: dict[str, Any], where: str) -> None:
    """Put adapter tensors written by adapter_state back; every adapter of the model must be among them."""
    import torch
    wanted = set(adapter_state(model))
    missing, unknown = sorted(wanted - set(state)), sorted(set(state) - wanted)
    if missing or unknown:
        raise UserError(f"{where}: its adapters do not fit this project's ({len(missing)} missing, e.g. "
                        f"{missing[:2]}; {len(unknown)} unknown, e.g. {unknown[:2]}); was it trained with other "
                        "adapter settings?")
    with torch.no_grad():
        model.backbones.load_state_dict(state, strict=False)


def _load_exported(project: Project, model: Any) -> None:
    """train.init_from: the adapters of an exported multi-task model, when it has them."""
    folder = project.resolve(project.train.init_from)
    path = folder / ADAPTERS_FILE
    if path.is_file():
        from safetensors.torch import load_file
        load_adapter_state(model, load_file(path), f"train.init_from: {path}")


ADAPTERS_FILE = "adapters.safetensors"      # beside heads.safetensors in a multi-task model folder


def standalone_adapter(native: Any, backbone: Any, adapter: str, cfg: BackboneConfig, task_type: str,
                       modules_to_save: list[str], base_model: str) -> Any:
    """A peft model around `native` (a transformers task model with the backbone's base weights and the trained
    head) whose adapter is the backbone's `adapter`: save_pretrained writes what PeftModel.from_pretrained loads
    onto the base model. The head's layers are saved whole (modules_to_save)."""
    import torch
    from peft import get_peft_model
    prefix = native.base_model_prefix
    layers = lora_layers(backbone)
    config = lora_config(cfg, backbone.config.model_type, task_type=task_type, modules_to_save=modules_to_save,
                         base_model_name_or_path=base_model)
    config.target_modules = {f"{prefix}.{name}" for name in layers}     # exactly the layers that were trained
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        # peft draws new adapter weights (replaced just below), and reads a property transformers renamed
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
        wrapped = get_peft_model(native, config)
    state = {f"base_model.model.{prefix}.{name}.{part}.default.weight": getattr(layer, part)[adapter].weight
             for name, layer in layers.items() for part in ("lora_A", "lora_B")}
    wanted = {k for k in wrapped.state_dict() if ".lora_" in k}
    if wanted != set(state):
        raise UserError(f"the adapter {adapter!r} could not be written alone: its layers do not match the exported "
                        f"model's ({sorted(wanted ^ set(state))[:3]}); export it merged (export.adapter = \"merged\")")
    with torch.no_grad():
        wrapped.load_state_dict(state, strict=False)
    return wrapped.eval()
