"""Expert parallelism really partitions the experts; meshes that do not fit the launch are rejected."""

import pytest

from reftrain.models import MODELS
from reftrain.parallel.pipeline import stage_layers
from reftrain.testing import expert_layout, init_mesh_error, run_distributed


@pytest.mark.parametrize("model_type", sorted(MODELS))
def test_each_ep_rank_holds_only_its_slice_of_experts(model_type):
    ranks = run_distributed(expert_layout, 2, model_type, 2)
    for rank, layout in enumerate(ranks):
        assert layout["num_experts"], "the model has no MoE layers"
        for total, local, offset, shape in zip(
            layout["num_experts"], layout["local"], layout["offset"], layout["shapes"]
        ):
            assert local == total // 2 and shape[0] == total // 2
            assert offset == rank * total // 2
        assert all(layout["has_group"])


def test_mesh_must_match_world_size():
    (message, _) = run_distributed(init_mesh_error, 2, 2, 2, 1)
    assert "pp*dp*ep = 2*2*1 = 4 does not match the 2 launched processes" in message


def test_pipeline_stages_cover_every_layer_once():
    for layers, pp in [(3, 2), (8, 4), (5, 3), (2, 2)]:
        stages = [stage_layers(layers, pp, s) for s in range(pp)]
        assert sum(stages, []) == list(range(layers))
        assert all(stages)
