"""Tiny random encoders with locally trained tokenizers, saved as normal Hugging Face folders."""

from __future__ import annotations

import random
from pathlib import Path

WORDS = ("good great fine awful bad poor film food room staff service price movie hotel app screen "
         "the a is was very not really quite rather slow fast clean dirty loud quiet friendly rude "
         "paris london berlin rome alice bob carol dave city river tower museum who what where when "
         "opens closes at nine ten morning evening cat dog runs sleeps red blue green").split()


def corpus(n: int = 2000, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) for _ in range(n)]


def make_tokenizer(arch: str = "bert"):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast
    if arch == "roberta":
        special = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=special,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator(corpus(), trainer)
        from tokenizers import decoders
        tok.decoder = decoders.ByteLevel()
        tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), add_prefix_space=True,
                                                          trim_offsets=True)
        return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                       sep_token="</s>", cls_token="<s>", unk_token="<unk>",
                                       pad_token="<pad>", mask_token="<mask>")
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    from tokenizers import decoders, normalizers
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(corpus(), trainers.WordPieceTrainer(vocab_size=200, special_tokens=special))
    tok.decoder = decoders.WordPiece()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", sep_token="[SEP]",
                                   pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]")


def make_model_folder(folder: Path, arch: str = "bert", head: str | None = None, seed: int = 0) -> Path:
    """Save a ~30k-parameter model (optionally with a task head) and its tokenizer into `folder`."""
    import torch
    from transformers import (
        AutoModel,
        AutoModelForMaskedLM,
        AutoModelForSequenceClassification,
        BertConfig,
        RobertaConfig,
    )
    tokenizer = make_tokenizer(arch)
    common = dict(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=64, max_position_embeddings=130, pad_token_id=tokenizer.pad_token_id)
    config = RobertaConfig(**common, bos_token_id=0, eos_token_id=2) if arch == "roberta" else BertConfig(**common)
    torch.manual_seed(seed)
    cls = {None: AutoModel, "seqcls": AutoModelForSequenceClassification, "mlm": AutoModelForMaskedLM}[head]
    model = cls.from_config(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


NAMES, CITIES = ["alice", "bob", "carol", "dave"], ["paris", "london", "berlin", "rome"]


def _rows(kind: str, n: int, rng: random.Random) -> list[dict]:
    rows = []
    for _ in range(n):
        good = rng.random() < 0.5
        opinion = rng.choice(["good", "great", "fine"] if good else ["bad", "awful", "poor"])
        thing = rng.choice(["film", "food", "room", "staff", "app"])
        text = f"the {thing} was {'very ' * rng.randint(0, 2)}{opinion}"
        if kind == "classification":
            rows.append({"text": text, "label": "pos" if good else "neg"})
        elif kind == "multilabel":
            tags = [t for t in ("food", "room", "staff") if rng.random() < 0.5]
            rows.append({"text": " ".join(tags or ["the"]) + " " + text, "labels": ";".join(tags)})
        elif kind == "regression":
            rows.append({"text": text, "score": float(text.count("very")) + (1.0 if good else 0.0)})
        elif kind == "similarity":
            other = rng.choice(["good", "great", "bad", "awful"])
            same = (other in ("good", "great")) == good
            rows.append({"sentence1": text, "sentence2": f"the {thing} was {other}", "score": 0.9 if same else -0.6})
        elif kind == "masked_lm":
            rows.append({"text": text})
        elif kind == "token_classification":
            name, city = rng.choice(NAMES), rng.choice(CITIES)
            words = [name, "was", "in", city, "at", "nine"]
            rows.append({"tokens": words, "tags": ["B-PER", "O", "O", "B-LOC", "O", "O"]})
        elif kind == "span_qa":
            name, city = rng.choice(NAMES), rng.choice(CITIES)
            context = f"{name} lives in {city} near the river"
            start = context.index(city)
            rows.append({"question": f"where does {name} live", "context": context,
                         "answers": {"text": [city], "answer_start": [start]}})
    return rows


TASK_COLUMNS = {
    "classification": {"text": "text", "label": "label"},
    "multilabel": {"text": "text", "label": "labels"},
    "regression": {"text": "text", "label": "score"},
    "similarity": {"text": "sentence1", "text_pair": "sentence2", "label": "score"},
    "masked_lm": {"text": "text"},
    "token_classification": {"text": "tokens", "label": "tags"},
    "span_qa": {"text": "question", "text_pair": "context", "label": "answers"},
}


def write_task_data(folder: Path, kind: str, n: int = 48, seed: int = 0) -> Path:
    """A small file of rows for one head kind (JSONL for nested columns, CSV otherwise)."""
    import csv
    import json
    rows = _rows(kind, n, random.Random(seed))
    folder.mkdir(parents=True, exist_ok=True)
    if kind in ("token_classification", "span_qa"):
        path = folder / f"{kind}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    else:
        path = folder / f"{kind}.csv"
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return path


def project_dict(model: Path, data_dir: Path, kinds: list[str], **sections) -> dict:
    """A raw project (as parsed TOML) with one task per kind on a tiny model; `sections` merge in."""
    tasks = []
    for kind in kinds:
        path = write_task_data(data_dir, kind)
        head = {"kind": kind}
        tasks.append({"name": kind.replace("_", "-"), "batch_size": 8, "max_length": 32, "head": head,
                      "data": {"train": str(path), "validation_fraction": 0.25, **TASK_COLUMNS[kind]}})
    raw = {"version": 1, "name": "tiny", "backbones": {"encoder": {"model": str(model)}}, "tasks": tasks,
           "optim": {"lr": 1e-3, "warmup_steps": 2}, "train": {"max_steps": 6, "log_every": 1, "seed": 7},
           "eval": {"batch_size": 16}}
    for key, value in sections.items():
        raw.setdefault(key, {}).update(value)
    return raw


def make_code_model(folder: Path, marker: Path, base: Path) -> Path:
    """A copy of the model folder `base` whose config names Python files of its own (auto_map), as a Hub
    repository with custom code does. Importing them writes `marker`: the proof that its code ran."""
    import json
    import shutil
    shutil.copytree(base, folder)
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config["model_type"] = "marker-bert"        # unknown to transformers: only the folder's code can load it
    config["auto_map"] = {"AutoConfig": "configuration_marker.MarkerConfig",
                          "AutoModel": "modeling_marker.MarkerModel"}
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    (folder / "configuration_marker.py").write_text(
        "from pathlib import Path\n"
        f"Path({str(marker)!r}).write_text('the repository code ran')\n"
        "from transformers import BertConfig\n\n\n"
        "class MarkerConfig(BertConfig):\n    model_type = 'marker-bert'\n", encoding="utf-8")
    (folder / "modeling_marker.py").write_text(
        "from transformers import BertModel\n\nfrom .configuration_marker import MarkerConfig\n\n\n"
        "class MarkerModel(BertModel):\n    config_class = MarkerConfig\n", encoding="utf-8")
    return folder


def without_dropout(folder: Path) -> Path:
    """A model folder's config with its dropout set to 0, in place."""
    import json
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config |= {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return folder
