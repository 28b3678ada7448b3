#!/usr/bin/env bash
# The CUDA checks herd cannot run on a CPU machine, as one script for a lent GPU box (never part of CI):
#   1. benchmarks/train_throughput.py at GPT-2-small shape: herd train (bf16, no padding) vs a padded HF Trainer.
#   2. herd train, decoder + encoder-decoder students, precision/gradient checkpointing on "auto" (bf16, on).
#   3. the same decoder under `accelerate launch` with configs/accelerate/fsdp.yaml (one process).
# Usage on the GPU machine, from the repo root: OUT=/some/dir bash benchmarks/device_check.sh
set -uo pipefail
OUT=${OUT:-/tmp/herd-device}
mkdir -p "$OUT"
PY=${PY:-python3}
export PYTHONPATH="src:.${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
LAYERS=${LAYERS:-12} DIM=${DIM:-768} STEPS=${STEPS:-30} ROWS=${ROWS:-4000}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | tee "$OUT/gpu.txt"
$PY -c "import torch, transformers, accelerate; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
'transformers', transformers.__version__, 'accelerate', accelerate.__version__)" | tee -a "$OUT/gpu.txt"

echo "== 1. train throughput"
$PY benchmarks/train_throughput.py --layers "$LAYERS" --dim "$DIM" --steps "$STEPS" --micro-batch 16 --accumulation 4 \
    --rows "$ROWS" 2>&1 | grep -v "it/s\]" | tee "$OUT/train_throughput.txt"

echo "== 2. herd train, both families, precision auto"
work=$(mktemp -d)
$PY - "$work" "$ROWS" <<'PYEOF'
import json, random, sys
from pathlib import Path
from tests.tiny import WORDS, tiny_tokenizer
work = Path(sys.argv[1])
tiny_tokenizer(work / "tok")
rng = random.Random(0)
with (work / "pairs.jsonl").open("w") as fh:
    for i in range(int(sys.argv[2])):
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
micro_batch_size = 16
max_length = 256
save_steps = 1000
[[train.students]]
name = "dec"
base = "gpt2"
init = "scratch"
tokenizer = "{work}/tok"
config_overrides = {{n_layer = 6, n_embd = {512 if int(sys.argv[2]) > 1000 else 64}, n_head = 8}}
lr = 0.0003
[[train.students]]
name = "t5"
base = "t5"
init = "scratch"
tokenizer = "{work}/tok"
config_overrides = {{d_model = {512 if int(sys.argv[2]) > 1000 else 64}, d_kv = 64, d_ff = 1024, num_layers = 4, num_decoder_layers = 4, num_heads = 8}}
""")
PYEOF
/usr/bin/time -v $PY -m herd train -c "$work/run.toml" -q 2>&1 | grep -v "it/s\]" | tail -25 | tee "$OUT/train_both.txt"
$PY - "$work" <<'PYEOF' | tee "$OUT/train_manifests.txt"
import json, sys
from pathlib import Path
for m in sorted(Path(sys.argv[1]).glob("runs/gpu/train/*/herd.json")):
    meta = json.loads(m.read_text())
    print(m.parent.name, {k: meta.get(k) for k in ("family", "precision", "gradient_checkpointing", "packing")},
          meta.get("stats"))
import herd
pipe = herd.pipeline(str(Path(sys.argv[1]) / "runs/gpu/train/dec"))
print("pipeline:", pipe("write a poem", max_new_tokens=8))
PYEOF

echo "== 3. accelerate launch with the FSDP config (1 process)"
sed -e 's/name = "gpu"/name = "fsdp"/' "$work/run.toml" | $PY -c "import sys; t=sys.stdin.read(); print(t[:t.index('[[train.students]]', t.index('[[train.students]]')+5)])" > "$work/fsdp.toml"
$PY -m accelerate.commands.launch --config_file configs/accelerate/fsdp.yaml --num_processes 1 -m herd train \
    -c "$work/fsdp.toml" -q 2>&1 | grep -v "it/s\]" | tail -15 | tee "$OUT/fsdp.txt"
ls "$work/runs/fsdp/train/dec" 2>&1 | tee -a "$OUT/fsdp.txt"
