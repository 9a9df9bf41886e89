"""One process of the DeepSpeed test (tests/training/test_deepspeed.py): the runs of the FSDP
worker (fsdp_worker.py: 4 steps straight, and interrupted after step 1 then resumed; or
``deepspeed_worker.py finetune BASE DATA OUT METHOD``: ``run_finetune`` end to end), with
accelerate's DeepSpeed state forced onto CPU + gloo when run under torch.distributed env vars.
Alone, it is the single-process reference. ZERO_STAGE picks the ZeRO stage (2 by default).

accelerate 1.15 never selects DeepSpeed for a CPU launch (``AcceleratorState`` turns
ACCELERATE_USE_DEEPSPEED into DistributedType.DEEPSPEED only ``and not cpu``), so the worker
sets the state accelerate has on GPUs: distributed_type DEEPSPEED with the plugin of
examples/accelerate/deepspeed_zero2.yaml (no offload, no zero3 init). Everything after that is
accelerate's own DeepSpeed path (``Accelerator.prepare`` calls ``deepspeed.initialize`` on the
gloo process group accelerate started, ``backward`` steps the engine) and the trainer's."""

import os
import sys
from pathlib import Path

import torch


def force_deepspeed_on_cpu(stage: int) -> None:
    import accelerate.state as state
    from accelerate.utils import DeepSpeedPlugin, DistributedType

    original = state.AcceleratorState.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        if self.distributed_type == DistributedType.MULTI_CPU:
            # as AcceleratorState does for DeepSpeed on GPUs (the partial state too)
            self.distributed_type = state.PartialState._shared_state["distributed_type"] = DistributedType.DEEPSPEED
            self.device = state.PartialState._shared_state["device"] = torch.device("cpu")
            plugin = DeepSpeedPlugin(zero_stage=stage, gradient_accumulation_steps=1, gradient_clipping=1.0,
                                     offload_optimizer_device="none", offload_param_device="none",
                                     zero3_init_flag=False)
            plugin.set_mixed_precision(self._mixed_precision)
            plugin.select(_from_accelerator_state=True)
            self.deepspeed_plugins = plugin
            self._mixed_precision = "no"  # DeepSpeed's config holds the precision

    state.AcceleratorState.__init__ = init
    from accelerate import Accelerator

    accelerator_init = Accelerator.__init__

    def make(self, *args, **kwargs):  # set by Accelerator only when it is handed a DeepSpeed plugin
        self.deepspeed_engine_wrapped = None
        accelerator_init(self, *args, **kwargs)

    Accelerator.__init__ = make


if __name__ == "__main__":
    torch.set_num_threads(1)
    sys.path.insert(0, str(Path(__file__).parent))
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        force_deepspeed_on_cpu(int(os.environ.get("ZERO_STAGE", "2")))
    import fsdp_worker

    if sys.argv[1] == "finetune":
        fsdp_worker.finetune(*sys.argv[2:6])
    else:
        fsdp_worker.main()
