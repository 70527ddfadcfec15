"""What each head kind is and needs, without importing torch (the GUI lists them before any model loads)."""

from __future__ import annotations

from dataclasses import dataclass

from qarac_gui.core.project.config import HeadConfig

# The activation each architecture's own *ForSequenceClassification head uses between its two layers; matching
# it lets a default head be exported as that class with identical outputs.
NATIVE_ACTIVATION = {"bert": "tanh", "roberta": "tanh", "xlm-roberta": "tanh", "camembert": "tanh",
                     "mpnet": "tanh", "distilbert": "relu", "electra": "gelu", "deberta-v2": "gelu"}


@dataclass(frozen=True)
class HeadKind:
    kind: str
    title: str
    help: str
    label_role: str              # what the label column holds
    pooled: bool                 # uses one vector per text (pooling option applies)
    default_pooling: str = "cls"
    default_hidden_layer: bool = False


HEAD_KINDS: dict[str, HeadKind] = {k.kind: k for k in (
    HeadKind("classification", "Single-label classification", "One label per text (or text pair).",
             "label", True, default_hidden_layer=True),
    HeadKind("multilabel", "Multi-label classification", "Any number of labels per text.",
             "labels", True, default_hidden_layer=True),
    HeadKind("regression", "Regression", "One number per text (or text pair).", "score", True,
             default_hidden_layer=True),
    HeadKind("token_classification", "Token classification", "A tag per word (e.g. named entities, BIO).",
             "tags", False),
    HeadKind("span_qa", "Extractive question answering", "Find the answer span of a question in a context.",
             "answers", False),
    HeadKind("similarity", "Sentence-pair similarity", "Embed both texts; their cosine learns a score in [-1, 1].",
             "score", True, default_pooling="mean"),
    HeadKind("masked_lm", "Masked language modelling", "Keep training the pre-training objective on plain text.",
             "", False),
)}


def pooling_of(spec: HeadConfig) -> str:
    return spec.pooling or HEAD_KINDS[spec.kind].default_pooling


def hidden_layer_of(spec: HeadConfig) -> bool:
    return HEAD_KINDS[spec.kind].default_hidden_layer if spec.hidden_layer is None else spec.hidden_layer


def activation_of(spec: HeadConfig, model_type: str) -> str:
    return NATIVE_ACTIVATION.get(model_type, "tanh") if spec.activation == "auto" else spec.activation
