"""The lm stage: a real KenLM model from served text sources, no dev/test leakage, the scorer's command line."""
import bz2
import gzip
import hashlib
import json
import lzma
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dstrain.languages.fr import LANGUAGE as FR
from dstrain.pipeline.config import resolve
from dstrain.pipeline.deepspeech import scorer
from dstrain.pipeline.errors import ConfigError, StageError
from dstrain.pipeline.language import to_english
from dstrain.pipeline.lm import corpus, kenlm
from dstrain.pipeline.settings import LmSettings
from tests.conftest import RELEASE, clean_env, dstrain
from tests.fixtures.outputs import listing
from tests.http_server import FileServer

REPO = Path(__file__).resolve().parents[1]
FAKE_SCORER = Path(__file__).with_name("fake_generate_scorer_package.py")
TOP_K = 40

# Only letters of the test run's alphabet (its transcripts have no k, q, w, x, y, z, ç, î, ô).
_DET = ("le", "un", "ce")
_NOUN = ("chat", "chien", "enfant", "jardin", "livre", "train", "bateau", "marin")
_ADJ = ("petit", "grand", "beau", "vieil", "blanc", "noir")
_VERB = ("regarde", "mange", "attend", "porte", "suit", "aime")
_OBJ = ("la pomme", "la table", "la rue", "la mer", "la porte", "une fleur", "une lettre", "la lune")
_END = (".", " !", " ?", "…", ", demain.", " ce soir.")

#: Raw dev/test sentences as a text source would write them; the run's dev/test sets hold them normalised.
LEAKED = ("LE SOLEIL se lève à l’est !", "Nous mangeons des pommes.", "« Le café est chaud »",
          "nous mangeons des POMMES")


def grammar_sentence(rng: random.Random) -> str:
    words = [rng.choice(_DET), rng.choice(_ADJ), rng.choice(_NOUN), rng.choice(_VERB), rng.choice(_OBJ)]
    sentence = " ".join(words) + rng.choice(_END)
    if rng.random() < 0.1:
        return sentence.upper()
    return sentence[0].upper() + sentence[1:]


def source_text(seed: int, lines: int = 400) -> str:
    rng = random.Random(seed)
    out = [grammar_sentence(rng) for _ in range(lines)]
    out[10:10] = list(LEAKED)
    out[50:50] = ["", "   ", "En 1998, il pleuvait.", "Il a dit привет", "Le kiwi est mûr.", "<s> le chat dort </s>"]
    return "\n".join(out) + "\n"


def served(directory: Path, name: str, text: str) -> str:
    """Write ``text`` compressed according to ``name``; return its sha256."""
    data = text.encode("utf-8")
    if name.endswith(".xz"):
        data = lzma.compress(data)
    elif name.endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    (directory / name).write_bytes(data)
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="session")
def kenlm_bin(tmp_path_factory) -> Path:
    """lmplz, filter and build_binary from docker/build_kenlm.sh (built once per machine, then cached)."""
    prefix = tmp_path_factory.mktemp("kenlm")
    subprocess.run(["bash", str(REPO / "docker" / "build_kenlm.sh"), str(prefix)], check=True, timeout=1800)
    return prefix / "bin"


def fake_scorer_tool(directory: Path) -> Path:
    """An executable generate_scorer_package in a directory whose name has a space."""
    tool = directory / "fake tools" / "generate_scorer_package"
    tool.parent.mkdir(parents=True)
    tool.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_SCORER}" "$@"\n')
    tool.chmod(0o755)
    return tool


