"""DeepSpeech's checkpoint directory: which files make a checkpoint, and keeping them movable and the best safe.

train.py v0.9.3 saves with TensorFlow's Saver:

- ``checkpoint``: the state file of the epoch checkpoints (``model_checkpoint_path: ".../train-<step>"``),
  each made of ``train-<step>.index``, ``.data-00000-of-00001`` and ``.meta``;
- ``best_dev_checkpoint``: the state file of the best validation checkpoint, ``best_dev-<step>.*``
  (a Saver with max_to_keep=1, so one at a time);
- ``flags.txt``: the flags of the last training invocation (absl's ``--name=value``, ``--flag``/``--noflag``).
"""
import hashlib
import os
import re
import shutil
from pathlib import Path
from typing import Dict, List, Optional

from dstrain.pipeline.atomic import write_text
from dstrain.pipeline.digests import hash_file

LAST_STATE = "checkpoint"
BEST_STATE = "best_dev_checkpoint"
#: The state file of each choice of train.model_checkpoint, and DeepSpeech's --load_evaluate value for it.
STATE_OF = {"best": BEST_STATE, "last": LAST_STATE}
FLAGS_FILE = "flags.txt"
_PATH_LINE = re.compile(r'^(model_checkpoint_path|all_model_checkpoint_paths): "(.*)"$')


def _unescape(text: str) -> str:
    return text.replace('\\"', '"').replace("\\\\", "\\")


def state_name(directory: Path, state_file: str) -> Optional[str]:
    """The checkpoint a state file points to, as a name inside ``directory`` (e.g. ``best_dev-1234``)."""
    try:
        lines = (directory / state_file).read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in lines:
        match = _PATH_LINE.match(line.strip())
        if match and match.group(1) == "model_checkpoint_path":
            name = os.path.basename(_unescape(match.group(2)))
            return name if (directory / (name + ".index")).exists() else None
    return None


def has_last(directory: Path) -> bool:
    return state_name(directory, LAST_STATE) is not None


def has_best(directory: Path) -> bool:
    return state_name(directory, BEST_STATE) is not None


def has_any(directory: Path) -> bool:
    """Whether any checkpoint files are there, named by a state file or not."""
    return any(directory.glob("train-*.index")) or any(directory.glob("best_dev-*.index"))


def files_of(directory: Path, name: str) -> List[Path]:
    """The files of one checkpoint: ``name.index``, ``name.data-*``, ``name.meta``."""
    return sorted(directory.glob(name + ".*"))


def write_state(directory: Path, state_file: str, name: str) -> None:
    """A state file naming one checkpoint by its bare name, which TensorFlow resolves inside the directory."""
    write_text(directory / state_file, f'model_checkpoint_path: "{name}"\nall_model_checkpoint_paths: "{name}"\n')


def relativize(directory: Path) -> None:
    """Make the state files name checkpoints relative to their directory.

    TensorFlow writes absolute paths; a data root seen as ./data on the host and
    /data in the container would otherwise break the next resume.
    """
    for state_file in (LAST_STATE, BEST_STATE):
        path = directory / state_file
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError:
            continue
        out = []
        for line in lines:
            match = _PATH_LINE.match(line.strip())
            if match:
                line = f'{match.group(1)}: "{os.path.basename(_unescape(match.group(2)))}"'
            out.append(line)
        if out != lines:
            write_text(path, "\n".join(out) + "\n")


def prune(directory: Path) -> None:
    """Delete checkpoints no state file names.

    TensorFlow's Saver only deletes what it saved itself, so every resume would
    otherwise leave the earlier invocation's epoch checkpoints behind.
    """
    kept = set()
    for state_file in (LAST_STATE, BEST_STATE):
        try:
            lines = (directory / state_file).read_text(encoding="utf-8").splitlines()
        except OSError:
            continue
        for line in lines:
            match = _PATH_LINE.match(line.strip())
            if match:
                kept.add(os.path.basename(_unescape(match.group(2))))
    for index in list(directory.glob("train-*.index")) + list(directory.glob("best_dev-*.index")):
        name = index.name[:-len(".index")]
        if name not in kept:
            for path in files_of(directory, name):
                path.unlink()


def protect_best(directory: Path, backup: Path, name: str) -> None:
    """Hard-link the best checkpoint aside: a resumed DeepSpeech forgets its best loss and may replace it."""
    shutil.rmtree(str(backup), ignore_errors=True)
    backup.mkdir(parents=True)
    for path in files_of(directory, name):
        os.link(str(path), str(backup / path.name))


def restore_best(directory: Path, backup: Path, name: str) -> bool:
    """Make the best state file name ``name`` again if DeepSpeech replaced it; True when it had to.

    Also after a kill -9 that left DeepSpeech's worse "best" named and the real one only in ``backup``.
    """
    current = state_name(directory, BEST_STATE)
    kept = files_of(backup, name) if backup.is_dir() else []
    replaced = current != name and bool(files_of(directory, name) or kept)
    if replaced:
        for path in kept:
            target = directory / path.name
            if not target.exists():
                os.link(str(path), str(target))
        if current:
            for path in files_of(directory, current):
                path.unlink()
        write_state(directory, BEST_STATE, name)
    shutil.rmtree(str(backup), ignore_errors=True)
    return replaced


def content_digest(directory: Path, name: str) -> Optional[str]:
    """The weights of one checkpoint, by content: its ``.index`` and ``.data-*`` files.

    The ``.meta`` graph is left out: its shape is fixed by the run's lineage, and it says nothing of the
    weights.  None when the checkpoint has no files.
    """
    found = [path for path in files_of(directory, name) if not path.name.endswith(".meta")]
    if not found:
        return None
    digest = hashlib.sha256()
    for path in found:
        digest.update(path.name[len(name):].encode() + b"\0")
        hash_file(path, digest, label="hashing")
    return digest.hexdigest()[:16]


def read_flags(directory: Path) -> Dict[str, str]:
    """The flags a checkpoint was trained with (empty when flags.txt is absent)."""
    flags: Dict[str, str] = {}
    try:
        lines = (directory / FLAGS_FILE).read_text(encoding="utf-8").splitlines()
    except OSError:
        return flags
    for line in lines:
        if not line.startswith("--"):
            continue
        name, sep, value = line[2:].partition("=")
        if sep:
            flags[name] = value
        elif name.startswith("no"):
            flags[name[2:]] = "false"
        else:
            flags[name] = "true"
    return flags
