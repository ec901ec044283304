"""Runs TorchTitan's own trainer (under torchrun, the CPU shims of grader_support installed) on the run of
the current directory, runs/routing/train.toml, and saves what every MoE router did in each step to
$ATEBENCH_TRACE_OUT/step_<n>.pt: layers, tokens, expert ids and gate weights as the router returns them
(topk(sorted=False): unsorted), and the router logits. Usage (under torchrun): trace_reference.py <trainer args>
"""

import os
from pathlib import Path

import titan_train
import torch

titan_train.install()

import torchtitan.train as train  # noqa: E402

OUT = Path(os.environ["ATEBENCH_TRACE_OUT"])


class RecordingTrainer(train.Trainer):
    def __init__(self, job_config):
        super().__init__(job_config)
        model = self.model_parts[0]
        self.layers = sorted(int(i) for i, block in model.layers.items() if block.moe_enabled)
        self.seen = {i: {"router": [], "logits": []} for i in self.layers}
        self.tokens = []
        for i in self.layers:
            router = model.layers[str(i)].moe.router
            router.register_forward_hook(lambda m, a, out, i=i: self.seen[i]["router"].append(out))
            router.gate.register_forward_hook(lambda m, a, out, i=i: self.seen[i]["logits"].append(out))
        model.tok_embeddings.register_forward_hook(lambda m, args, out: self.tokens.append(args[0].reshape(-1)))

    def train_step(self, data_iterator):
        for seen in self.seen.values():
            seen["router"].clear()
            seen["logits"].clear()
        self.tokens.clear()
        super().train_step(data_iterator)

        def stacked(pick):
            calls = len(self.seen[self.layers[0]]["router"])  # one per micro-batch
            return torch.stack([torch.cat([pick(i, n) for n in range(calls)]) for i in self.layers])

        torch.save(
            {
                "layers": torch.tensor(self.layers),
                "tokens": torch.cat(self.tokens),
                "expert_ids": stacked(lambda i, n: self.seen[i]["router"][n][1].detach()),
                "gate_weights": stacked(lambda i, n: self.seen[i]["router"][n][0].detach().float()),
                "logits": stacked(lambda i, n: self.seen[i]["logits"][n].detach().float()),
                "num_experts": self.model_parts[0].layers[str(self.layers[0])].moe.router.num_experts,
            },
            OUT / f"step_{self.step}.pt",
        )


if __name__ == "__main__":
    train.main(RecordingTrainer)
