"""transformers resolves its names lazily and not thread-safely; import_transformers() makes first use safe."""

import subprocess
import sys

import pytest

SCRIPT = """
import threading
from qarac_gui.core.model.threadsafe_import import import_transformers
errors = []
def use(name):
    try:
        import_transformers()
        exec(f"from transformers import {name}")
    except Exception as e:
        errors.append(repr(e))
names = ["AutoConfig", "AutoTokenizer", "AutoModel", "AutoModelForMaskedLM", "AutoConfig"]
threads = [threading.Thread(target=use, args=(n,)) for n in names]
for t in threads: t.start()
for t in threads: t.join()
print(errors)
"""


@pytest.mark.slow
def test_threads_that_first_use_transformers_at_once_all_get_its_names():
    # Without import_transformers() this script fails with "cannot import name ..." in most threads.
    for _ in range(2):
        result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "[]"