def scorer_calls(log: Path):
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def write_config(path: Path, data: Path, server_url: str, shas: dict, kenlm_dir: Path, tool: Path, **lm) -> Path:
    settings = {"kenlm_bin": str(kenlm_dir), "scorer_tool": str(tool), "memory": "64M", "top_k": TOP_K, **lm}
    lines = [
        f'data_root = "{data}"',
        "workers = 2",
        'datasets = ["common_voice"]',
        "[dataset.common_voice]",
        f'release = "{RELEASE}"',
        "max_duration = 5.0",
        "[lm]",
        *(f"{key} = {json.dumps(value)}" for key, value in settings.items()),
        "[lm.source.wikipedia]",
        f'url = "{server_url}/wiki.txt.xz"',
        f'sha256 = "{shas["wiki"]}"',
        "[lm.source.assemblee_nationale]",
        f'url = "{server_url}/an.txt.gz"',
        'filename = "an.txt.gz"',
        f'sha256 = "{shas["an"]}"',
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


class Run:
    def __init__(self, root: Path, data: Path, config: Path, server: FileServer, shas: dict, kenlm_dir: Path,
                 tool: Path):
        self.root, self.data, self.config, self.server, self.shas = root, data, config, server, shas
        self.kenlm_dir, self.tool = kenlm_dir, tool
        self.scorer_log = root / "scorer-calls.jsonl"

    @property
    def lm(self) -> Path:
        return self.data / "runs" / "fr" / "lm"

    def env(self, **extra):
        return clean_env(FAKE_SCORER_LOG=str(self.scorer_log), **extra)

    def run(self, *args, config=None, check=True, **env):
        return dstrain("run", "-l", "fr", "--config", config or self.config, "--to", "lm", *args,
                       env=self.env(**env), check=check)

    def copy(self, tmp_path: Path, **lm) -> "Run":
        """The finished run in a new directory (its own server files, config and scorer log)."""
        data = tmp_path / "data root"
        shutil.copytree(str(self.data), str(data))
        config = write_config(tmp_path / "dstrain.toml", data, self.server.url, self.shas, self.kenlm_dir,
                              self.tool, **lm)
        return Run(tmp_path, data, config, self.server, dict(self.shas), self.kenlm_dir, self.tool)


@pytest.fixture(scope="module")
def lm_run(cv_archive, kenlm_bin, tmp_path_factory):
    """`dstrain run --to lm` with both French text sources served over HTTP, once for the module."""
    root = tmp_path_factory.mktemp("lm")
    served_dir = root / "served"
    served_dir.mkdir()
    shas = {"wiki": served(served_dir, "wiki.txt.xz", source_text(1)),
            "an": served(served_dir, "an.txt.gz", source_text(2, lines=200))}
    data = root / "data root"
    (data / "sources").mkdir(parents=True)
    shutil.copy(str(cv_archive), str(data / "sources" / cv_archive.name))
    tool = fake_scorer_tool(root)
    with FileServer(served_dir) as server:
        config = write_config(root / "dstrain.toml", data, server.url, shas, kenlm_bin, tool)
        run = Run(root, data, config, server, shas, kenlm_bin, tool)
        run.run()
        yield run


def held_out(data: Path):
    sentences = set()
    for split in ("dev", "test"):
        lines = listing(data / "runs" / "fr" / "clean", split).read_text(encoding="utf-8").splitlines()[1:]
        sentences.update(line.rsplit(",", 1)[1] for line in lines)
    return sentences


def test_sources_are_downloaded_and_verified(lm_run):
    for name, sha in (("commonvoice-fr-lm-0.1-wiki.txt.xz", lm_run.shas["wiki"]), ("an.txt.gz", lm_run.shas["an"])):
        verified = json.loads((lm_run.data / "sources" / (name + ".verified.json")).read_text())
        assert verified["sha256"] == sha and verified["origin"].startswith(lm_run.server.url)
    assert any(r["path"] == "/wiki.txt.xz" for r in lm_run.server.requests)


def test_corpus_is_normalised_like_the_labels(lm_run):
    lines = (lm_run.lm / "corpus.txt").read_text(encoding="utf-8").splitlines()
    assert all(line == FR.normalize(line) for line in lines)
    assert "le chat dort" in lines  # KenLM's <s> markers are gone, the sentence kept
    assert "le chat dort sur le canapé" in lines  # a training transcript
    assert not any("1998" in line or "kiwi" in line or "привет" in line for line in lines)
    record = json.loads((lm_run.data / "runs" / "fr" / "state" / "lm.json").read_text())
    counts = record["counts"]
    assert counts["rejected"] == 4 and counts["outside_alphabet"] == 2  # each source: digits, Cyrillic; kiwi
    assert counts["kept"] == len(lines)


def test_dev_and_test_sentences_never_reach_the_corpus(lm_run):
    lines = set((lm_run.lm / "corpus.txt").read_text(encoding="utf-8").splitlines())
    dev_test = held_out(lm_run.data)
    assert {"le soleil se lève à l'est", "nous mangeons des pommes", "le café est chaud"} <= dev_test
    assert not lines & dev_test
    counts = json.loads((lm_run.data / "runs" / "fr" / "state" / "lm.json").read_text())["counts"]
    # Each source holds the 4 leaked lines: 3 distinct dev/test sentences.
    assert (counts["held_out_lines"], counts["held_out_sentences"], counts["held_out_total"]) == (8, 3, 6)
    report = (lm_run.lm / "report.md").read_text(encoding="utf-8")
    assert "8 corpus lines were left out: they are 3 of the 6 distinct dev/test sentences" in report


def test_vocabulary_is_the_top_k_words(lm_run):
    vocab = (lm_run.lm / f"vocab-{TOP_K}.txt").read_text(encoding="utf-8").split()
    words = (lm_run.lm / "corpus.txt").read_text(encoding="utf-8").split()
    counts = {w: words.count(w) for w in set(words)}
    assert len(vocab) == TOP_K
    assert vocab == sorted(counts, key=lambda w: (-counts[w], w))[:TOP_K]


def test_real_kenlm_model_prefers_real_sentences_over_shuffled_words(lm_run):
    import kenlm as kenlm_python

    assert not (lm_run.lm / "lm.arpa").exists()  # deleted once the binary exists
    model = kenlm_python.Model(str(lm_run.lm / "lm.binary"))
    assert model.order == 4
    vocab = set((lm_run.lm / f"vocab-{TOP_K}.txt").read_text(encoding="utf-8").split())
    rng = random.Random(7)
    sentences = [line for line in (lm_run.lm / "corpus.txt").read_text(encoding="utf-8").splitlines()
                 if len(line.split()) >= 5 and set(line.split()) <= vocab]
    assert len(sentences) > 50
    for sentence in rng.sample(sentences, 50):
        words = sentence.split()
        shuffled = words[:]
        while shuffled == words:
            rng.shuffle(shuffled)
        assert model.score(sentence) > model.score(" ".join(shuffled)) + 1, (sentence, shuffled)


def test_scorer_gets_exact_arguments_even_with_spaces_in_paths(lm_run):
    calls = scorer_calls(lm_run.scorer_log)
    assert len(calls) == 1
    argv = calls[0]
    lm = lm_run.lm
    package = Path(argv[argv.index("--package") + 1])
    assert package.parent == lm and package.name.startswith(".kenlm.scorer.tmp")
    assert argv == [
        "--alphabet", str(lm_run.data / "runs" / "fr" / "alphabet.txt"), "--force_bytes_output_mode", "false",
        "--lm", str(lm / "lm.binary"), "--vocab", str(lm / f"vocab-{TOP_K}.txt"), "--package", str(package),
        "--default_alpha", "0.931289039105002", "--default_beta", "1.1834137581510284",
    ]
    assert " " in str(lm_run.data) and " " in str(lm_run.tool)
    scorer_file = (lm / "kenlm.scorer").read_bytes()
    assert scorer_file.startswith((lm / "lm.binary").read_bytes())


def test_rerun_with_unchanged_inputs_does_nothing(lm_run):
    before = {p: p.stat().st_mtime_ns for p in lm_run.data.rglob("*") if p.is_file() and "logs" not in p.parts}
    proc = lm_run.run()
    assert "✓ lm        up to date" in proc.stderr
    changed = [p for p, m in before.items() if p.stat().st_mtime_ns != m and p.name not in (
        "check.json", "config.json")]
    assert changed == []
    assert len(scorer_calls(lm_run.scorer_log)) == 1


def test_force_rebuilds_every_step(lm_run, tmp_path):
    run = lm_run.copy(tmp_path)
    proc = dstrain("run", "-l", "fr", "--config", run.config, "--only", "lm", "--force", "lm", env=run.env())
    assert "▶ lm" in proc.stderr and "up to date" not in proc.stderr.split("▶ lm", 1)[1]
    assert len(scorer_calls(run.scorer_log)) == 1


def test_changed_text_source_rebuilds_corpus_model_and_scorer(lm_run, tmp_path):
    run = lm_run.copy(tmp_path)
    served_dir = run.server.root
    text = source_text(1) + "Le marin regarde la mer depuis le bateau blanc.\n"
    run.shas["wiki"] = served(served_dir, "wiki2.txt.xz", text)
    old_record = json.loads((run.data / "runs" / "fr" / "state" / "lm.json").read_text())
    config = run.config.read_text().replace("/wiki.txt.xz", "/wiki2.txt.xz").replace(
        lm_run.shas["wiki"], run.shas["wiki"])
    run.config.write_text(config)
    status = dstrain("status", "-l", "fr", "--config", run.config, env=run.env()).stdout
    assert any(line.split()[:2] == ["lm", "stale"] for line in status.splitlines()), status
    binary_before = (run.lm / "lm.binary").stat().st_mtime_ns
    proc = run.run()
    assert "▶ lm" in proc.stderr and "✓ alphabet  up to date" in proc.stderr
    assert "le marin regarde la mer depuis le bateau blanc" in (run.lm / "corpus.txt").read_text(encoding="utf-8")
    assert (run.lm / "lm.binary").stat().st_mtime_ns != binary_before
    assert len(scorer_calls(run.scorer_log)) == 1
    record = json.loads((run.data / "runs" / "fr" / "state" / "lm.json").read_text())
    assert record["outputs"] != old_record["outputs"]  # what makes every later stage stale


def test_every_unreachable_text_is_named_with_where_it_goes_and_how_to_skip_it(lm_run, tmp_path):
    run = lm_run.copy(tmp_path)
    for name in ("commonvoice-fr-lm-0.1-wiki.txt.xz", "an.txt.gz"):
        (run.data / "sources" / name).unlink()
    run.config.write_text(run.config.read_text().replace("/wiki.txt.xz", "/gone.txt.xz").replace(
        "/an.txt.gz", "/gone.txt.gz"))
    proc = run.run(check=False)
    assert proc.returncode == 1
    assert "2 of 2 language-model texts could not be obtained" in proc.stderr
    for name in ("commonvoice-fr-lm-0.1-wiki.txt.xz", "an.txt.gz"):
        assert "A copy you get yourself goes at exactly this path:\n    {}".format(
            run.data / "sources" / name) in proc.stderr
    assert "set lm.source.assemblee_nationale.url to a mirror" in proc.stderr
    assert 'set sources = [] under [lm] in your config (or DSTRAIN_LM__SOURCES="")' in proc.stderr
    assert "stage download failed" in proc.stderr  # got with the datasets, before any import
    assert "▶ import" not in proc.stderr
    # And by the lm stage itself, run alone.
    proc = dstrain("run", "-l", "fr", "--config", run.config, "--only", "lm", env=run.env(), check=False)
    assert proc.returncode == 1 and "stage lm failed" in proc.stderr
    assert "2 of 2 language-model texts could not be obtained" in proc.stderr


def test_changed_model_parameter_rebuilds_the_model_not_the_corpus(lm_run, tmp_path):
    run = lm_run.copy(tmp_path, order=3)
    corpus_before = (run.lm / "corpus.txt").stat().st_mtime_ns
    proc = run.run()
    assert "corpus: up to date" in proc.stderr
    assert (run.lm / "corpus.txt").stat().st_mtime_ns == corpus_before
    import kenlm as kenlm_python

    assert kenlm_python.Model(str(run.lm / "lm.binary")).order == 3
    assert len(scorer_calls(run.scorer_log)) == 1


def test_changed_alpha_rebuilds_only_the_scorer(lm_run, tmp_path):
    run = lm_run.copy(tmp_path, alpha=0.5, beta=2)
    binary_before = (run.lm / "lm.binary").stat().st_mtime_ns
    proc = run.run()
    assert "corpus: up to date" in proc.stderr and "model: up to date" in proc.stderr
    assert (run.lm / "lm.binary").stat().st_mtime_ns == binary_before
    (argv,) = scorer_calls(run.scorer_log)
    assert argv[argv.index("--default_alpha") + 1] == "0.5" and argv[argv.index("--default_beta") + 1] == "2.0"


def test_missing_scorer_tool_names_the_setting_and_how_to_build_it(lm_run, tmp_path, monkeypatch):
    run = lm_run.copy(tmp_path, alpha=0.6)
    config = run.config.read_text().replace(str(run.tool), str(tmp_path / "nowhere" / "generate_scorer_package"))
    run.config.write_text(config)
    proc = run.run(check=False)
    assert proc.returncode != 0
    assert "lm.scorer_tool" in proc.stderr and "docker/build_scorer_tool.sh" in proc.stderr
    assert "nowhere/generate_scorer_package" in proc.stderr
    monkeypatch.setenv("PATH", str(tmp_path))  # and not configured: searched on PATH only
    with pytest.raises(ConfigError, match="build_scorer_tool.sh") as err:
        scorer.find(None)
    assert "lm.scorer_tool" in str(err.value)


def test_scorer_tool_failing_with_status_zero_is_caught(tmp_path, monkeypatch):
    tool = fake_scorer_tool(tmp_path)
    monkeypatch.setenv("FAKE_SCORER_LOG", str(tmp_path / "calls.jsonl"))
    monkeypatch.setenv("FAKE_SCORER_SILENT_FAILURE", "1")
    for name, text in (("alphabet.txt", " \na\n"), ("lm.binary", "binary"), ("vocab.txt", "a\n")):
        (tmp_path / name).write_text(text)
    with pytest.raises(StageError, match="wrote no scorer package") as err:
        scorer.build(tool, tmp_path / "alphabet.txt", tmp_path / "lm.binary", tmp_path / "vocab.txt",
                     tmp_path / "kenlm.scorer", 1.0, 2.0)
    assert "Invalid magic" in str(err.value)
    assert not (tmp_path / "kenlm.scorer").exists()


def test_bytes_output_mode_passes_no_alphabet(tmp_path, monkeypatch):
    tool = fake_scorer_tool(tmp_path)
    monkeypatch.setenv("FAKE_SCORER_LOG", str(tmp_path / "calls.jsonl"))
    (tmp_path / "lm.binary").write_text("binary")
    (tmp_path / "vocab.txt").write_text("a b\n")
    scorer.build(tool, None, tmp_path / "lm.binary", tmp_path / "vocab.txt", tmp_path / "kenlm.scorer", 1.0, 2.0)
    (argv,) = scorer_calls(tmp_path / "calls.jsonl")
    assert "--alphabet" not in argv and argv[:2] == ["--force_bytes_output_mode", "true"]


def test_the_fake_scorer_tool_refuses_unknown_flags(tmp_path, monkeypatch):
    tool = fake_scorer_tool(tmp_path)
    monkeypatch.setenv("FAKE_SCORER_LOG", str(tmp_path / "calls.jsonl"))
    proc = subprocess.run([str(tool), "--lm", "x", "--trie", "y"], capture_output=True, text=True)
    assert proc.returncode != 0 and "unrecognised option '--trie'" in proc.stderr


# Corpus preparation on its own.

def _rules(**extra):
    return corpus.Rules(normalize=FR.normalize, **extra)


def _build(tmp_path, path, rules, workers=2, block_bytes=corpus.BLOCK_BYTES):
    out = tmp_path / "corpus.txt"
    summary = corpus.build([("text", corpus.file_blocks(path, None, block_bytes))], out, rules, workers)
    return out.read_text(encoding="utf-8"), summary


@pytest.mark.parametrize("suffix", [".txt", ".gz", ".bz2", ".xz"])
def test_every_compression_gives_the_same_corpus_whatever_the_blocks_and_workers(tmp_path, suffix):
    text = source_text(3).encode("utf-8")
    compress = {".txt": bytes, ".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress}[suffix]
    path = tmp_path / ("text" + suffix)
    path.write_bytes(compress(text))
    expected = "".join(n + "\n" for n in map(FR.normalize, source_text(3).splitlines()) if n)
    one, _ = _build(tmp_path, path, _rules(), workers=1)
    many, summary = _build(tmp_path, path, _rules(), workers=2, block_bytes=97)
    assert one == many == expected.replace("s le chat dort s", "le chat dort")
    assert summary.per_source["text"]["lines"] == len(source_text(3).splitlines())


def test_undecodable_lines_are_counted_and_the_rest_kept(tmp_path):
    path = tmp_path / "text.txt"
    path.write_bytes("Première ligne.\n".encode() + b"caf\xe9 cr\xe8me\n" + "Dernière ligne.\n".encode())
    text, summary = _build(tmp_path, path, _rules())
    assert text == "première ligne\ndernière ligne\n"
    assert summary.per_source["text"]["undecodable"] == 1 and summary.per_source["text"]["lines"] == 3


@pytest.mark.parametrize("block_bytes", [corpus.BLOCK_BYTES, 97])
def test_a_line_bomb_in_a_text_is_one_line_too_long_never_held(tmp_path, block_bytes):
    """Issue 18, class 5: 3 kB of .xz that inflate to 64 MB without a newline, between two sentences.  It is cut
    as it streams (no block holds more than a block and the line limit), counted too_long, and left out."""
    path = tmp_path / "text.txt.xz"
    path.write_bytes(lzma.compress(b"Bonjour le monde.\n" + b"a" * (64 << 20) + b"\nAu revoir.\n" + b"b" * 5000))
    assert path.stat().st_size < 20_000
    largest = max(map(len, corpus.file_blocks(path, None, block_bytes)))
    assert largest <= block_bytes + corpus.MAX_LINE + 1
    text, summary = _build(tmp_path, path, _rules(), block_bytes=block_bytes)
    assert text == "bonjour le monde\nau revoir\n" + "b" * 5000 + "\n"
    assert summary.per_source["text"]["too_long"] == 1 and summary.per_source["text"]["lines"] == 4


def test_english_compatible_and_bytes_output_mode_transform_the_lines(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text("Un Été à Noël.\n", encoding="utf-8")
    assert _build(tmp_path, path, _rules(transform=to_english))[0] == "un ete a noel\n"
    assert _build(tmp_path, path, _rules(codepoints=True))[0] == "u n é t é à n o ë l\n"
    text, summary = _build(tmp_path, path, _rules(allowed=" abcdefghijklmnopqrstuvwxyz"))
    assert text == "" and summary.per_source["text"]["outside_alphabet"] == 1


def test_normalize_crash_names_the_line(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text("bonjour\nboom\n", encoding="utf-8")

    with pytest.raises(StageError, match="'boom'"):
        _build(tmp_path, path, corpus.Rules(normalize=_explode), workers=1)
    assert not (tmp_path / "corpus.txt").exists()


def _explode(line):
    if line == "boom":
        raise ValueError("no")
    return line


# KenLM command lines and their settings.

def test_lmplz_and_build_binary_command_lines():
    lm = LmSettings()
    lmplz = kenlm.lmplz_command(Path("/k/lmplz"), lm, Path("/c.txt"), Path("/a.arpa"), Path("/t"))
    assert lmplz == ["/k/lmplz", "--order", "4", "--memory", "80%", "--temp_prefix", "/t/", "--text", "/c.txt",
                     "--arpa", "/a.arpa", "--prune", "0", "0", "1", "--discount_fallback"]
    assert kenlm.build_binary_command(Path("bb"), lm, Path("a"), Path("b")) == [
        "bb", "-a", "255", "-q", "8", "-v", "trie", "a", "b"]
    assert kenlm.filter_command(Path("f"), Path("a b"), Path("o")) == ["f", "single", "model:a b", "o"]


def test_bad_lm_settings_are_refused_before_any_work():
    with pytest.raises(ConfigError, match="lm.prune: .*never decrease"):
        resolve(environ={"DSTRAIN_LM__PRUNE": "0 2 1"})
    with pytest.raises(ConfigError, match="lm.prune: .*5 thresholds but order is 4"):
        resolve(environ={"DSTRAIN_LM__PRUNE": "0|0|1|1|1"})
    with pytest.raises(ConfigError, match="lm.sources: no text source 'nope'"):
        resolve(environ={"DSTRAIN_LM__SOURCES": "wikipedia,nope"})
    config = resolve(environ={"DSTRAIN_LM__SOURCE__MINE__URL": "https://example.org/mine.txt.bz2"})
    mine = config.lm_sources[-1]
    assert (mine.name, mine.filename) == ("mine", "mine.txt.bz2")
    assert [s.name for s in config.lm_sources[:2]] == ["wikipedia", "assemblee_nationale"]


def test_kenlm_tools_missing_names_the_setting(tmp_path):
    with pytest.raises(ConfigError, match="lm.kenlm_bin.*build_kenlm.sh"):
        kenlm.find_tools(tmp_path)


def test_kenlm_build_script_reuses_its_cache(kenlm_bin, tmp_path):
    proc = subprocess.run(["bash", str(REPO / "docker" / "build_kenlm.sh"), str(tmp_path)], capture_output=True,
                          text=True, check=True, timeout=60)
    assert "building" not in proc.stderr
    for tool in kenlm.TOOLS:
        assert (tmp_path / "bin" / tool).read_bytes() == (kenlm_bin / tool).read_bytes()


def test_the_tools_commands_and_output_go_to_the_stage_log_and_to_the_console_only_with_verbose(lm_run, tmp_path):
    run = lm_run.copy(tmp_path, order=3)  # a new order: the model is built again
    quiet = run.run()
    # The commands too: the console has the stage's own lines, the stage log everything.
    assert "$ " + str(run.kenlm_dir / "lmplz") not in quiet.stderr and "Counting and sorting" not in quiet.stderr
    log = (run.data / "runs" / "fr" / "logs" / "lm.log").read_text()
    assert "$ " + str(run.kenlm_dir / "lmplz") in log and "Counting and sorting" in log
    loud = dstrain("-v", "run", "-l", "fr", "--config", run.config, "--to", "lm", "--force", "lm", env=run.env())
    assert "Counting and sorting" in loud.stderr
