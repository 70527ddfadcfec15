"""Each backbone of the tasks over named inputs as a folder that loads without this app: an encoder for
sentence-transformers or plain transformers (its pooling in `pooling.py`), a decoder as its *ForCausalLM class
with the prefix convention in its model card."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import qarac_gui
from qarac_gui.core.kinds import kind_of
from qarac_gui.core.kinds.inputs import task_inputs
from qarac_gui.core.project.config import Project, TaskConfig, dumps_project
from qarac_gui.core.results.export import (
    SENTENCE_TAGS,
    card_header,
    described_base,
    plain_backbone,
    share_modes,
    write_card,
)

FOLDER = "backbones"            # export/backbones/<name>/, beside the task folders and full/

# Written into every encoder folder: the attention pooling as a sentence-transformers module, and a loader that
# needs only torch, transformers and safetensors. It must pool exactly as layers.AttentionPooler does.
POOLING_PY = '''"""Sentence vectors from the encoder in this folder, pooled as it was trained to pool them.

With sentence-transformers (modules.json names this file's AttentionPooling when the encoder pools by attention, so
loading runs this file: pass trust_remote_code=True):

    from sentence_transformers import SentenceTransformer
    vectors = SentenceTransformer(FOLDER, trust_remote_code=True).encode(texts, convert_to_tensor=True)

With plain transformers and torch, through this file:

    import importlib.util
    spec = importlib.util.spec_from_file_location("pooling", f"{FOLDER}/pooling.py")
    pooling = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pooling)
    vectors = pooling.load(FOLDER).encode(texts)
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

HERE = Path(__file__).resolve().parent


