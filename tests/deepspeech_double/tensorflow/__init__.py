"""A stand-in for TensorFlow 1.15 (CPU build), for dstrain's tests only: just what the check stage's probe of
the trainer's Python reads (pipeline/deepspeech/devices.py), so a run with the DeepSpeech double passes its
checks as one with the real trainer does.  DS_DOUBLE_TENSORFLOW=version makes it report another version."""
import os
import sys
import types

__version__ = os.environ.get("DS_DOUBLE_TENSORFLOW", "1.15.5")
version = types.SimpleNamespace(VERSION=__version__)
test = types.SimpleNamespace(is_built_with_cuda=lambda: False)


def _module(name, **attributes):
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    sys.modules[name] = module
    return module


class _Device:
    device_type = "CPU"
    physical_device_desc = ""


python = _module("tensorflow.python", client=_module("tensorflow.python.client", device_lib=_module(
    "tensorflow.python.client.device_lib", list_local_devices=lambda: [_Device()])), platform=_module(
    "tensorflow.python.platform", build_info=_module("tensorflow.python.platform.build_info")))
