"""Masked language modelling: the pre-training objective, continued on the task's text."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from qarac_gui.core.errors import UserError
from qarac_gui.core.kinds.base import HeadKind, Prediction, TypedInput, typed_value

if TYPE_CHECKING:
    import torch
    from torch import nn

    from qarac_gui.core.data.tokenize import TaskData
    from qarac_gui.core.project.config import HeadConfig, TaskConfig


TOP_FILLS = 5                       # the tokens shown for each mask when trying the head


class MaskedLM(HeadKind):
    name, title = "masked_lm", "Masked language modelling"
    help = "Keep training the pre-training objective on plain text."
    label_role = ""
    maps_labels = False
    options = ("mlm_probability",)
    uses_lm_head = True
    metrics, main_metric = ("perplexity",), "perplexity"
    auto_class, layout = "AutoModelForMaskedLM", "lm"
    typed_text = "Text with [MASK] where a word is missing"

    def tokenizer_problem(self, task: TaskConfig, tokenizer: Any) -> str:
        if tokenizer.mask_token_id is None:
            return f"task {task.name}: the tokenizer of backbone {task.backbone!r} has no mask token"
        return ""

    def encode(self, task: TaskConfig, tokenizer: Any, batch: dict, label_id: Any, split: str) -> dict:
        d = task.data
        pair = batch[d.text_pair] if d.text_pair else None
        return dict(tokenizer(batch[d.text], pair, truncation=True, max_length=task.max_length,
                              return_special_tokens_mask=True))

    def collate(self, data: TaskData, rows: dict, batch: dict, seed: int) -> None:
        from qarac_gui.core.kinds.layers import pad
        special = pad(rows["special_tokens_mask"], batch["input_ids"].shape[1], 1).bool()
        batch["input_ids"], batch["labels"] = _mask(data, batch["input_ids"], special, seed)
        # Found here, on the host: on the device, how many positions are masked would be a wait for the GPU.
        batch["masked_positions"] = (batch["labels"].flatten() != -100).nonzero().squeeze(1)

    def build(self, spec: HeadConfig, encoder: nn.Module, num_labels: int,
              pretrained_lm: nn.Module | None) -> nn.Module:
        from qarac_gui.core.kinds.layers import masked_lm_head
        return masked_lm_head(encoder, pretrained_lm)

    def host_labels(self, batch: dict, rows: dict) -> Any:
        return None

    def scores(self, data: TaskData, outputs: list, extras: list, mean_loss: float) -> dict[str, float]:
        # `outputs` hold each batch's summed loss and masked-token count, never its logits. Perplexity comes from
        # the loss averaged as every task's loss is, so that the two reported numbers agree.
        from qarac_gui.core.kinds import metrics
        return metrics.perplexity(mean_loss)

    def export_problem(self, spec: HeadConfig, model_type: str, hidden_size: int) -> str:
        return ""                   # the architecture's own LM head, as it was

    def typed_inputs(self, task: TaskConfig) -> list[TypedInput]:
        return [TypedInput("text", self.typed_text)]

    def typed_hint(self, task: TaskConfig) -> str:
        return "The most likely tokens for each [MASK] (or <mask>), with their probabilities."

    def predict(self, model: nn.Module, task: TaskConfig, tokenizers: dict[str, Any], inputs: dict[str, str],
                labels: list[str]) -> Prediction:
        import torch

        from qarac_gui.core.kinds.layers import on_device_of
        tokenizer, encoder = tokenizers[task.backbone], model.backbones[task.backbone]
        mask = tokenizer.mask_token
        # Either spelling of the mask works, whichever the tokenizer's own is.
        text = typed_value(inputs, "text", self.typed_text).replace("[MASK]", mask).replace("<mask>", mask)
        batch = dict(tokenizer(text, truncation=True, max_length=task.max_length, return_tensors="pt"))
        where = (batch["input_ids"][0] == tokenizer.mask_token_id).nonzero().flatten().tolist()
        if not where:
            raise UserError(f"write {mask} where a word is missing (e.g. \"the film was {mask}\")")
        with torch.no_grad():
            logits = model.heads[task.name].logits(encoder, on_device_of(encoder, batch))[0].float().cpu()
        fills = []
        for position in where:
            top = logits[position].softmax(-1).topk(TOP_FILLS)
            fills.append([(tokenizer.decode([int(i)]).strip(), float(p)) for p, i in zip(top.values, top.indices)])
        text = " | ".join(f"{words[0][0]} ({words[0][1]:.1%})" for words in fills)
        rows = tuple((str(n + 1), token, f"{p:.4f}") for n, words in enumerate(fills) for token, p in words)
        return Prediction(text, ("mask", "token", "probability"), rows, {"fills": fills})


def _mask(data: TaskData, ids: torch.Tensor, special: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks drawn from `seed` (so a resumed run draws the same ones). BERT's recipe: of the chosen tokens 80%
    become [MASK], 10% a random token, 10% stay."""
    import torch
    g = torch.Generator().manual_seed(seed)
    chosen = (torch.rand(ids.shape, generator=g) < data.task.head.mlm_probability) & ~special
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    roll = torch.rand(ids.shape, generator=g)
    random_ids = torch.randint(data.vocab_size, ids.shape, generator=g)
    ids = torch.where(chosen & (roll < 0.8), torch.full_like(ids, data.mask_id), ids)
    ids = torch.where(chosen & (roll >= 0.8) & (roll < 0.9), random_ids, ids)
    return ids, labels
