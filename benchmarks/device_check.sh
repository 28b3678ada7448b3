#!/usr/bin/env bash
# The CUDA checks herd cannot run on a CPU machine, as one prepared script for a lent GPU box (never part of CI;
# about 5-7 minutes on one H200):
#   1. benchmarks/train_throughput.py at GPT-2-124M shape (12 x 768, vocab 50257) and Flan-T5-base shape (12+12 x 768,
#      gated-GELU, vocab 32128): herd vs the padded HF Trainer, the grouped HF Trainer and TRL (decoder), with
#      non-padding tokens/s, ratios, padding, distinct shapes, host overhead per micro-step, MFU, and a torch
#      profiler top-10 (by self device time) of one herd step and one padded-Trainer step per family.
#   2. herd train, decoder + encoder-decoder students, precision / gradient checkpointing on "auto".
#   3. the decoder under `accelerate launch` with configs/accelerate/fsdp.yaml (one process; GPU only).
# Usage on the GPU machine, from the repo root: OUT=/some/dir bash benchmarks/device_check.sh
# HERD_DEVICE_TINY=1 shrinks every shape so the script runs end to end on a CPU in a few minutes (a dry run).
set -uo pipefail
OUT=${OUT:-/tmp/herd-device}
mkdir -p "$OUT"
PY=${PY:-python3}
export PYTHONPATH="src:.${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if [ "${HERD_DEVICE_TINY:-0}" = "1" ]; then
    SHAPE="--layers 1 --dim 64 --steps 2 --rows 200 --micro-batch 4 --accumulation 2 --max-length 128"
    ROWS=200 DIM=64
    export OMP_NUM_THREADS=1  # a CPU dry run on a shared machine: spinning OpenMP threads slow it many times over
else
    SHAPE="--layers 12 --dim 768 --vocab 50257 --t5-vocab 32128 --steps 30 --rows 6000 --micro-batch 16 --accumulation 8"
    ROWS=4000 DIM=512
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | tee "$OUT/gpu.txt"
$PY -c "import torch, transformers, accelerate; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
'transformers', transformers.__version__, 'accelerate', accelerate.__version__)" | tee -a "$OUT/gpu.txt"
$PY -c "import trl; print('trl', trl.__version__)" 2>&1 | tail -1 | tee -a "$OUT/gpu.txt"

echo "== 1. train throughput (both families, profiler tables in $OUT/profile)"
timeout 420 $PY benchmarks/train_throughput.py $SHAPE --profile "$OUT/profile" --json 2>&1 \
    | grep -v "it/s\]\|FutureWarning\|warnings.warn" | tee "$OUT/train_throughput.txt"
tail -1 "$OUT/train_throughput.txt" > "$OUT/train_throughput.json"

echo "== 2. herd train, both families, precision auto"
work=$(mktemp -d)
$PY - "$work" "$ROWS" "$DIM" <<'PYEOF'
import json, random, sys
from pathlib import Path
from tests.tiny import WORDS, tiny_tokenizer
work, rows, dim = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
tiny_tokenizer(work / "tok")
rng = random.Random(0)
with (work / "pairs.jsonl").open("w") as fh:
    for i in range(rows):
        ins = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 40)))
        out = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 120)))
        fh.write(json.dumps({"id": str(i), "instruction": ins, "response": out}) + "\n")
(work / "run.toml").write_text(f"""
[run]
name = "gpu"
dir = "{work}/runs"
[train]
data = "{work}/pairs.jsonl"
epochs = 1
batch_size = 64
max_length = 256
save_steps = 1000
[[train.students]]
name = "dec"
base = "gpt2"
init = "scratch"
tokenizer = "{work}/tok"
config_overrides = {{n_layer = 6, n_embd = {dim}, n_head = 8}}
lr = 0.0003
[[train.students]]
name = "t5"
base = "t5"
init = "scratch"
tokenizer = "{work}/tok"
config_overrides = {{d_model = {dim}, d_kv = 64, d_ff = 1024, num_layers = 4, num_decoder_layers = 4, num_heads = 8}}
""")
PYEOF
/usr/bin/time -v $PY -m herd train -c "$work/run.toml" -q 2>&1 | grep -v "it/s\]" | tail -25 | tee "$OUT/train_both.txt"
$PY - "$work" <<'PYEOF' | tee "$OUT/train_manifests.txt"
import json, sys
from pathlib import Path
for m in sorted(Path(sys.argv[1]).glob("runs/gpu/train/*/herd.json")):
    meta = json.loads(m.read_text())
    print(m.parent.name, {k: meta.get(k) for k in ("family", "precision", "gradient_checkpointing", "packing")},
          meta.get("batching"), meta.get("stats"))
import herd
pipe = herd.pipeline(str(Path(sys.argv[1]) / "runs/gpu/train/dec"))
print("pipeline:", pipe("write a poem", max_new_tokens=8))
PYEOF

echo "== 3. accelerate launch with the FSDP config (1 process)"
if $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    sed -e 's/name = "gpu"/name = "fsdp"/' "$work/run.toml" | $PY -c "import sys; t=sys.stdin.read(); print(t[:t.index('[[train.students]]', t.index('[[train.students]]')+5)])" > "$work/fsdp.toml"
    $PY -m accelerate.commands.launch --config_file configs/accelerate/fsdp.yaml --num_processes 1 -m herd train \
        -c "$work/fsdp.toml" -q 2>&1 | grep -v "it/s\]" | tail -15 | tee "$OUT/fsdp.txt"
    ls "$work/runs/fsdp/train/dec" 2>&1 | tee -a "$OUT/fsdp.txt"
else
    echo "skipped: no CUDA device" | tee "$OUT/fsdp.txt"
fi
rm -rf "$work"
echo "== done: $OUT"
