"""What the trainer's Python holds (DeepSpeech 0.9.3, TensorFlow 1.15, the decoder), which GPUs it sees, and
whether its CUDA can drive them.

TensorFlow 1.15 lists a GPU that its CUDA release is too old for, then fails or spends an hour compiling
kernels once training starts.  The check stage asks the trainer's own Python (the base image's TensorFlow)
in one process and refuses such a GPU, or a missing package, before any work.
"""
import json
import os
import re
from typing import List, Mapping, NamedTuple, Optional, Tuple

from dstrain.pipeline import processes

#: Run by the trainer's Python: each package's version or why it cannot be imported, what its TensorFlow was
#: built with and which devices it finds.  Written for the oldest base (Python 3.6).
PROBE = r"""
import json, os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
found = {"python": sys.version.split()[0], "versions": {}, "errors": {}}

def deepspeech_training():
    import deepspeech_training
    with open(os.path.join(os.path.dirname(deepspeech_training.__file__), "VERSION")) as handle:
        return handle.read().strip()

def ds_ctcdecoder():
    import ds_ctcdecoder
    return ds_ctcdecoder.__version__

def optuna():
    import optuna
    return optuna.__version__

def tensorflow():
    from tensorflow.python.client import device_lib
    from tensorflow.python.platform import build_info
    import tensorflow as tf
    found["gpus"] = [d.physical_device_desc for d in device_lib.list_local_devices() if d.device_type == "GPU"]
    found["cuda"] = (getattr(build_info, "cuda_version_number", None) or os.environ.get("CUDA_VERSION")
                     if tf.test.is_built_with_cuda() else None)
    return tf.version.VERSION

for package in (deepspeech_training, ds_ctcdecoder, optuna, tensorflow):
    try:
        found["versions"][package.__name__] = package()
    except Exception as exc:
        found["errors"][package.__name__] = "{}: {}".format(type(exc).__name__, exc)
print(json.dumps(found))
"""
#: What DeepSpeech 0.9.3's trainer needs in its Python (its setup.py and requirements), as version prefixes.
REQUIRED = {"deepspeech_training": "0.9.3", "ds_ctcdecoder": "0.9.3", "tensorflow": "1.15"}

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
    tensorflow: Optional[str]
    cuda: Optional[str]
    gpus: Tuple[Gpu, ...]
    python: str = ""
    #: Package name -> version, for those the trainer's Python imports.
    versions: Mapping[str, str] = {}
    #: Package name -> why it cannot be imported.
    errors: Mapping[str, str] = {}


def parse_gpu(description: str) -> Gpu:
    """TensorFlow's ``physical_device_desc``: 'device: 0, name: Tesla T4, pci bus id: ..., compute capability: 7.5'."""
    name = re.search(r"name: ([^,]+)", description)
    capability = re.search(r"compute capability: (\d+)\.(\d+)", description)
    return Gpu(name.group(1).strip() if name else description,
               float("{}.{}".format(*capability.groups())) if capability else 0.0)


def probe(python: str) -> Report:
    """Ask the trainer's Python; raises OSError (no such program) or ValueError (it cannot run the probe)."""
    proc = processes.run([python, "-c", PROBE], capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ValueError(f"{python} could not run the probe (exit code {proc.returncode}): {last}")
    data = json.loads(lines[-1])
    return Report(data["versions"].get("tensorflow"), data.get("cuda"),
                  tuple(parse_gpu(d) for d in data.get("gpus", ())), data["python"], data["versions"], data["errors"])


def missing(report: Report, optimizer: bool) -> List[str]:
    """One sentence per package the trainer's Python lacks, or has in a version DeepSpeech 0.9.3 cannot use;
    optuna only when the optimize stage will run lm_optimizer.py."""
    wanted = dict(REQUIRED, **({"optuna": ""} if optimizer else {}))
    problems = []
    for package, prefix in wanted.items():
        version = report.versions.get(package)
        if version is None:
            problems.append(f"it cannot import {package} ({report.errors.get(package, 'not found')})")
        elif not (version == prefix or version.startswith(prefix + ".")) and prefix:
            problems.append(f"it has {package} {version}, and DeepSpeech 0.9.3 needs {prefix}")
    return problems


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


def describe_packages(report: Report) -> str:
    return f"Python {report.python}, " + ", ".join(f"{name} {version}"
                                                    for name, version in sorted(report.versions.items()))