class AttentionPooling(nn.Module):
    """Global attention pooling: for the token vectors v_i (padding left out), l_i = L v_i, g = G (sum_i v_i),
    a_i = cos(l_i, g), vector = sum_i a_i v_i. As a sentence-transformers module it reads token_embeddings and
    attention_mask and writes sentence_embedding."""

    def __init__(self, word_embedding_dimension: int, rank: int = 0) -> None:
        super().__init__()
        self.word_embedding_dimension, self.rank = word_embedding_dimension, rank
        width = rank or word_embedding_dimension
        self.local = nn.Linear(word_embedding_dimension, width, bias=False)       # L
        self.overall = nn.Linear(word_embedding_dimension, width, bias=False)     # G

    def pool(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        keep = mask.unsqueeze(-1).to(states.dtype)
        states = states * keep
        overall = self.overall(states.sum(1))
        weights = F.cosine_similarity(self.local(states), overall.unsqueeze(1), dim=-1) * mask.to(states.dtype)
        return (weights.unsqueeze(-1) * states).sum(1)

    def forward(self, features: dict) -> dict:
        features["sentence_embedding"] = self.pool(features["token_embeddings"], features["attention_mask"])
        return features

    def get_sentence_embedding_dimension(self) -> int:
        return self.word_embedding_dimension

    def save(self, path: str, *args, **kwargs) -> None:
        from safetensors.torch import save_file
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        config = {"pooling_mode": "attention", "word_embedding_dimension": self.word_embedding_dimension,
                  "rank": self.rank}
        (folder / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
        save_file({k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()},
                  str(folder / "model.safetensors"))

    @staticmethod
    def load(path: str) -> AttentionPooling:
        from safetensors.torch import load_file
        folder = Path(path)
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        module = AttentionPooling(config["word_embedding_dimension"], config.get("rank", 0))
        module.load_state_dict(load_file(str(folder / "model.safetensors")))
        return module.eval()


class SentenceEncoder:
    """The folder's encoder, tokenizer and pooling (cls, mean or attention) with plain transformers."""

    def __init__(self, folder: str | Path = HERE, device: str = "cpu") -> None:
        from transformers import AutoModel, AutoTokenizer
        folder = Path(folder)
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModel.from_pretrained(folder).to(device).eval()
        settings = json.loads((folder / "sentence_bert_config.json").read_text(encoding="utf-8"))
        self.max_length = settings["max_seq_length"]
        pooling = json.loads((folder / "1_Pooling" / "config.json").read_text(encoding="utf-8"))
        if pooling.get("pooling_mode") == "attention":
            self.pooling = AttentionPooling.load(folder / "1_Pooling").to(device)
        else:
            self.pooling = "cls" if pooling["pooling_mode_cls_token"] else "mean"

    @torch.no_grad()
    def encode(self, texts: list[str], batch_size: int = 32) -> torch.Tensor:
        """One vector per text (a tensor of shape [len(texts), width])."""
        out = []
        for i in range(0, len(texts), batch_size):
            batch = self.tokenizer(texts[i:i + batch_size], padding=True, truncation=True,
                                   max_length=self.max_length, return_tensors="pt").to(self.model.device)
            states = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"]
            if isinstance(self.pooling, AttentionPooling):
                out.append(self.pooling.pool(states, mask))
            elif self.pooling == "cls":
                out.append(states[:, 0])
            else:
                weights = mask.unsqueeze(-1).to(states.dtype)
                out.append((states * weights).sum(1) / weights.sum(1).clamp(min=1e-9))
        return torch.cat(out)


def load(folder: str | Path = HERE, device: str = "cpu") -> SentenceEncoder:
    """The encoder of `folder` (by default the one holding this file), ready to encode texts."""
    return SentenceEncoder(folder, device)
'''


def exported_backbones(tasks: list[TaskConfig]) -> dict[str, list[TaskConfig]]:
    """The backbones that the tasks exported as backbones read, each with the tasks that read it."""
    out: dict[str, list[TaskConfig]] = {}
    for task in tasks:
        kind = kind_of(task.head)
        if kind.export_as == FOLDER:
            for name in kind.backbones(task):
                out.setdefault(name, []).append(task)
    return out


def export_backbones(folder: Path, project: Project, tasks: list[TaskConfig], model: Any,
                     tokenizers: dict[str, Any], sources: dict[str, str], metrics: dict[str, dict]) -> dict[str, Path]:
    """export/backbones/<name>/ for each backbone the tasks over named inputs read; {} when none does. The cards name
    each base model as the project gives it, not by `sources` (folders of this machine)."""
    readers = exported_backbones(tasks)
    written = {}
    for name, users in readers.items():
        out = folder / name
        out.mkdir(parents=True)
        kinds = list(dict.fromkeys(t.head.kind for t in users))
        if project.backbones[name].role == "decoder":
            card = _write_decoder(out, project, name, model, tokenizers, users)
            header = card_header(project, name, users, library="transformers", pipeline="text-generation",
                                 tags=kinds)
        else:
            card = _write_encoder(out, project, name, model, users)
            header = card_header(project, name, users, library="sentence-transformers",
                                 pipeline="sentence-similarity", tags=SENTENCE_TAGS + kinds)
        tokenizers[name].save_pretrained(out)
        write_card(out / "README.md", header + card + _trained_by(project, name, users, metrics))
        (out / "project.toml").write_text(dumps_project(project), encoding="utf-8")
        share_modes(out)
        written[name] = out
    return written


def _write_encoder(out: Path, project: Project, name: str, model: Any, users: list[TaskConfig]) -> str:
    """The encoder, a sentence-transformers layout, pooling.py; returns the first part of the model card."""
    from safetensors.torch import save_file
    # With one LoRA adapter per task, the first reader's is the one merged in (a folder holds one encoder).
    encoder = plain_backbone(project, model, name, users[0].name)
    encoder.save_pretrained(out)
    hidden = encoder.config.hidden_size
    pooling = project.backbones[name].pooling
    (out / "1_Pooling").mkdir()
    if name in model.poolers:
        pooler = model.poolers[name]
        config = {"pooling_mode": "attention", "word_embedding_dimension": hidden,
                  "rank": project.backbones[name].pooling_rank}
        save_file({k: v.detach().contiguous().cpu() for k, v in pooler.state_dict().items()},
                  str(out / "1_Pooling" / "model.safetensors"))
        module_type = "pooling.AttentionPooling"
    else:
        config = {"word_embedding_dimension": hidden, "pooling_mode_cls_token": pooling == "cls",
                  "pooling_mode_mean_tokens": pooling == "mean", "pooling_mode_max_tokens": False,
                  "pooling_mode_mean_sqrt_len_tokens": False}
        module_type = "sentence_transformers.models.Pooling"
    (out / "1_Pooling" / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": module_type}]
    (out / "modules.json").write_text(json.dumps(modules, indent=2), encoding="utf-8")
    longest = max(t.max_length for t in users)
    (out / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": longest, "do_lower_case": False},
                                                              indent=2), encoding="utf-8")
    (out / "pooling.py").write_text(POOLING_PY, encoding="utf-8")
    return _encoder_card(project, name, encoder, pooling, longest)


def _encoder_card(project: Project, name: str, encoder: Any, pooling: str, longest: int) -> str:
    attention = pooling == "attention"
    how = {"cls": "the first token's vector", "mean": "the mean of the token vectors (padding left out)",
           "attention": "learnt global attention pooling: for the token vectors v_i (padding left out), "
                        "l_i = L v_i, g = G (sum_i v_i), a_i = cos(l_i, g), vector = sum_i a_i v_i; L and G are in "
                        "`1_Pooling/model.safetensors`"}[pooling]
    trust = ", trust_remote_code=True" if attention else ""
    why = ("It has no attention pooling of its own, so `modules.json` names the one in `pooling.py`: loading "
           "the folder runs that file, hence `trust_remote_code=True`." if attention else
           "`1_Pooling/config.json` is its own pooling.")
    return f"""# {project.name}: backbone `{name}`

A `{type(encoder).__name__}` encoder, one backbone of a multi-task model trained with qarac_gui
{qarac_gui.__version__}. Its sentence vector of a text is {how}. Texts are cut to {longest} tokens.

## Sentence vectors

With sentence-transformers. {why}

```python
from sentence_transformers import SentenceTransformer

folder = "{FOLDER}/{name}"
model = SentenceTransformer(folder{trust})
vectors = model.encode(["a first sentence", "a second one"], convert_to_tensor=True)
```

With plain transformers and torch, through the loader in this folder (`pooling.py`, which pools the same way):

```python
import importlib.util

folder = "{FOLDER}/{name}"
spec = importlib.util.spec_from_file_location("pooling", f"{{folder}}/pooling.py")
pooling = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pooling)
vectors = pooling.load(folder).encode(["a first sentence", "a second one"])
```

The paths are relative to the run's `export/` folder (or wherever its `{FOLDER}` folder was copied).
"""


def _write_decoder(out: Path, project: Project, name: str, model: Any, tokenizers: dict[str, Any],
                   users: list[TaskConfig]) -> str:
    decoder = plain_backbone(project, model, name, users[0].name)
    decoder.save_pretrained(out)
    return _decoder_card(project, name, decoder, tokenizers[name], users)


def _decoder_card(project: Project, name: str, decoder: Any, tokenizer: Any, users: list[TaskConfig]) -> str:
    conditions = [t for t in users if t.head.decoder == name]
    longest = max((t.max_length - 1 for t in conditions), default=32)
    start = tokenizer.cls_token or tokenizer.bos_token or "the first token"
    stops = ", ".join(f"`{t}`" for t in dict.fromkeys(filter(None, (tokenizer.sep_token, tokenizer.eos_token))))
    rows = []
    for task in conditions:
        inputs = task_inputs(task)
        reads = ", ".join(f"`{n}` = `{inputs[n][0]}` of column `{inputs[n][1]}`"
                          for n in kind_of(task.head).used_inputs(task))
        rows.append(f"| `{task.name}` | `{task.head.condition}` | {reads} | `{task.data.label}` | "
                    f"{task.max_length - 1} |")
    example = conditions[0] if conditions else None
    usage = ""
    if example is not None:
        inputs = task_inputs(example)
        terms = kind_of(example.head).used_inputs(example)
        lines = ["encoder = {"]
        for e in dict.fromkeys(inputs[n][0] for n in terms):
            trust = ", trust_remote_code=True" if project.backbones[e].pooling == "attention" else ""
            lines.append(f'    "{e}": SentenceTransformer("{FOLDER}/{e}"{trust}),')
        lines.append("}")
        for n in terms:
            lines.append(f'{n} = encoder["{inputs[n][0]}"].encode(["a text of column {inputs[n][1]}"], '
                         "convert_to_tensor=True)[0]")
        total = example.head.condition
        usage = (f"\nThe condition of `{example.name}`, from the encoder folders beside this one (with "
                 "sentence-transformers here; their `pooling.py` gives the same vectors with plain transformers):"
                 "\n\n```python\nfrom sentence_transformers import SentenceTransformer\n\n" + "\n".join(lines)
                 + f"\nprint(generate({total}))\n```\n")
    table = "\n".join(["| task | condition | inputs | writes column | at most (tokens) |", "|---|---|---|---|---|",
                       *rows])
    return f"""# {project.name}: backbone `{name}` (decoder)

A `{type(decoder).__name__}` decoder, one backbone of a multi-task model trained with qarac_gui
{qarac_gui.__version__}. It writes a text from a **condition vector**: a sum (or difference) of sentence vectors
made by the encoders of the same model, each exported beside this folder.

{table}

## The prefix convention

The condition vector is the decoder's **first input embedding**, in place of a token:
`inputs_embeds = [vector, embed(t_1), embed(t_2), ...]`. In training the target text's tokens followed it (teacher
forcing): position 0, the vector, predicts t_1 (the tokenizer's start token, {start}), and each position predicts
the next token. To write a text, decode greedily: feed the vector alone, take the most likely next token, append
its input embedding, and repeat until a stop token ({stops}) comes after the first token, or after the number of
tokens in the table. No attention mask or position shift is needed: the vector takes position 0.

## Generating with plain transformers

```python
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

folder = "{FOLDER}/{name}"
decoder = AutoModelForCausalLM.from_pretrained(folder).eval()
tokenizer = AutoTokenizer.from_pretrained(folder)
STOP = {{tokenizer.sep_token_id, tokenizer.eos_token_id}} - {{None}}


@torch.no_grad()
def generate(vector, max_new_tokens={longest}):
    \"\"\"Greedy text from one condition vector (a tensor of the decoder's width).\"\"\"
    inputs = vector.reshape(1, 1, -1).to(decoder.dtype)
    tokens = []
    for _ in range(max_new_tokens):
        token = int(decoder(inputs_embeds=inputs).logits[0, -1].argmax())
        tokens.append(token)
        if token in STOP and len(tokens) > 1:
            break
        inputs = torch.cat([inputs, decoder.get_input_embeddings()(torch.tensor([[token]]))], 1)
    return tokenizer.decode(tokens, skip_special_tokens=True)
```
{usage}
The paths are relative to the run's `export/` folder (or wherever its `{FOLDER}` folder was copied).
"""


def _trained_by(project: Project, name: str, users: list[TaskConfig], metrics: dict[str, dict]) -> str:
    o = project.optim
    lines = ["", "## Training", "", f"Fine-tuned from {described_base(project, name)} together with the project's "
             "other backbones "
             f"({', '.join(f'`{b}`' for b in project.backbones)}); the tasks that read this one:", ""]
    for task in users:
        scores = metrics.get(task.name, {})
        shown = ", ".join(f"{k} {v:.4f}" for k, v in sorted(scores.items())) or "no validation data"
        lines.append(f"- `{task.name}` ({task.head.kind}): {shown}")
    lines += ["", f"Optimiser {'NAdam' if o.optimizer == 'nadam' else 'AdamW'}, lr {o.lr:g}, scheduler "
              f"{o.scheduler}; mixing {project.train.mixing}. The project file that produced it is `project.toml` "
              "in this folder.", ""]
    return "\n".join(lines)
