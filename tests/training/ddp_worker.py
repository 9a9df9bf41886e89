"""One process of the 2-process DDP test (run by test_ddp.py with torch.distributed env vars)."""

import sys

from lora_diffusion.config import PretrainConfig, TrainConfig
from lora_diffusion.pretrain import run_pretrain

base, corpus, out, batch, micro = sys.argv[1:6]
cfg = PretrainConfig(base=base, corpus=corpus, output_dir=out, seq_len=32, max_train_chunks=32, eval_chunks=4,
                     train=TrainConfig(max_steps=4, lr=1e-3, warmup_steps=1, batch_size=int(batch),
                                       micro_batch_size=int(micro), save_every=0, log_every=1, seed=0))
run_pretrain(cfg, progress=False)
