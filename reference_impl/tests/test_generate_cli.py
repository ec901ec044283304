"""Inference from a trained checkpoint: `python -m reftrain.generate` decodes what transformers decodes."""

import json
import subprocess
import sys
from pathlib import Path

import torch
import transformers

from reftrain.config import load_config
from reftrain.generate import load_for_inference
from reftrain.models import build_model

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "examples" / "tiny_qwen3_moe.toml"


def run(*args, cwd=ROOT):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_generate_from_trained_checkpoint_matches_transformers(tmp_path):
    ckpt = tmp_path / "ckpt"
    trained = run("-m", "reftrain.train", str(CONFIG), "--training.steps=3", f"--checkpoint.dir={ckpt}")
    assert trained.returncode == 0, trained.stderr[-2000:]

    result = run(
        "-m",
        "reftrain.generate",
        str(CONFIG),
        "--checkpoint",
        str(ckpt),
        "--prompt",
        "Once upon a time",
        "--max-new-tokens",
        "12",
        "--json",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    prompt = torch.tensor([out["prompt_ids"]])
    assert len(out["ids"]) > prompt.shape[1]

    hf_config = load_config(CONFIG).hf_config_dict()
    ours = load_for_inference(hf_config, checkpoint=str(ckpt))
    init = build_model(hf_config, device="cpu")
    init.init_weights(0)
    changed = [k for k, v in ours.state_dict().items() if not torch.equal(v, init.state_dict()[k])]
    assert changed, "the checkpoint's trained weights were not loaded"

    hf = transformers.AutoModelForCausalLM.from_config(
        transformers.AutoConfig.for_model(**hf_config), attn_implementation="eager"
    ).eval()
    hf.load_state_dict(ours.state_dict(), strict=True)
    expected = hf.generate(
        prompt, max_new_tokens=len(out["ids"]) - prompt.shape[1], do_sample=False, eos_token_id=None, pad_token_id=0
    )
    assert out["ids"] == expected[0].tolist()


def test_generate_without_weights_is_one_clear_error():
    result = run("-m", "reftrain.generate", str(CONFIG))
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith("error: give --checkpoint DIR")
