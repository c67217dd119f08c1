"""KenLM's command lines: ``lmplz`` counts the corpus into an ARPA model, ``filter`` keeps the top-k
vocabulary, ``build_binary`` writes the quantised trie the scorer is made of.

The steps and flags are those of DeepSpeech 0.9.3's ``data/lm/generate_lm.py``.
"""
from pathlib import Path
from typing import Dict, List, Optional

from dstrain.pipeline.atomic import temporary_path
from dstrain.pipeline.settings import LmSettings
from dstrain.pipeline.tools import find_tool, run_tool

TOOLS = ("lmplz", "filter", "build_binary")
HOW_TO_GET = ("Build them with `bash docker/build_kenlm.sh PREFIX` (the Docker image has them) and set "
              "lm.kenlm_bin to PREFIX/bin.")


def find_tools(kenlm_bin: Optional[Path]) -> Dict[str, Path]:
    return {name: find_tool(name, kenlm_bin / name if kenlm_bin else None, "lm.kenlm_bin", HOW_TO_GET)
            for name in TOOLS}


def lmplz_command(lmplz: Path, lm: LmSettings, corpus: Path, arpa: Path, temp_dir: Path) -> List[str]:
    command = [str(lmplz), "--order", str(lm.order), "--memory", lm.memory, "--temp_prefix", str(temp_dir) + "/",
               "--text", str(corpus), "--arpa", str(arpa)]
    if lm.prune:
        command += ["--prune", *map(str, lm.prune)]
    if lm.discount_fallback:
        command.append("--discount_fallback")
    return command


def filter_command(filter_tool: Path, arpa: Path, filtered: Path) -> List[str]:
    """Single mode: keep the n-grams made of vocabulary words only (the vocabulary comes on stdin)."""
    return [str(filter_tool), "single", "model:" + str(arpa), str(filtered)]


def build_binary_command(build_binary: Path, lm: LmSettings, arpa: Path, binary: Path) -> List[str]:
    # -v leaves the vocabulary out: the scorer package stores its own (generate_scorer_package requires it).
    return [str(build_binary), "-a", str(lm.a_bits), "-q", str(lm.q_bits), "-v", "trie", str(arpa), str(binary)]


def build_model(tools: Dict[str, Path], lm: LmSettings, corpus: Path, vocab: Path, arpa: Path, filtered: Path,
                binary: Path) -> None:
    """corpus -> ARPA -> ARPA of the top-k words -> binary; the two ARPA files are deleted at the end."""
    with temporary_path(arpa) as tmp_arpa:
        run_tool(lmplz_command(tools["lmplz"], lm, corpus, tmp_arpa, arpa.parent))
    with temporary_path(filtered) as tmp_filtered:
        run_tool(filter_command(tools["filter"], arpa, tmp_filtered), stdin=vocab)
    with temporary_path(binary) as tmp_binary:
        run_tool(build_binary_command(tools["build_binary"], lm, filtered, tmp_binary))
    # Several times the corpus size, and nothing reads them once the binary exists.
    arpa.unlink()
    filtered.unlink()
