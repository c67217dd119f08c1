"""The check stage's GPU rules, on the device descriptions TensorFlow 1.15 really prints."""
import os
import sys

import pytest

from dstrain.pipeline.deepspeech import devices
from tests.test_deepspeech_real import require_trainer

T4 = "device: 0, name: Tesla T4, pci bus id: 0000:00:04.0, compute capability: 7.5"
A100 = "device: 1, name: NVIDIA A100-SXM4-40GB, pci bus id: 0000:00:05.0, compute capability: 8.0"
RTX3090 = "device: 0, name: NVIDIA GeForce RTX 3090, pci bus id: 0000:01:00.0, compute capability: 8.6"
H100 = "device: 0, name: NVIDIA H100 PCIe, pci bus id: 0000:21:00.0, compute capability: 9.0"


def report(cuda, *descriptions):
    return devices.Report("1.15.5", cuda, tuple(devices.parse_gpu(d) for d in descriptions))


def test_a_device_description_gives_the_name_and_the_compute_capability():
    assert devices.parse_gpu(A100) == devices.Gpu("NVIDIA A100-SXM4-40GB", 8.0)
    assert devices.generation(8.6) == "Ampere" and devices.generation(7.5) == "Turing"


def test_the_cuda_10_legacy_base_refuses_ampere_and_keeps_turing():
    problems = devices.unsupported(report("10.0", T4, RTX3090))
    assert len(problems) == 1
    assert "NVIDIA GeForce RTX 3090" in problems[0] and "8.6, Ampere" in problems[0]
    assert "CUDA 10.0" in problems[0] and devices.DEFAULT_BASE in problems[0]


@pytest.mark.parametrize("gpu", [T4, A100, RTX3090, H100])
def test_the_cuda_12_default_base_drives_pascal_to_hopper(gpu):
    assert devices.unsupported(report("12.1", gpu)) == []


def test_cuda_11_0_stops_before_the_ampere_consumer_cards():
    assert devices.unsupported(report("11.0", A100)) == []
    assert len(devices.unsupported(report("11.0", RTX3090))) == 1


def test_a_cpu_build_names_no_gpu_and_refuses_nothing():
    cpu = report(None)
    assert devices.unsupported(cpu) == []
    assert devices.describe(cpu) == "TensorFlow 1.15.5 (a CPU-only build); GPUs: none"


@pytest.mark.deepspeech
def test_the_real_trainer_reports_its_tensorflow_and_no_gpu_here():
    require_trainer()
    found = devices.probe(os.environ["TRAINER_PYTHON"])
    assert found.tensorflow == "1.15.5" and found.gpus == () and found.cuda is None


def test_a_python_without_deepspeech_says_what_it_lacks():
    found = devices.probe(sys.executable)  # the tests' own Python: none of DeepSpeech's packages
    assert found.tensorflow is None and found.python == sys.version.split()[0]
    problems = devices.missing(found, optimizer=True)
    assert [p.split(" (")[0] for p in problems] == [
        "it cannot import deepspeech_training", "it cannot import ds_ctcdecoder", "it cannot import tensorflow",
        "it cannot import optuna"]
    assert "No module named 'tensorflow'" in problems[2]


def test_versions_other_than_deepspeech_0_9_3_and_tensorflow_1_15_are_refused():
    versions = {"deepspeech_training": "0.9.2", "ds_ctcdecoder": "0.9.3", "tensorflow": "1.15.5+nv23.03"}
    assert devices.missing(devices.Report("1.15.5", None, (), "3.8.10", versions), optimizer=False) == [
        "it has deepspeech_training 0.9.2, and DeepSpeech 0.9.3 needs 0.9.3"]
    versions.update(deepspeech_training="0.9.3", tensorflow="1.14.0")
    assert devices.missing(devices.Report("1.14.0", None, (), "3.6.9", versions), optimizer=False) == [
        "it has tensorflow 1.14.0, and DeepSpeech 0.9.3 needs 1.15"]


def test_a_program_that_is_not_python_cannot_answer(tmp_path):
    with pytest.raises(ValueError, match="could not run the probe"):
        devices.probe("/bin/false")
