"""How many tokens a row may have for a model: max_length against its position embeddings and its tokenizer's
declared limit, checked by the CLI's pre-flight and again by the run once the backbones are loaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Encoders whose position ids start after the padding id (RoBERTa's create_position_ids_from_input_ids): they
# take max_position_embeddings - pad_token_id - 1 tokens, 512 for roberta-base's 514 positions.
PADDING_OFFSET_TYPES = {
    "roberta", "roberta-prelayernorm", "xlm-roberta", "xlm-roberta-xl", "camembert", "longformer", "data2vec-text",
    "ibert", "mpnet", "luke", "xmod", "markuplm", "layoutlmv3", "lilt", "esm",
}
# Tokenizers without a known limit report int(1e30); anything this large says nothing about the model.
SANE_TOKENIZER_LIMIT = 10**7


def _get(config: Any, key: str, default: Any = None) -> Any:
    return config.get(key, default) if isinstance(config, dict) else getattr(config, key, default)


def position_limit(config: Any) -> tuple[int, str] | None:
    """(tokens a row may have, where that comes from) of a model config (a dict or a PretrainedConfig), or None
    when the model has no fixed table of absolute positions."""
    if _get(config, "position_biased_input", True) is False:     # DeBERTa: relative positions only
        return None
    for key in ("max_position_embeddings", "n_positions"):
        positions = _get(config, key)
        if isinstance(positions, int) and not isinstance(positions, bool) and positions > 0:
            break
    else:
        return None
    kind = _get(config, "model_type", "") or ""
    if kind in PADDING_OFFSET_TYPES:
        pad = _get(config, "pad_token_id")
        pad = pad if isinstance(pad, int) and pad >= 0 else 1
        return positions - pad - 1, (f"{key} {positions}, less {pad + 1} because {kind} numbers positions after "
                                     "its padding id")
    return positions, f"{key} {positions}"


def tokenizer_limit(tokenizer: Any) -> int | None:
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and not isinstance(limit, bool) and 0 < limit <= SANE_TOKENIZER_LIMIT:
        return limit
    return None


def max_length_problems(project: Any, configs: dict[str, Any], tokenizers: dict[str, Any]) -> list[str]:
    """Each task whose max_length its backbone cannot take (position embeddings, or the tokenizer's declared
    model_max_length). A backbone missing from `configs`/`tokenizers` is not checked on that account."""
    problems = []
    for task in project.tasks:
        name = task.main_backbone
        cfg = project.backbones.get(name)
        reasons = []
        found = position_limit(configs[name]) if configs.get(name) is not None else None
        if found:
            reasons.append(found)
        tok = tokenizer_limit(tokenizers.get(name))
        if tok:
            reasons.append((tok, f"its tokenizer's model_max_length {tok}"))
        if not reasons or cfg is None:
            continue
        limit, why = min(reasons, key=lambda r: r[0])
        if task.max_length > limit:
            problems.append(f"tasks.{task.name}.max_length: {task.max_length} is more than backbone {name!r} "
                            f"({cfg.model}) takes {limit} tokens ({why}); set tasks.{task.name}.max_length to "
                            f"{limit} or less")
    return problems


def check_max_lengths(project: Any, configs: dict[str, Any], tokenizers: dict[str, Any]) -> None:
    """The run's check, once the backbones are loaded and before any data is tokenised."""
    from qarac_gui.core.errors import UserError
    problems = max_length_problems(project, configs, tokenizers)
    if problems:
        raise UserError("; ".join(problems))


def config_dict(cfg: Any, root: Path) -> dict | None:
    """A backbone's config.json as a plain dict, read without any model code (None when it cannot be read here:
    the run then loads the model and checks again)."""
    try:
        from transformers import PretrainedConfig

        from qarac_gui.core.model.backbone import resolve_source
        source, _ = resolve_source(cfg.model, root)
        config, _ = PretrainedConfig.get_config_dict(source, revision=cfg.revision or None)
        return config
    except Exception:
        return None
