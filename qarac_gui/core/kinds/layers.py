"""The torch modules heads are made of: pooling, the projection most architectures use, and the head modules the
kinds build (imported only when a model is built: the kinds themselves load without torch)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn
from torch.nn import functional as F

from qarac_gui.core.errors import UserError
from qarac_gui.core.kinds.base import activation_of, hidden_layer_of, pooling_of

if TYPE_CHECKING:
    from qarac_gui.core.project.config import HeadConfig

ENCODER_INPUTS = ("input_ids", "attention_mask", "token_type_ids")

# The logits evaluation computes at once (64 MB in float32): a chunk of the masked positions, never all of them.
EVAL_LOGITS = 1 << 24

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU, "gelu": nn.GELU}


@dataclass
class HeadOutput:
    loss: torch.Tensor
    logits: Any                  # what evaluation turns into predictions

    @property
    def kept(self) -> Any:
        """What evaluation keeps of a batch for the metrics."""
        return self.logits


@dataclass
class MaskedLMOutput:
    """A masked-LM batch's loss, and what evaluation keeps of it: the summed loss and the number of masked tokens.
    The logits of every position are computed only when `logits` is read (training and evaluation never read it):
    with a 30k vocabulary they take 15 MB in float32 for each row of 128 tokens."""
    loss: torch.Tensor
    kept: tuple[torch.Tensor, torch.Tensor]
    lm_head: nn.Module
    hidden: torch.Tensor         # the encoder's states at every position

    @property
    def logits(self) -> torch.Tensor:
        return self.lm_head(self.hidden)


def on_device_of(module: nn.Module, batch: dict) -> dict:
    """The batch's tensors on the device of the module's weights."""
    device = next(module.parameters()).device
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def encode(encoder: nn.Module, batch: dict, prefix: str = "") -> torch.Tensor:
    inputs = {k: batch[prefix + k] for k in ENCODER_INPUTS if prefix + k in batch}
    if "attention_mask" in inputs:
        inputs["attention_mask"] = attention_input(encoder, inputs["attention_mask"])
    return encoder(**inputs).last_hidden_state


def attention_input(model: nn.Module, mask: torch.Tensor, causal: bool = False) -> torch.Tensor:
    """The padding mask as the model's attention reads it. For SDPA, transformers first asks the device whether
    the batch has any padding at all (`padding_mask.all()`, a blocking read in every forward); given the 4-D mask
    it would build, it takes it as it is. Models that build their masks otherwise get the 2-D mask."""
    config = getattr(model, "config", None)
    module = sys.modules.get(type(model).__module__)
    builder = "create_causal_mask" if causal else "create_bidirectional_mask"
    if (getattr(config, "_attn_implementation", None) != "sdpa" or not hasattr(module, builder)
            or mask.dim() != 2):
        return mask
    rows, width = mask.shape
    keys = mask.bool()[:, None, None, :]
    if causal:
        keys = keys & torch.ones(width, width, dtype=torch.bool, device=mask.device).tril()
    return keys.expand(rows, 1, width, width)


def pool(hidden: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    if how == "cls":
        return hidden[:, 0]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


class Projection(nn.Sequential):
    """dropout -> [dense -> activation -> dropout] -> linear: the layout of most architectures' own heads."""

    def __init__(self, spec: HeadConfig, hidden: int, out: int, model_type: str) -> None:
        layers: list[nn.Module] = [nn.Dropout(spec.dropout)]
        width = hidden
        if hidden_layer_of(spec):
            width = spec.hidden_size or hidden
            layers += [nn.Linear(hidden, width), _ACTIVATIONS[activation_of(spec, model_type)](),
                       nn.Dropout(spec.dropout)]
        layers.append(nn.Linear(width, out))
        super().__init__(*layers)


