"""Which GPUs the trainer's TensorFlow sees, and whether its CUDA can drive them.

TensorFlow 1.15 lists a GPU that its CUDA release is too old for, then fails or spends an hour compiling
kernels once training starts.  The check stage asks the trainer's own Python (the base image's TensorFlow)
and refuses such a GPU before any work, naming the base image that fits.
"""
import json
import os
import re
import subprocess
from typing import List, NamedTuple, Optional, Tuple

#: Run by the trainer's Python: what its TensorFlow was built with and which devices it finds.
PROBE = r"""
import json, os
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from tensorflow.python.client import device_lib
from tensorflow.python.platform import build_info
import tensorflow as tf
gpus = [d.physical_device_desc for d in device_lib.list_local_devices() if d.device_type == "GPU"]
print(json.dumps({"tensorflow": tf.version.VERSION, "cuda": getattr(build_info, "cuda_version_number", None)
                  or os.environ.get("CUDA_VERSION"), "cuda_build": tf.test.is_built_with_cuda(), "gpus": gpus}))
"""

#: The newest compute capability each CUDA major.minor release can build kernels for.
NEWEST_CAPABILITY = ((10, 0, 7.5), (11, 0, 8.0), (11, 1, 8.6), (11, 8, 9.0), (12, 0, 9.0))
#: What each newer generation needs, to say which base fits.
GENERATIONS = ((9.0, "Hopper"), (8.9, "Ada Lovelace"), (8.0, "Ampere"), (7.5, "Turing"), (7.0, "Volta"),
               (6.0, "Pascal"), (0.0, "Maxwell or older"))
DEFAULT_BASE = "nvcr.io/nvidia/tensorflow:23.03-tf1-py3"
#: What the CPU costs, in words a first-time user can plan with (measured by bench/cpu_training.py).
CPU_WARNING = ("no GPU is visible to TensorFlow: training will run on the CPU ({cores} cores here). On 2 cores "
               "the full-size model learns about one second of speech per second: one epoch of 100 hours of "
               "speech takes about 4 days, and a model needs tens of epochs. That is fine for a smoke run with "
               "tiny settings (train.n_hidden = 64, a few epochs) or for preparing the data (--to lm); for a real "
               "model use a GPU host: `docker compose up` with the NVIDIA Container Toolkit (README.md).")


class Gpu(NamedTuple):
    name: str
    capability: float


class Report(NamedTuple):
    tensorflow: str
    cuda: Optional[str]
    gpus: Tuple[Gpu, ...]


def parse_gpu(description: str) -> Gpu:
    """TensorFlow's ``physical_device_desc``: 'device: 0, name: Tesla T4, pci bus id: ..., compute capability: 7.5'."""
    name = re.search(r"name: ([^,]+)", description)
    capability = re.search(r"compute capability: (\d+)\.(\d+)", description)
    return Gpu(name.group(1).strip() if name else description,
               float("{}.{}".format(*capability.groups())) if capability else 0.0)


def probe(python: str) -> Report:
    """Ask the trainer's Python; raises OSError or ValueError when it cannot answer."""
    proc = subprocess.run([python, "-c", PROBE], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ValueError(f"{python} could not list TensorFlow's devices: {last}")
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    return Report(data["tensorflow"], data["cuda"] if data["cuda_build"] else None,
                  tuple(parse_gpu(d) for d in data["gpus"]))


def _version(text: str) -> Tuple[int, int]:
    parts = [int(p) for p in re.findall(r"\d+", text)[:2]] + [0]
    return parts[0], parts[1]


def newest_capability(cuda: str) -> float:
    found = 0.0
    for major, minor, capability in NEWEST_CAPABILITY:
        if _version(cuda) >= (major, minor):
            found = capability
    return found


def generation(capability: float) -> str:
    return next(name for floor, name in GENERATIONS if capability >= floor)


def unsupported(report: Report) -> List[str]:
    """One sentence per GPU this TensorFlow's CUDA cannot drive."""
    if report.cuda is None:
        return []
    newest = newest_capability(report.cuda)
    return [f"GPU {gpu.name} (compute capability {gpu.capability}, {generation(gpu.capability)}) is newer than "
            f"CUDA {report.cuda} of this TensorFlow {report.tensorflow} can drive (up to {newest}). Build the "
            f"image on the default base, {DEFAULT_BASE} (CUDA 12), see docs/docker.md."
            for gpu in report.gpus if gpu.capability > newest]


def describe(report: Report) -> str:
    gpus = ", ".join(f"{g.name} (compute capability {g.capability}, {generation(g.capability)})"
                     for g in report.gpus) or "none"
    cuda = f"CUDA {report.cuda}" if report.cuda else "a CPU-only build"
    return f"TensorFlow {report.tensorflow} ({cuda}); GPUs: {gpus}"
