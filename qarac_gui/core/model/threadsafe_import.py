"""transformers 5 resolves its top-level names lazily, and two threads that resolve them for the first time at once
get ImportErrors ("cannot import name 'AutoConfig' from 'transformers'"). Every thread that is about to use
transformers calls import_transformers() first: the names are resolved once, under a lock."""

from __future__ import annotations

import threading

NAMES = ("AutoConfig", "AutoModel", "AutoTokenizer", "AutoModelForMaskedLM", "AutoModelForSequenceClassification",
         "AutoModelForQuestionAnswering", "AutoModelForTokenClassification", "MODEL_MAPPING",
         "PreTrainedTokenizerFast")
_lock = threading.Lock()
_done = False


def import_transformers() -> None:
    global _done
    if _done:
        return
    with _lock:
        if _done:
            return
        import transformers
        import transformers.utils.logging  # noqa: F401
        for name in NAMES:
            getattr(transformers, name)
        _done = True
