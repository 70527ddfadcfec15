"""Head kinds: one class per kind (see base.HeadKind), listed here. A new kind is a new class added to HEAD_KINDS."""

from __future__ import annotations

from qarac_gui.core.kinds.base import HeadKind, kind_of
from qarac_gui.core.kinds.inputs import Decode, Vector
from qarac_gui.core.kinds.masked_lm import MaskedLM
from qarac_gui.core.kinds.pooled import Classification, Multilabel, Regression
from qarac_gui.core.kinds.similarity import Similarity
from qarac_gui.core.kinds.span import SpanQA
from qarac_gui.core.kinds.token import TokenClassification

HEAD_KINDS: dict[str, HeadKind] = {k.name: k for k in (
    Classification(), Multilabel(), Regression(), TokenClassification(), SpanQA(), Similarity(), MaskedLM(),
    Vector(), Decode())}

__all__ = ["HEAD_KINDS", "HeadKind", "kind_of"]
