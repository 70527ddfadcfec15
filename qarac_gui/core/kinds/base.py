"""What a head kind is and does.

One subclass of HeadKind per kind is the only place that knows that kind: its words for the window, the columns it
reads, how its rows are checked, tokenised and batched, the head it builds, its metrics, how it is exported and what
it predicts for typed text.
Validation, the window, the data checks, the run and the export ask the kind; none of them names one. The kinds
load without torch (the window lists them before any model loads): what needs torch imports it when called.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from qarac_gui.core.errors import UserError
from qarac_gui.core.kinds import cells

if TYPE_CHECKING:
    from torch import nn

    from qarac_gui.core.data.tokenize import TaskData
    from qarac_gui.core.project.config import HeadConfig, Project, TaskConfig

# The activation each architecture's own *ForSequenceClassification head uses between its two layers; matching
# it lets a default head be exported as that class with identical outputs.
NATIVE_ACTIVATION = {"bert": "tanh", "roberta": "tanh", "xlm-roberta": "tanh", "camembert": "tanh",
                     "mpnet": "tanh", "distilbert": "relu", "electra": "gelu", "deberta-v2": "gelu"}


@dataclass(frozen=True)
class TypedInput:
    """A text a person types to try a task: its name (the key of predict's `inputs`) and what it is."""
    name: str
    label: str
    lines: bool = False             # one text per line: several rows at once


@dataclass(frozen=True)
class Prediction:
    """What a head predicts for typed inputs, as plain values: a line of words, a table of details, and the
    numbers behind them by name (e.g. label and probabilities, tags, answer and score, cosine, ranking, texts)."""
    text: str
    columns: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()
    values: dict[str, Any] = field(default_factory=dict)


class HeadKind:
    # In the window and the docs.
    name: str = ""
    title: str = ""
    help: str = ""
    text_role: str = "Text column"
    pair_role: str = "Second text"
    # The columns: what the label column holds (label, labels, score, tags, answers; "" when none is read), and
    # whether a second text column is required.
    label_role: str = "label"
    needs_pair: bool = False
    words_input: bool = False       # the text column holds a list of words per row, not a text
    maps_labels: bool = True        # data.label_map may rewrite the label column's values
    has_classes: bool = False       # label names: listed, declared by the dataset or seen in the data; two or more
    single_label: bool = False      # one class per row (class balance is worth a warning)
    score_range: tuple[float, float] | None = None     # a score column's values must lie in this range
    # The head.
    pooled: bool = False            # one vector per text: the pooling option applies
    default_pooling: str = "cls"
    default_hidden_layer: bool = False
    options: tuple[str, ...] = ()   # head options that only this kind reads (the window enables just these)
    uses_lm_head: bool = False      # continues the pretrained model's own language-model head
    # Evaluation.
    metrics: tuple[str, ...] = ()
    main_metric: str = ""
    eval_columns: tuple[str, ...] = ()  # columns kept beside the inputs of validation rows for the metrics
    # Export: the architecture's own transformers class (auto_class, with `layout` naming where its head keeps
    # its layers), or a sentence-transformers folder.
    export_as: str = "native"
    auto_class: str = ""
    problem_type: str = ""
    layout: str = ""

    takes_inputs: bool = False      # reads named inputs (several texts, several backbones), not data.text
    # Trying the head on typed text: what the first and second texts are.
    typed_text: str = "Text"
    typed_pair: str = "Second text"

    # ------------------------------------------------------------------ the project file
    def problems(self, where: str, task: TaskConfig, project: Project) -> list[str]:
        """What is wrong with this kind's settings in a task, each naming its key."""
        out = []
        if task.inputs:
            out.append(f"{where}.inputs: a {self.name} head reads data.text with the task's backbone; named inputs "
                       "are for vector and decode heads")
        if self.needs_pair and not task.data.text_pair:
            out.append(f"{where}.data.text_pair: a {self.name} task needs a second text column")
        return out

    def label_role_for(self, spec: HeadConfig) -> str:
        """What the label column holds with these head settings ("" when the task reads none)."""
        return self.label_role

    def main(self, spec: HeadConfig) -> str:
        """The metric that says how good the head is, with these settings."""
        return self.main_metric

    def reported(self, spec: HeadConfig) -> tuple[str, ...]:
        """The metrics an evaluation reports, with these settings."""
        return self.metrics

    # ------------------------------------------------------------------ data
    def text_columns(self, task: TaskConfig) -> list[str]:
        return [c for c in (task.data.text, task.data.text_pair) if c]

    def columns(self, task: TaskConfig) -> list[str]:
        """The columns a task's rows must have."""
        return self.text_columns(task) + ([task.data.label] if self.label_role_for(task.head) else [])

    def prefixes(self, task: TaskConfig) -> dict[str, str]:
        """Tokenised inputs, by the prefix of their columns in a batch, and the backbone whose tokenizer made
        them ("" for the task's own)."""
        return {"": "", "b_": ""}

    def labels_in(self, task: TaskConfig, value: Any) -> list:
        """The labels one row's label cell holds (kinds with classes)."""
        return []

    def order_labels(self, seen: set) -> list[str]:
        """Label names seen in the data, in the order their ids get."""
        return sorted(seen)

    def bad_cells(self, task: TaskConfig, columns: dict[str, list]) -> list[tuple[int, str] | None]:
        """For each check, the first (position, problem) among the rows, or None."""
        d = task.data
        return [cells.first_where(columns[c], lambda v, c=c: cells.text_problem(v, c)) for c in (d.text, d.text_pair)
                if c]

    def tokenizer_problem(self, task: TaskConfig, tokenizer: Any) -> str:
        return ""

    def encode(self, task: TaskConfig, tokenizer: Any, batch: dict, label_id: Any, split: str) -> dict:
        """Model inputs (and labels) for a batch of rows; `label_id` turns a label name into its id."""
        d = task.data
        pair = batch[d.text_pair] if d.text_pair else None
        return dict(tokenizer(batch[d.text], pair, truncation=True, max_length=task.max_length))

    def longest(self, task: TaskConfig, prefix: str) -> int:
        """The most tokens a row's input under `prefix` can have (a padded batch never needs to be wider)."""
        return task.max_length

    def collate(self, data: TaskData, rows: dict, batch: dict, seed: int) -> None:
        """Add the labels of padded rows to `batch` (which holds the padded inputs)."""
        import torch
        batch["labels"] = torch.tensor(rows["labels"], dtype=torch.float)

    # ------------------------------------------------------------------ the head
    def outputs(self, num_labels: int) -> int:
        return num_labels

    def build(self, spec: HeadConfig, encoder: nn.Module, num_labels: int,
              pretrained_lm: nn.Module | None) -> nn.Module:
        raise NotImplementedError

    # ------------------------------------------------------------------ evaluation
    def host_labels(self, batch: dict, rows: dict) -> Any:
        """What the metrics need of a validation batch besides the model's outputs, on the CPU."""
        return batch["labels"].cpu()

    def scores(self, data: TaskData, outputs: list, extras: list, mean_loss: float) -> dict[str, float]:
        raise NotImplementedError

    # ------------------------------------------------------------------ export
    def export_problem(self, spec: HeadConfig, model_type: str, hidden_size: int) -> str:
        """Why this head cannot be written as the architecture's own class ("" when it can)."""
        if hidden_layer_of(spec):
            return (f"{model_type}'s own {self.name} head is a single linear layer; set hidden_layer = false to "
                    "export it")
        return ""

    def backbones(self, task: TaskConfig) -> list[str]:
        """The backbones a task of this kind reads, in order."""
        return [task.backbone]

    # ------------------------------------------------------------------ trying it on typed text
    def typed_inputs(self, task: TaskConfig) -> list[TypedInput]:
        """The texts a person types to try the task: `text`, and `pair` when the task reads a second text."""
        out = [TypedInput("text", self.typed_text)]
        if self.needs_pair or task.data.text_pair:
            out.append(TypedInput("pair", self.typed_pair))
        return out

    def typed_hint(self, task: TaskConfig) -> str:
        """What to type, in a line for the window ("" when the inputs' names say it all)."""
        return ""

    def predict(self, model: nn.Module, task: TaskConfig, tokenizers: dict[str, Any], inputs: dict[str, str],
                labels: list[str]) -> Prediction:
        """The head's answer for typed inputs (named as typed_inputs names them), the model in eval mode."""
        raise NotImplementedError

    def typed_batch(self, task: TaskConfig, tokenizer: Any, inputs: dict[str, str]) -> dict:
        """The typed text (and pair) as a batch of one row, cut to the task's max_length."""
        text = typed_value(inputs, "text", self.typed_text)
        pair = typed_value(inputs, "pair", self.typed_pair) if self.needs_pair or task.data.text_pair else None
        return dict(tokenizer(text, pair, truncation=True, max_length=task.max_length, return_tensors="pt"))


def typed_value(inputs: dict[str, str], name: str, label: str) -> str:
    text = (inputs.get(name) or "").strip()
    if not text:
        raise UserError(f"type something into {label!r} first")
    return text


def kind_of(spec: HeadConfig) -> HeadKind:
    from qarac_gui.core.kinds import HEAD_KINDS
    return HEAD_KINDS[spec.kind]


def pooling_of(spec: HeadConfig) -> str:
    return spec.pooling or kind_of(spec).default_pooling


def hidden_layer_of(spec: HeadConfig) -> bool:
    return kind_of(spec).default_hidden_layer if spec.hidden_layer is None else spec.hidden_layer


def activation_of(spec: HeadConfig, model_type: str) -> str:
    return NATIVE_ACTIVATION.get(model_type, "tanh") if spec.activation == "auto" else spec.activation
