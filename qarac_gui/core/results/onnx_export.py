"""ONNX: an exported task folder as model.onnx with dynamic batch and length, beside its tokenizer and config,
checked against transformers with onnxruntime."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import logging
import shutil
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qarac_gui.core.errors import UserError
from qarac_gui.core.events import Progress

FOLDER = "onnx"                 # <task folder>/onnx/: model.onnx, config.json and the tokenizer files
TOLERANCE = 1e-4                # largest absolute difference from the transformers logits that passes the check
OPSET = 18                      # torch's ONNX functions are written for 18: no version conversion; onnxruntime >= 1.14
EXTRA = "qarac_gui[onnx]"
LIBRARIES = ("onnx", "onnxscript", "onnxruntime")       # onnxscript: torch's exporter translates the graph with it
LARGE_BYTES = 1.5 * 2**30       # protobuf stops at 2 GiB: larger weights go to model.onnx.data beside the graph
# The architecture class an export is written as (the last part of config.json's architectures) -> the auto class
# that loads it and the outputs the ONNX model keeps, named as transformers names them.
CLASSES = {
    "ForSequenceClassification": ("AutoModelForSequenceClassification", ("logits",)),
    "ForTokenClassification": ("AutoModelForTokenClassification", ("logits",)),
    "ForQuestionAnswering": ("AutoModelForQuestionAnswering", ("start_logits", "end_logits")),
    "ForMaskedLM": ("AutoModelForMaskedLM", ("logits",)),
}
INPUTS = ("input_ids", "attention_mask", "token_type_ids")     # all a tokenizer of these encoders gives
SENTENCES = ["The film was good.", "Alice lives in Paris near the river, and she walks to the museum every morning.",
             "Rude staff.", "The room was quiet and clean but the price was really rather high for what it was.",
             "Bob opens the shop at nine.", "Where does Carol live?"]
Emit = Callable[[Progress], None]


class OnnxError(UserError):
    pass


@dataclass(frozen=True)
class OnnxExport:
    folder: Path                            # where model.onnx is
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    max_difference: float                   # from the transformers outputs, over every checked batch
    shapes: tuple[tuple[int, int], ...]     # (batch, length) of the checked batches
    seconds: float


def missing_libraries() -> list[str]:
    """The libraries ONNX export needs that are not installed; found without importing them."""
    def absent(name: str) -> bool:
        if name in sys.modules:
            return sys.modules[name] is None
        return importlib.util.find_spec(name) is None
    return [name for name in LIBRARIES if absent(name)]


def install_hint(missing: list[str]) -> str:
    return (f"ONNX export needs {', '.join(LIBRARIES)}, and {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not installed; install them with: pip install '{EXTRA}'")


def _require_libraries() -> None:
    missing = missing_libraries()
    if not missing:
        for name in LIBRARIES:
            try:
                importlib.import_module(name)
            except ImportError:         # installed but broken (a missing shared library, a version clash)
                missing.append(name)
    if missing:
        raise OnnxError(install_hint(missing))


def _architecture(folder: Path) -> str:
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    return next(iter(config.get("architectures") or []), "")


def _class_of(folder: Path) -> tuple[str, tuple[str, ...]] | None:
    arch = _architecture(folder)
    return next((found for suffix, found in CLASSES.items() if arch.endswith(suffix)), None)


def onnx_problem(folder: Path) -> str:
    """Why this exported folder is not written as ONNX ("" when it is), in words that follow "because"."""
    folder = Path(folder)
    if (folder / "manifest.json").is_file():
        return ("it is the whole multi-task model, which only qarac_gui loads; each task's own folder is written "
                "as ONNX instead")
    if (folder / "modules.json").is_file():
        return ("it is a sentence-transformers model whose pooling (and dense layer) lie outside the transformers "
                "model; sentence-transformers (3.2 or newer) writes ONNX itself: "
                "SentenceTransformer(folder, backend='onnx')")
    if (folder / "adapter_config.json").is_file() and not (folder / "config.json").is_file():
        return "it holds a LoRA adapter alone (peft's format); export it merged for ONNX"
    if not (folder / "config.json").is_file():
        if any((p / "config.json").is_file() for p in folder.glob("*/")):
            return ("it holds the backbones of the tasks over named inputs, which have no head of their own to "
                    "export; their outputs mean something only with the pooling and the inputs their tasks give")
        return "it is not an exported model folder (no config.json)"
    if _class_of(folder) is None:
        arch = _architecture(folder) or "no architecture"
        return (f"its model class ({arch}) is not one of the task classes written as ONNX "
                f"({', '.join('*' + s for s in CLASSES)})")
    return ""


def _named_outputs(model: Any, outputs: tuple[str, ...]) -> Any:
    """The model with plain tensor inputs that returns the named outputs only, as a tuple: the graph then has
    exactly those outputs, whatever the config asks for besides (hidden states, attentions)."""
    import torch

    class NamedOutputs(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask=None, token_type_ids=None):
            given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
            out = self.model(**{k: v for k, v in given.items() if v is not None}, return_dict=True)
            return tuple(out[name] for name in outputs)

    return NamedOutputs().eval()


def _batches(pairs: bool) -> list[list]:
    """Rows of different counts and lengths: the traced batch (2 short rows), then 1 shorter row, 3 longer rows and
    2 rows of yet another length. Question answering reads (question, context) pairs."""
    s = SENTENCES
    rows = [[s[0], s[4]], [s[2]], [s[1], s[3], s[0]], [s[3], s[5]]]
    if pairs:
        return [[(text, s[(s.index(text) + 1) % len(s)]) for text in texts] for texts in rows]
    return rows


def _encode(tokenizer: Any, rows: list, limit: int) -> dict[str, Any]:
    if isinstance(rows[0], tuple):
        first, second = zip(*rows)
        return tokenizer(list(first), list(second), padding=True, truncation=True, max_length=limit,
                         return_tensors="pt")
    return tokenizer(rows, padding=True, truncation=True, max_length=limit, return_tensors="pt")


def export_onnx(folder: Path, out: Path | None = None, *, emit: Emit | None = None,
                tolerance: float = TOLERANCE) -> OnnxExport:
    """Write the exported task folder `folder` as `out`/model.onnx (default `folder`/onnx) with its tokenizer and
    config, then run it with onnxruntime on batches of several sizes and lengths against transformers."""
    folder = Path(folder)
    emit = emit or (lambda event: None)
    problem = onnx_problem(folder)
    if problem:
        raise OnnxError(f"{folder.name} is not exported to ONNX because {problem}")
    _require_libraries()
    out = Path(out) if out is not None else folder / FOLDER
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OnnxError(f"{out} already exists and is not empty; remove it, or choose another folder, to write "
                        "the ONNX model again")
    start = time.monotonic()
    import torch
    import transformers
    auto_class, outputs = _class_of(folder)
    emit(Progress("onnx", f"Loading {folder.name}", 0, 3))
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    # float32 whatever the folder holds: onnxruntime's CPU kernels and the 1e-4 check both want it.
    model = getattr(transformers, auto_class).from_pretrained(folder, dtype=torch.float32).eval()
    accepted = set(inspect.signature(model.forward).parameters)
    pairs = auto_class == "AutoModelForQuestionAnswering"
    limit = min(tokenizer.model_max_length, getattr(model.config, "max_position_embeddings", 512) or 512, 512)
    batches = [{k: v for k, v in _encode(tokenizer, rows, limit).items() if k in INPUTS and k in accepted}
               for rows in _batches(pairs)]
    inputs = tuple(batches[0])
    wrapped = _named_outputs(model, outputs)
    partial = out.with_name(f".{out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        emit(Progress("onnx", f"Writing {folder.name} as ONNX", 1, 3))
        _write(wrapped, batches[0], partial / "model.onnx", outputs, model)
        model.config.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
        emit(Progress("onnx", f"Checking {folder.name}'s ONNX model with onnxruntime", 2, 3))
        difference, shapes = _check(partial / "model.onnx", wrapped, batches, inputs, outputs)
        if not difference <= tolerance:         # `not <=`: a NaN difference fails too
            raise OnnxError(f"{folder.name}: the ONNX model's outputs differ from transformers' by up to "
                            f"{difference:.3g} (more than {tolerance:g}) on batches of (rows, tokens) {shapes}; "
                            "the ONNX file was not kept")
        if out.exists():
            out.rmdir()
        partial.replace(out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    from qarac_gui.core.results.export import share_modes
    share_modes(out)
    emit(Progress("onnx", f"Wrote {out / 'model.onnx'} (largest difference {difference:.2g})", 3, 3))
    return OnnxExport(out, inputs, outputs, difference, shapes, time.monotonic() - start)


def _write(wrapped: Any, sample: dict[str, Any], path: Path, outputs: tuple[str, ...], model: Any) -> None:
    import torch
    batch, length = torch.export.Dim("batch"), torch.export.Dim("sequence")
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)       # its notes (torchvision ops it skips) mean nothing here
    try:
        with warnings.catch_warnings(), torch.no_grad():
            # Axis names it merges because every input shares them, deprecations of transformers internals.
            warnings.simplefilter("ignore")
            torch.onnx.export(wrapped, (), str(path), kwargs=sample, output_names=list(outputs),
                              dynamic_shapes={name: {0: batch, 1: length} for name in sample},
                              dynamo=True, opset_version=OPSET, external_data=size > LARGE_BYTES, verbose=False)
    except Exception as e:
        cause = e.__cause__ or e        # the exporter's own error wraps what torch.export tripped on
        words = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
        raise OnnxError(f"torch could not write this {model.config.model_type} model ({type(model).__name__}) "
                        f"as ONNX: {type(cause).__name__}: {words}") from e
    finally:
        exporter_log.setLevel(level)


def _check(path: Path, wrapped: Any, batches: list[dict[str, Any]], inputs: tuple[str, ...],
           outputs: tuple[str, ...]) -> tuple[float, tuple[tuple[int, int], ...]]:
    import numpy as np
    import onnxruntime
    import torch
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()]
    if sorted(names[0]) != sorted(inputs) or names[1] != list(outputs):
        raise OnnxError(f"the ONNX model's inputs {names[0]} and outputs {names[1]} are not the tokenizer's "
                        f"{list(inputs)} and {list(outputs)}")
    worst, shapes = 0.0, []
    for batch in batches:
        with torch.no_grad():
            expected = wrapped(**batch)
        try:
            got = session.run(list(outputs), {k: v.numpy() for k, v in batch.items()})
        except Exception as e:          # onnxruntime's own error types live in a compiled module
            raise OnnxError(f"onnxruntime could not run the ONNX model on a batch of (rows, tokens) "
                            f"{tuple(batch['input_ids'].shape)}: {str(e).strip().splitlines()[0]}") from e
        for want, have in zip(expected, got, strict=True):
            if tuple(want.shape) != have.shape:
                raise OnnxError(f"the ONNX model gave shape {have.shape} where transformers gives "
                                f"{tuple(want.shape)}: its dynamic axes do not work")
            worst = max(worst, float(np.abs(want.numpy() - have).max()))
        shapes.append(tuple(batch["input_ids"].shape))
    return worst, tuple(shapes)


def export_folders_onnx(folders: dict[str, Path], emit: Emit | None = None
                        ) -> tuple[dict[str, OnnxExport], list[str]]:
    """Each convertible folder as ONNX (into its onnx/); the others as "<name>: not exported to ONNX because ...".
    The libraries and every destination are checked first, so a refusal leaves nothing half done."""
    _require_libraries()
    problems = {name: onnx_problem(folder) for name, folder in folders.items()}
    wanted = {name: Path(folder) for name, folder in folders.items() if not problems[name]}
    skipped = [f"{name}: not exported to ONNX because {problem}" for name, problem in problems.items() if problem]
    taken = [name for name, folder in wanted.items() if (folder / FOLDER).exists()]
    if taken:
        raise OnnxError(f"{', '.join(taken)} already {'has' if len(taken) == 1 else 'have'} an {FOLDER}/ folder; "
                        "remove it to write the ONNX model again")
    return {name: export_onnx(folder, emit=emit) for name, folder in wanted.items()}, skipped


def export_run_onnx(run_dir: Path, emit: Emit | None = None) -> tuple[dict[str, OnnxExport], list[str]]:
    """Every task a finished run exported, as ONNX beside it (export/<task>/onnx/)."""
    from qarac_gui.core.results.history import exported_folders
    folders = exported_folders(Path(run_dir))
    if not folders:
        raise OnnxError(f"{run_dir} has no exported models (no export/ folder with models): give the folder of a "
                        "finished run")
    return export_folders_onnx(folders, emit)


def copy_with_onnx(run_dir: Path, destination: Path, names: list[str], emit: Emit | None = None
                   ) -> tuple[list[Path], dict[str, OnnxExport], list[str]]:
    """copy_export, then each copied task folder written as ONNX too: (the folders, the ONNX exports, why the rest
    were not). The libraries are checked before anything is copied."""
    from qarac_gui.core.results.history import copy_export
    _require_libraries()
    written = copy_export(run_dir, destination, names, emit)
    # A run converted earlier (qarac-train --onnx) hands its checked ONNX models over with the copy.
    earlier = [p.name for p in written if (p / FOLDER / "model.onnx").is_file()]
    try:
        done, skipped = export_folders_onnx({p.name: p for p in written if p.name not in earlier}, emit)
    except UserError as e:
        raise OnnxError(f"the folders were copied into {destination}, but {e}") from e
    return written, done, skipped + [f"{name}: its ONNX model, written earlier, was copied" for name in earlier]
