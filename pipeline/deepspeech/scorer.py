"""DeepSpeech's scorer package (``kenlm.scorer``): the KenLM binary, the vocabulary as a trie over the
alphabet, and the decoder's default alpha and beta.

Built by DeepSpeech 0.9.3's ``generate_scorer_package``.  The ``lm`` stage builds ``lm/kenlm.scorer`` with
the configured alpha/beta; ``optimize`` builds ``optimize/kenlm.scorer`` with the ones it found.
"""
from pathlib import Path
from typing import List, Optional

from dstrain.pipeline.atomic import temporary_path
from dstrain.pipeline.errors import StageError
from dstrain.pipeline.paths import DataRoot
from dstrain.pipeline.settings import LmSettings
from dstrain.pipeline.tools import find_tool, run_tool

TOOL = "generate_scorer_package"
HOW_TO_GET = ("The Docker image has it. Elsewhere, compile it from DeepSpeech v0.9.3's source with "
              "docker/build_scorer_tool.sh, then set lm.scorer_tool to its path.")


def find(configured: Optional[Path]) -> Path:
    return find_tool(TOOL, configured, "lm.scorer_tool", HOW_TO_GET)


def command(tool: Path, alphabet: Optional[Path], lm_binary: Path, vocab: Path, package: Path,
            alpha: float, beta: float) -> List[str]:
    """``alphabet`` None means bytes output mode."""
    # Bytes mode is always stated: left out, the tool guesses it from the vocabulary (a vocabulary of
    # one-letter words would silently make a bytes-mode scorer).
    if alphabet is None:
        mode = ["--force_bytes_output_mode", "true"]
    else:
        mode = ["--alphabet", str(alphabet), "--force_bytes_output_mode", "false"]
    return [str(tool), *mode, "--lm", str(lm_binary), "--vocab", str(vocab), "--package", str(package),
            "--default_alpha", repr(float(alpha)), "--default_beta", repr(float(beta))]


def build(tool: Path, alphabet: Optional[Path], lm_binary: Path, vocab: Path, package: Path,
          alpha: float, beta: float) -> None:
    with temporary_path(package) as tmp:
        said = run_tool(command(tool, alphabet, lm_binary, vocab, tmp, alpha, beta))
        # The tool exits 0 even when it fails (unreadable vocabulary, bad LM): the package is the LM
        # followed by the trie, so anything not larger than the LM is a failure.
        if not tmp.exists() or tmp.stat().st_size <= lm_binary.stat().st_size:
            raise StageError("{} wrote no scorer package for {}; it said:\n    {}".format(
                TOOL, lm_binary, "\n    ".join(said) or "nothing"))


def package(lm: LmSettings, paths: DataRoot, alpha: float, beta: float, path: Path) -> None:
    """Package the run's language model into a scorer at ``path`` with these default alpha and beta."""
    build(find(lm.scorer_tool), None if lm.bytes_output_mode else paths.alphabet, paths.lm_binary,
          paths.lm_vocab(lm.top_k), path, alpha, beta)
