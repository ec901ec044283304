"""titan_train.py (TorchTitan's trainer on CPU/gloo with the grader's shims) with the tiny DeepSeek-V3 of
dsv3_case.py registered as deepseek_v3 flavor "atebench_tiny". Usage (torchrun): dsv3_train.py <trainer args>"""

import sys

import dsv3_case
import titan_train

if __name__ == "__main__":
    titan_train.install()
    dsv3_case.spec().model_args[dsv3_case.FLAVOR] = dsv3_case.tiny_args()
    import torchtitan.train as train

    sys.argv = ["torchtitan.train", *sys.argv[1:]]
    train.main(train.Trainer)