class PooledHead(nn.Module):
    """One vector per input, `outputs` numbers from it; the kind's `loss` compares them with the labels (and may
    reshape them: regression's single output becomes one number per row)."""

    def __init__(self, spec: HeadConfig, hidden: int, outputs: int, model_type: str,
                 loss: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]) -> None:
        super().__init__()
        self.pooling, self.loss = pooling_of(spec), loss
        self.proj = Projection(spec, hidden, outputs, model_type)

    def logits(self, encoder: nn.Module, batch: dict) -> torch.Tensor:
        return self.proj(pool(encode(encoder, batch), batch["attention_mask"], self.pooling))

    def forward(self, encoder: nn.Module, batch: dict) -> HeadOutput:
        loss, logits = self.loss(self.logits(encoder, batch), batch["labels"])
        return HeadOutput(loss, logits)


class TokenHead(nn.Module):
    """A label per token; only each word's first sub-token carries a label (the rest are -100)."""

    def __init__(self, spec: HeadConfig, hidden: int, num_labels: int, model_type: str) -> None:
        super().__init__()
        self.proj = Projection(spec, hidden, num_labels, model_type)

    def logits(self, encoder: nn.Module, batch: dict) -> torch.Tensor:
        return self.proj(encode(encoder, batch))

    def forward(self, encoder: nn.Module, batch: dict) -> HeadOutput:
        logits = self.logits(encoder, batch)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), batch["labels"].flatten(), ignore_index=-100)
        return HeadOutput(loss, logits)


