"""Pipeline parallelism: cut the model into pp stages by deleting what a stage does not run.

Why deletion: parameter names stay Hugging Face's (`model.layers.7.mlp...`) on every stage, so
checkpoints, initialisation and gradient comparisons need no renaming. `model(x)` embeds only when
`embed_tokens` is present and returns logits only when `lm_head` is present.
"""

import torch
from torch import nn
from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe

SCHEDULES = {"1F1B": Schedule1F1B, "GPipe": ScheduleGPipe}


def stage_layers(num_layers: int, pp: int, stage: int) -> list[int]:
    """The decoder layer indices of `stage`: contiguous, earlier stages take the remainder."""
    base, extra = divmod(num_layers, pp)
    start = stage * base + min(stage, extra)
    return list(range(start, start + base + (stage < extra)))


def split_model(model: nn.Module, pp: int, stage: int) -> nn.Module:
    """Keep only `stage`'s layers (and embed on the first, norm + lm_head on the last), in place."""
    if pp == 1:
        return model
    keep = {str(i) for i in stage_layers(len(model.model.layers), pp, stage)}
    for name in list(model.model.layers.keys()):
        if name not in keep:
            del model.model.layers[name]
    if stage > 0:
        model.model.embed_tokens = None
    if stage < pp - 1:
        model.model.norm = None
        model.lm_head = None
    return model


def build_schedule(
    model: nn.Module,
    stage: int,
    pp: int,
    pp_group,
    device: torch.device,
    num_microbatches: int,
    loss_fn,
    schedule: str = "1F1B",
):
    """A `torch.distributed.pipelining` schedule over this rank's stage.

    `scale_grads=False` because `loss_fn` already divides by the global token count.
    """
    pipeline_stage = PipelineStage(model, stage, pp, device, group=pp_group)
    return SCHEDULES[schedule](pipeline_stage, num_microbatches, loss_fn=loss_fn, scale_grads=False)
