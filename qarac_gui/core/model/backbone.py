"""Loading a pretrained encoder and its tokenizer, with whatever task head its checkpoint carried removed."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from qarac_gui.core.errors import UserError
from qarac_gui.core.model.code_trust import model_package_path, remote_code_allowed
from qarac_gui.core.project.config import BackboneConfig


class ModelLoadError(UserError, RuntimeError):
    """The base model could not be loaded; the message says why and what to do."""


@dataclass
class LoadedBackbone:
    model: Any                   # transformers PreTrainedModel (the bare encoder)
    tokenizer: Any
    source: str                  # local folder or Hub id actually loaded
    architecture: str            # what the checkpoint was saved as, e.g. BertForSequenceClassification
    removed: str                 # description of the dropped head; "" when there was none


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx")


def resolve_source(spec: str, root: Path) -> tuple[str, bool]:
    """(folder or Hub id, is_local). `package:<module>` names a Python package that ships a model folder."""
    if spec.startswith("package:"):
        return model_package_path(spec, root), True
    path = Path(spec).expanduser()
    if not path.is_absolute():
        path = root / path
    looks_local = spec.startswith((".", "/", "~")) or path.exists() or spec.count("/") > 1
    if looks_local:
        if path.exists() and not path.is_dir():
            hint = (f"choose the folder that holds it ({path.parent})" if path.suffix in WEIGHT_SUFFIXES
                    or path.name in ("config.json", *TOKENIZER_FILES) else "choose a model folder")
            raise ModelLoadError(f"model {spec!r}: {path} is a file, not a model folder; {hint}")
        if not path.is_dir():
            raise ModelLoadError(f"model folder {path} does not exist; choose a folder that holds config.json "
                                 "and the weights, or give a Hub id like bert-base-uncased")
        return str(path), True
    return spec, False


def _check_weights(folder: Path, allow_pickle: bool) -> None:
    if not (folder / "config.json").is_file():
        raise ModelLoadError(f"{folder} has no config.json: it is not a Hugging Face model folder")
    names = {p.name for p in folder.iterdir()}
    has_safetensors = any(n.endswith(".safetensors") or n == "model.safetensors.index.json" for n in names)
    has_pickle = any(n.endswith(".bin") or n.endswith(".pt") for n in names)
    if has_safetensors:
        return
    if has_pickle and not allow_pickle:
        raise ModelLoadError(f"{folder} has only pickle weights (pytorch_model.bin), which can run code when "
                             "loaded; set allow_pickle = true for this backbone only if you trust the source")
    if not has_pickle:
        raise ModelLoadError(f"{folder} has no weights (no *.safetensors or pytorch_model.bin)")


TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model",
                   "tokenizer.model")


def _check_tokenizer(folder: Path) -> None:
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise ModelLoadError(f"{folder} has no tokenizer files (tokenizer.json or a vocabulary); save the "
                             "tokenizer into the same folder (tokenizer.save_pretrained(folder))")


def _base_class_name(config: Any) -> str:
    from transformers import MODEL_MAPPING
    cls = MODEL_MAPPING.get(type(config), None)
    return cls.__name__ if cls is not None else ""


def load_backbone(cfg: BackboneConfig, root: Path, cache_dir: str | None = None, name: str = "encoder",
                  progress: Callable | None = None, cancel: threading.Event | None = None) -> LoadedBackbone:
    """A Hub model is first fetched (or completed, or repaired) through hub.model_folder: `progress` gets its
    DownloadProgress, setting `cancel` stops it with DownloadCancelled."""
    source, local = resolve_source(cfg.model, root)
    if local:
        _check_weights(Path(source), cfg.allow_pickle)
        _check_tokenizer(Path(source))
    trusted = remote_code_allowed(name, cfg.trust_remote_code, source, local, cfg.revision)
    folder = source
    if not local:       # transformers' own downloads retry for minutes and fail in their own words
        from qarac_gui.core.model.hub import DownloadCancelled, HubError, model_folder
        try:
            folder = model_folder(source, cfg.revision or None, allow_pickle=cfg.allow_pickle, progress=progress,
                                  cancel=cancel, cache_dir=cache_dir)
        except DownloadCancelled:
            raise
        except HubError as e:
            raise ModelLoadError(str(e)) from e
    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()       # we report the removed head ourselves, in plain words
    hf_logging.disable_progress_bar()
    common = dict(trust_remote_code=trusted, cache_dir=cache_dir)
    try:
        config = AutoConfig.from_pretrained(folder, **common)
        model_class = AutoModel
        if cfg.role == "decoder":       # the same checkpoint, read causally, with its (tied) LM head
            from transformers import AutoModelForCausalLM
            config.is_decoder, model_class = True, AutoModelForCausalLM
        model, info = model_class.from_pretrained(
            folder, config=config, output_loading_info=True,
            use_safetensors=None if cfg.allow_pickle else True, **common)
        tokenizer = AutoTokenizer.from_pretrained(folder, **common)
    except (OSError, ValueError, KeyError) as e:
        raise ModelLoadError(_explain_load_error(cfg.model, e)) from e
    except Exception as e:
        if type(e).__name__ != "SafetensorError":
            raise
        names = sorted(p.name for p in Path(folder).glob("*.safetensors"))
        raise ModelLoadError(f"model {cfg.model!r}: {', '.join(names) or 'a weights file (*.safetensors)'} is "
                             f"damaged or not a safetensors file ({str(e).splitlines()[0]}); download or save the "
                             "model again") from e
    saved_as = (config.architectures or [type(model).__name__])[0]
    removed = ""
    dropped = sorted(info.get("unexpected_keys", []))
    if cfg.role == "encoder" and (dropped or saved_as != _base_class_name(config)):
        heads = sorted({k.split(".")[0] for k in dropped})
        removed = f"{saved_as} head ({', '.join(heads) or 'no weights'}: {len(dropped)} tensors)"
    # Heads pool for themselves: the encoder's own pooler is kept (so exported encoders load without missing
    # weights) but never trained.
    if isinstance(getattr(model, "pooler", None), torch.nn.Module):
        model.pooler.requires_grad_(False)
    if not getattr(tokenizer, "is_fast", False):
        raise ModelLoadError(f"model {cfg.model!r}: only a slow (Python) tokenizer is available; the app needs a "
                             "fast tokenizer (tokenizer.json) for offsets and word alignment")
    return LoadedBackbone(model, tokenizer, source, saved_as, removed)


def _explain_load_error(spec: str, error: Exception) -> str:
    from qarac_gui.core.model.hub import hub_failure_message
    hub = hub_failure_message(error, f"model {spec!r}")
    if hub:     # transformers fetched something itself (load_pretrained_lm, code of another repository)
        return hub
    text = str(error)
    if "safetensors" in text.lower() and "pickle" not in text.lower():
        return (f"model {spec!r}: no safetensors weights found. If you trust the source, set allow_pickle = true "
                f"to load pytorch_model.bin ({text.splitlines()[0]})")
    if "trust_remote_code" in text:
        return (f"model {spec!r} needs custom code from its repository. Turn on trust_remote_code for this "
                "backbone only if you trust that repository")
    return f"model {spec!r} could not be loaded: {text.splitlines()[0] if text else type(error).__name__}"


def load_pretrained_lm(cfg: BackboneConfig, loaded: LoadedBackbone, cache_dir: str | None = None,
                       name: str = "encoder") -> Any:
    """The checkpoint's whole *ForMaskedLM model, so a masked-LM task continues from its trained LM head."""
    from transformers import AutoModelForMaskedLM
    trusted = remote_code_allowed(name, cfg.trust_remote_code, loaded.source, Path(loaded.source).is_dir(),
                                  cfg.revision)
    try:
        return AutoModelForMaskedLM.from_pretrained(
            loaded.source, revision=cfg.revision or None, trust_remote_code=trusted,
            cache_dir=cache_dir, use_safetensors=None if cfg.allow_pickle else True)
    except (OSError, ValueError, KeyError) as e:
        raise ModelLoadError(_explain_load_error(cfg.model, e)) from e


def encoder_layers(model: Any) -> list:
    """The encoder's stack of transformer layers, bottom first, found by its length for any architecture."""
    import torch
    n = getattr(model.config, "num_hidden_layers", None)
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n:
            return list(module)
    return []


def embeddings_module(model: Any) -> Any:
    return getattr(model, "embeddings", None) or model.get_input_embeddings()