class SpanHead(nn.Module):
    """Start and end logits over the context tokens (extractive QA)."""

    def __init__(self, spec: HeadConfig, hidden: int, num_labels: int, model_type: str) -> None:
        super().__init__()
        self.proj = Projection(spec, hidden, 2, model_type)

    def logits(self, encoder: nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        start, end = self.proj(encode(encoder, batch)).float().unbind(-1)
        return start, end

    def forward(self, encoder: nn.Module, batch: dict) -> HeadOutput:
        start, end = self.logits(encoder, batch)
        loss = (F.cross_entropy(start, batch["start_positions"]) + F.cross_entropy(end, batch["end_positions"])) / 2
        return HeadOutput(loss, (start, end))


class SimilarityHead(nn.Module):
    """Embed each text on its own, then regress their cosine onto a score in [-1, 1] (MSE)."""

    def __init__(self, spec: HeadConfig, hidden: int, num_labels: int, model_type: str) -> None:
        super().__init__()
        self.pooling = pooling_of(spec)
        self.dense = nn.Linear(hidden, spec.hidden_size or hidden) if hidden_layer_of(spec) else nn.Identity()

    def embed(self, encoder: nn.Module, batch: dict, prefix: str = "") -> torch.Tensor:
        states = encode(encoder, batch, prefix)
        return self.dense(pool(states, batch[prefix + "attention_mask"], self.pooling))

    def forward(self, encoder: nn.Module, batch: dict) -> HeadOutput:
        cosine = F.cosine_similarity(self.embed(encoder, batch).float(), self.embed(encoder, batch, "b_").float())
        return HeadOutput(F.mse_loss(cosine, batch["labels"].float()), cosine)


class MaskedLMHead(nn.Module):
    """The architecture's own masked-LM head, its decoder tied to the shared input embeddings.

    The loss reads only the masked positions (about 15%), so only they go through the head: every position's
    vocabulary-sized logits would add a fifth to a BERT-base training step (several times a small encoder's
    whole step), nearly all of it for positions that have no label."""

    def __init__(self, lm_head: nn.Module, vocab_size: int) -> None:
        super().__init__()
        self.lm_head = lm_head
        self.vocab_size = vocab_size

    def logits(self, encoder: nn.Module, batch: dict) -> torch.Tensor:
        """The logits of every position (trying the head on typed text)."""
        return self.lm_head(encode(encoder, batch))

    def forward(self, encoder: nn.Module, batch: dict) -> MaskedLMOutput:
        hidden = encode(encoder, batch)
        labels = batch["labels"].flatten()
        where = batch.get("masked_positions")
        if where is None:       # found on the device: a wait for it, as how many there are decides the shapes
            where = (labels != -100).nonzero().squeeze(1)
        losses = self._token_losses(hidden.flatten(0, 1).index_select(0, where), labels.index_select(0, where))
        # The mean over the masked tokens (nan when a batch has none, as F.cross_entropy gives).
        count = torch.tensor(len(where), device=losses.device)
        return MaskedLMOutput(losses.mean(), (losses.detach().sum(), count), self.lm_head, hidden)

    def _token_losses(self, hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The loss of each of the masked positions' states (n, hidden) against its label."""
        if torch.is_grad_enabled():
            return self._chunk_losses(hidden, labels)
        # Without gradients no logit outlives its chunk: evaluation's memory then stays the same whatever the
        # batch size and the vocabulary.
        rows = max(1, EVAL_LOGITS // self.vocab_size)
        return torch.cat([self._chunk_losses(h, y) for h, y in zip(hidden.split(rows), labels.split(rows))])

    def _chunk_losses(self, hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # Every layer of a masked-LM head acts on each position alone, so some positions can go through it by
        # themselves; they go as one row of a batch, the shape the head expects.
        logits = self.lm_head(hidden.unsqueeze(0))[0].float()
        return F.cross_entropy(logits, labels, reduction="none")


def split_mlm_model(mlm_model: nn.Module) -> nn.Module:
    """The LM head of a *ForMaskedLM model: its one child that is not the base model."""
    children = [m for name, m in mlm_model.named_children() if name != mlm_model.base_model_prefix]
    if len(children) != 1:
        raise ValueError(f"{type(mlm_model).__name__}: cannot tell its LM head apart from the encoder")
    return children[0]


def masked_lm_head(encoder: nn.Module, pretrained_lm: nn.Module | None) -> nn.Module:
    """The architecture's own masked-LM head, continued from `pretrained_lm` (a *ForMaskedLM model) when given."""
    from transformers import AutoModelForMaskedLM
    config = encoder.config
    try:
        mlm = pretrained_lm if pretrained_lm is not None else AutoModelForMaskedLM.from_config(config)
    except ValueError as e:
        raise UserError(f"{config.model_type} models have no masked-LM head in transformers, so a masked_lm "
                        f"task cannot use this backbone ({e})") from e
    lm_head = split_mlm_model(mlm)
    decoder = mlm.get_output_embeddings()
    if decoder is not None and getattr(config, "tie_word_embeddings", True):
        decoder.weight = encoder.get_input_embeddings().weight
    return MaskedLMHead(lm_head, config.vocab_size)


def pad(seqs: list[list[int]], width: int, value: int) -> torch.Tensor:
    out = torch.full((len(seqs), width), value, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = torch.as_tensor(s, dtype=torch.long)
    return out


class AttentionPooler(nn.Module):
    """Global attention pooling: for token vectors v_i (padding masked out), l_i = L v_i, g = G (sum_i v_i),
    a_i = cos(l_i, g), vector = sum_i a_i v_i. L and G map into `rank` dimensions (the hidden size when 0)."""

    def __init__(self, hidden: int, rank: int = 0) -> None:
        super().__init__()
        width = rank or hidden
        self.local = nn.Linear(hidden, width, bias=False)
        self.overall = nn.Linear(hidden, width, bias=False)

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        keep = mask.unsqueeze(-1).to(states.dtype)
        states = states * keep                      # padding adds nothing to the sum nor to the vector
        overall = self.overall(states.sum(1))
        weights = F.cosine_similarity(self.local(states), overall.unsqueeze(1), dim=-1) * mask.to(states.dtype)
        return (weights.unsqueeze(-1) * states).sum(1)


def sentence_vector(model: nn.Module, backbone: str, batch: dict, prefix: str) -> torch.Tensor:
    """One vector per row of the input under `prefix`, pooled as its backbone pools."""
    states = encode(model.backbones[backbone], batch, prefix)
    mask = batch[prefix + "attention_mask"]
    if backbone in model.poolers:
        return model.poolers[backbone](states, mask)
    return pool(states, mask, model.backbone_pooling[backbone])


def combine(model: nn.Module, terms: list[tuple[int, str]], inputs: dict[str, tuple[str, str]], batch: dict,
            separator: str = "__") -> torch.Tensor:
    """The sum (and difference) of the named inputs' sentence vectors."""
    vectors = {name: sentence_vector(model, inputs[name][0], batch, name + separator) for _, name in terms}
    total = None
    for sign, name in terms:
        total = sign * vectors[name] if total is None else total + sign * vectors[name]
    return total


class VectorHead(nn.Module):
    """Two combinations of sentence vectors: their cosine regressed onto the label (MSE), or their difference
    pulled to zero (MSE, no label). No weights of its own: the poolers belong to the backbones."""

    def __init__(self, left: list, right: list, inputs: dict, compare: str) -> None:
        super().__init__()
        self.left, self.right, self.inputs, self.compare = left, right, inputs, compare

    def forward(self, model: nn.Module, batch: dict) -> HeadOutput:
        left = combine(model, self.left, self.inputs, batch).float()
        right = combine(model, self.right, self.inputs, batch).float()
        if self.compare == "cosine":
            cosine = F.cosine_similarity(left, right)
            return HeadOutput(F.mse_loss(cosine, batch["labels"].float()), cosine)
        return HeadOutput(F.mse_loss(left - right, torch.zeros_like(left)), (left.detach(), right.detach()))


class DecodeHead(nn.Module):
    """A decoder backbone writes the target, its first input embedding the combined sentence vector (teacher
    forcing: the target's own tokens follow it; token cross-entropy with padding ignored)."""

    def __init__(self, condition: list, inputs: dict, decoder: str) -> None:
        super().__init__()
        self.condition, self.inputs, self.decoder = condition, inputs, decoder

    def forward(self, model: nn.Module, batch: dict) -> HeadOutput:
        decoder = model.backbones[self.decoder]
        vector = combine(model, self.condition, self.inputs, batch)
        ids, mask = batch["target__input_ids"], batch["target__attention_mask"]
        embedded = torch.cat([vector.unsqueeze(1).to(decoder.dtype), decoder.get_input_embeddings()(ids)], 1)
        mask = torch.cat([torch.ones_like(mask[:, :1]), mask], 1)
        labels = torch.cat([torch.full_like(ids[:, :1], -100), batch["labels"]], 1)
        logits = decoder(inputs_embeds=embedded, attention_mask=attention_input(decoder, mask, causal=True)).logits
        # Position t predicts token t + 1: the vector predicts the first target token.
        predicted, wanted = logits[:, :-1], labels[:, 1:]
        loss = F.cross_entropy(predicted.flatten(0, 1).float(), wanted.flatten(), ignore_index=-100)
        counted = wanted != -100
        right = ((predicted.argmax(-1) == wanted) & counted).sum()
        return HeadOutput(loss, (right.detach(), counted.sum()))


@torch.no_grad()
def generate(decoder: nn.Module, vector: torch.Tensor, stop_ids: set[int], max_new: int) -> list[list[int]]:
    """Greedy decoding from condition vectors (one row each), as a decode head was trained: the vector is the
    first input embedding and each chosen token's embedding follows. Stops at a token of `stop_ids`."""
    embed = decoder.get_input_embeddings()
    inputs = vector.unsqueeze(1).to(decoder.dtype)
    out: list[list[int]] = [[] for _ in range(len(vector))]
    done = [False] * len(vector)
    for _ in range(max_new):
        chosen = decoder(inputs_embeds=inputs).logits[:, -1].argmax(-1)
        for i, token in enumerate(chosen.tolist()):
            if not done[i]:
                out[i].append(token)
                done[i] = token in stop_ids and len(out[i]) > 1     # the first token may be the start marker
        if all(done):
            break
        inputs = torch.cat([inputs, embed(chosen).unsqueeze(1)], 1)
    return out
