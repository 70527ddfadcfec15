#!/usr/bin/env bash
# Everything that needs a CUDA GPU, in one pass sized for a 10-15 minute GPU budget (not yet run on a GPU): the
# GPU-marked tests (the engine on CUDA, bf16, no host sync in steady state under
# torch.cuda.set_sync_debug_mode("error")), then benches/gpu.py, eager first (its figures matter most), compiled
# after. Each part's output goes to a file of its own under $OUT (default gpu-check/), so a part cut short by a time
# limit leaves the others.
#
#     bash benches/gpu_check.sh                 # from the repository root, its virtual environment active
#     OUT=/somewhere bash benches/gpu_check.sh
set -u
out="${OUT:-gpu-check}"
mkdir -p "$out"
python - <<'EOF' > "$out/device.txt" 2>&1
import torch
print("torch", torch.__version__, "CUDA", torch.version.cuda, "available", torch.cuda.is_available())
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    print(i, p.name, f"{p.total_memory / 2**30:.0f} GiB", f"capability {p.major}.{p.minor}")
EOF
nvidia-smi >> "$out/device.txt" 2>&1
cat "$out/device.txt"
python -m pytest -m gpu -q -p no:cacheprovider tests/core/test_gpu.py > "$out/gpu-tests.txt" 2>&1
tail -3 "$out/gpu-tests.txt"
# one run of each setting: the budget does not hold three, and the timed steps of one run already span 25 steps
python benches/gpu.py --modes eager --rounds 1 > "$out/gpu-bench-eager.txt" 2>&1
tail -20 "$out/gpu-bench-eager.txt"
python benches/gpu.py --modes compiled --rounds 1 > "$out/gpu-bench-compiled.txt" 2>&1
tail -20 "$out/gpu-bench-compiled.txt"
