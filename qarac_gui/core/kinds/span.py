"""Extractive question answering: the answer is a span of the context."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qarac_gui.core.kinds import cells
from qarac_gui.core.kinds.base import HeadKind, Prediction, typed_value

if TYPE_CHECKING:
    import torch
    from torch import nn

    from qarac_gui.core.data.tokenize import TaskData
    from qarac_gui.core.project.config import HeadConfig, TaskConfig

MAX_ANSWER_TOKENS = 30


class SpanQA(HeadKind):
    name, title = "span_qa", "Extractive question answering"
    help = "Find the answer span of a question in a context."
    text_role, pair_role = "Question column", "Context column"
    label_role = "answers"
    maps_labels = False
    needs_pair = True
    metrics, main_metric = ("exact_match", "f1"), "f1"
    # Validation rows keep what turns start and end logits back into text.
    eval_columns = ("offset_mapping", "context", "answer_texts")
    auto_class, layout = "AutoModelForQuestionAnswering", "qa"
    typed_text, typed_pair = "Question", "Context"

    def bad_cells(self, task: TaskConfig, columns: dict[str, list]) -> list[tuple[int, str] | None]:
        d = task.data
        found = super().bad_cells(task, columns)
        if d.text_pair:
            found.append(cells.first_where(zip(columns[d.text_pair], columns[d.label]),
                                           lambda pair: cells.answer_problem(pair[0], pair[1], d.label)))
        return found

    def encode(self, task: TaskConfig, tokenizer: Any, batch: dict, label_id: Any, split: str) -> dict:
        questions, contexts = batch[task.data.text], batch[task.data.text_pair]
        enc = tokenizer(questions, contexts, truncation="only_second", max_length=task.max_length,
                        return_offsets_mapping=True)
        out = {k: v for k, v in enc.items() if k != "offset_mapping"}
        out["start_positions"], out["end_positions"] = [], []
        offsets_out, answer_texts = [], []
        for i, answers in enumerate(batch[task.data.label]):
            # SQuAD style, each text at its start in the context: checked by bad_cells.
            texts, starts = list(answers["text"]), [int(s) for s in answers["answer_start"]]
            seq = enc.sequence_ids(i)
            offsets = [o if s == 1 else None for o, s in zip(enc["offset_mapping"][i], seq)]
            start_tok = end_tok = 0               # points at the first token when the answer was cut off
            if texts:
                a_start = starts[0]
                a_end = a_start + len(texts[0])
                inside = [j for j, o in enumerate(offsets) if o is not None and o[0] < a_end and o[1] > a_start]
                if inside:
                    start_tok, end_tok = inside[0], inside[-1]
            out["start_positions"].append(start_tok)
            out["end_positions"].append(end_tok)
            offsets_out.append([list(o) if o is not None else [-1, -1] for o in offsets])
            answer_texts.append(texts)
        if split == "valid":
            out["offset_mapping"], out["context"], out["answer_texts"] = offsets_out, contexts, answer_texts
        return out

    def collate(self, data: TaskData, rows: dict, batch: dict, seed: int) -> None:
        import torch
        batch["start_positions"] = torch.tensor(rows["start_positions"])
        batch["end_positions"] = torch.tensor(rows["end_positions"])

    def build(self, spec: HeadConfig, encoder: nn.Module, num_labels: int,
              pretrained_lm: nn.Module | None) -> nn.Module:
        from qarac_gui.core.kinds.layers import SpanHead
        return SpanHead(spec, encoder.config.hidden_size, num_labels, encoder.config.model_type)

    def host_labels(self, batch: dict, rows: dict) -> Any:
        return {k: rows[k] for k in self.eval_columns} | {"ids": rows["input_ids"]}

    def predict(self, model: nn.Module, task: TaskConfig, tokenizers: dict[str, Any], inputs: dict[str, str],
                labels: list[str]) -> Prediction:
        import torch

        from qarac_gui.core.kinds.layers import on_device_of
        question = typed_value(inputs, "text", self.typed_text)
        context = typed_value(inputs, "pair", self.typed_pair)
        enc = tokenizers[task.backbone](question, context, truncation="only_second", max_length=task.max_length,
                                        return_offsets_mapping=True, return_tensors="pt")
        offsets = [list(o) if s == 1 else [-1, -1] for o, s in zip(enc.pop("offset_mapping")[0].tolist(),
                                                                     enc.sequence_ids(0))]
        encoder = model.backbones[task.backbone]
        with torch.no_grad():
            start, end = model.heads[task.name].logits(encoder, on_device_of(encoder, dict(enc)))
        start, end = start[0].cpu(), end[0].cpu()
        found = best_tokens(start, end, offsets)
        if found is None:
            return Prediction("no answer: the context was cut off before any of it fit (max_length)",
                              values={"answer": "", "score": 0.0})
        a, b = found
        # The span's score: the probability of its start times that of its end.
        score = float(start.softmax(-1)[a] * end.softmax(-1)[b])
        answer = context[offsets[a][0]:offsets[b][1]]
        return Prediction(f"{answer} ({score:.1%})", ("answer", "score", "characters"),
                          ((answer, f"{score:.4f}", f"{offsets[a][0]}-{offsets[b][1]}"),),
                          {"answer": answer, "score": score, "start": offsets[a][0], "end": offsets[b][1]})

    def scores(self, data: TaskData, outputs: list, extras: list, mean_loss: float) -> dict[str, float]:
        from qarac_gui.core.kinds import metrics
        predictions, references = [], []
        for (start, end), extra in zip(outputs, extras):
            for i in range(start.shape[0]):
                predictions.append(best_span(start[i], end[i], extra["offset_mapping"][i], extra["context"][i]))
                references.append(extra["answer_texts"][i])
        return metrics.span_qa_metrics(predictions, references)


def best_span(start: torch.Tensor, end: torch.Tensor, offsets: list, context: str) -> str:
    """Highest start+end score over spans inside the context, at most MAX_ANSWER_TOKENS long."""
    found = best_tokens(start, end, offsets)
    return "" if found is None else context[offsets[found[0]][0]:offsets[found[1]][1]]


def best_tokens(start: torch.Tensor, end: torch.Tensor, offsets: list) -> tuple[int, int] | None:
    """The first and last token of best_span (None when no span fits)."""
    import numpy as np
    valid = np.array([o[0] >= 0 for o in offsets])
    n = len(offsets)
    s, e = start[:n].numpy(), end[:n].numpy()
    scores = s[:, None] + e[None, :]
    i, j = np.indices(scores.shape)
    allowed = (j >= i) & (j - i < MAX_ANSWER_TOKENS) & valid[:, None] & valid[None, :]
    if not allowed.any():
        return None
    scores = np.where(allowed, scores, -np.inf)
    a, b = np.unravel_index(int(np.argmax(scores)), scores.shape)
    return int(a), int(b)
