"""lm: the language model and DeepSpeech's scorer, from the language's texts and the training transcripts.

Three steps, each with its own record in ``lm/``, so a changed alpha rebuilds only the scorer and a
changed pruning only the model, not hours of corpus work:
- corpus: get the text sources (the download stage got them already), normalise every line like the labels,
  keep dev/test sentences out, count the words (``corpus.txt``, ``vocab-<k>.txt``, ``report.md``);
- model: KenLM (``lm.binary``);
- scorer: ``kenlm.scorer``.
"""
import logging
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from tqdm import tqdm

from dstrain.pipeline.atomic import read_json, write_json, write_text
from dstrain.pipeline.deepspeech import scorer
from dstrain.pipeline.digests import digest
from dstrain.pipeline.errors import StageError
from dstrain.pipeline.formats.alphabet import read_labels
from dstrain.pipeline.formats.deepspeech_csv import read_samples
from dstrain.pipeline.language import TextSource, to_english
from dstrain.pipeline.lm import corpus, kenlm, texts
from dstrain.pipeline.sources.fetch import SourceError, verified_sha256

log = logging.getLogger("dstrain")
TRANSCRIPTS = "training transcripts"


def inputs(ctx) -> dict:
    lm = ctx.config.settings.lm
    return {
        # Not the tool locations nor the sorting memory: they do not change the model.
        "lm": lm.model_dump(mode="json", exclude={"kenlm_bin", "scorer_tool", "memory"}),
        "normalizer": ctx.language.normalizer_fingerprint(),
        "english_compatible": ctx.config.settings.english_compatible,
        "sources": {s.name: [s.url, s.sha256, verified_sha256(ctx.paths.sources / s.filename)]
                    for s in ctx.config.lm_sources},
    }


def _step(ctx, name: str, key: str, outputs: List[Path]) -> Optional[dict]:
    """The step's record if it is done with this key and its outputs are still there."""
    record = read_json(ctx.paths.lm_step(name))
    if ctx.step_done("lm", record, key) and all(path.exists() for path in outputs):
        log.info("%s: up to date", name)
        return record
    return None


def run(ctx) -> dict:
    lm = ctx.config.settings.lm
    paths = ctx.paths
    sources = ctx.config.lm_sources
    shas = _obtain_all(ctx, sources)

    corpus_key = digest({
        "sources": shas, "normalizer": ctx.language.normalizer_fingerprint(),
        "english_compatible": ctx.config.settings.english_compatible,
        "clean": (ctx.record("clean") or {}).get("outputs"),
        "alphabet": (ctx.record("alphabet") or {}).get("outputs"),
        "lm": lm.model_dump(mode="json", include={"train_transcripts", "exclude_held_out", "top_k",
                                                  "bytes_output_mode"}),
    })
    vocab = paths.lm_vocab(lm.top_k)
    record = _step(ctx, "corpus", corpus_key, [paths.lm_corpus, vocab])
    if record is None:
        counts = _build_corpus(ctx, sources, vocab)
        record = {"fingerprint": corpus_key, "counts": counts}
        write_json(paths.lm_step("corpus"), record)
    counts = record["counts"]

    model_key = digest({"corpus": corpus_key, "lm": lm.model_dump(
        mode="json", include={"order", "prune", "discount_fallback", "q_bits", "a_bits"})})
    if _step(ctx, "model", model_key, [paths.lm_binary]) is None:
        kenlm.build_model(kenlm.find_tools(lm.kenlm_bin), lm, paths.lm_corpus, vocab, paths.lm_arpa,
                          paths.lm_filtered_arpa, paths.lm_binary)
        write_json(paths.lm_step("model"), {"fingerprint": model_key})
    log.info("language model: %s (%.1f MB)", paths.lm_binary, paths.lm_binary.stat().st_size / 1e6)

    scorer_key = digest({"model": model_key, "alpha": lm.alpha, "beta": lm.beta,
                         "bytes_output_mode": lm.bytes_output_mode})
    if _step(ctx, "scorer", scorer_key, [paths.scorer]) is None:
        scorer.package(lm, paths, lm.alpha, lm.beta, paths.scorer)
        write_json(paths.lm_step("scorer"), {"fingerprint": scorer_key})
    log.info("scorer: %s (alpha %s, beta %s)", paths.scorer, lm.alpha, lm.beta)
    return {"counts": counts, "outputs": scorer_key}


def _obtain_all(ctx, sources: Sequence[TextSource]) -> Dict[str, str]:
    """Every source's verified sha256 (lm/texts.py)."""
    shas, failures = texts.obtain_all(ctx.paths.sources, sources)
    if failures:
        raise SourceError(texts.failure(failures, sources))
    return shas


def _build_corpus(ctx, sources: Sequence[TextSource], vocab: Path) -> Dict[str, float]:
    lm = ctx.config.settings.lm
    paths = ctx.paths
    held_out = frozenset()
    if lm.exclude_held_out:
        held_out = frozenset(s.transcript for split in ("dev", "test")
                             for s in read_samples(paths.clean_set(split).listing))
    rules = corpus.Rules(
        normalize=ctx.language.normalize,
        transform=to_english if ctx.config.settings.english_compatible else None,
        allowed=None if lm.bytes_output_mode else "".join(read_labels(paths.alphabet)),
        held_out=held_out,
        codepoints=lm.bytes_output_mode,
    )
    files = [paths.sources / s.filename for s in sources]
    with tqdm(total=sum(f.stat().st_size for f in files), unit="B", unit_scale=True, desc="lm corpus") as bar:
        inputs = [(s.name, corpus.file_blocks(f, bar)) for s, f in zip(sources, files)]
        if lm.train_transcripts:
            transcripts = (s.transcript for s in read_samples(paths.clean_set("train").listing))
            inputs.append((TRANSCRIPTS, corpus.line_blocks(transcripts)))
        summary = corpus.build(inputs, paths.lm_corpus, rules, ctx.config.workers)
    vocabulary = corpus.top_words(summary.words, lm.top_k)
    counts = {
        "lines": summary.total("lines"),
        "kept": summary.total("kept"),
        "rejected": summary.total("rejected"),
        "outside_alphabet": summary.total("outside_alphabet"),
        "held_out_lines": summary.total("held_out"),
        "held_out_sentences": len(summary.held_out_found),
        "held_out_total": len(held_out),
        "words": sum(summary.words.values()),
        "vocabulary": len(summary.words),
        "vocab_kept": len(vocabulary),
        "vocab_coverage": round(sum(n for _, n in vocabulary) / max(sum(summary.words.values()), 1), 6),
    }
    write_text(paths.lm_report, _report(ctx, summary, counts))
    if not counts["kept"]:
        raise StageError("the language-model corpus is empty: no line of {} survived; see {}".format(
            ", ".join(summary.per_source) or "(no source, no transcripts)", paths.lm_report))
    write_text(vocab, "".join(word + "\n" for word, _ in vocabulary))
    log.info("corpus: %d of %d lines kept; %d lines (%d of %d dev/test sentences) left out; %d words, "
             "%d distinct, top %d kept", counts["kept"], counts["lines"], counts["held_out_lines"],
             counts["held_out_sentences"], counts["held_out_total"], counts["words"], counts["vocabulary"],
             counts["vocab_kept"])
    return counts


def _report(ctx, summary: corpus.Summary, counts: Dict[str, float]) -> str:
    lm = ctx.config.settings.lm
    columns = corpus.STAT_NAMES
    lines = [
        f"# Language-model corpus for run `{ctx.config.run_name}` ({ctx.language.name})",
        "",
        "| source | " + " | ".join(columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for name, stats in summary.per_source.items():
        lines.append(f"| {name} | " + " | ".join(str(stats[c]) for c in columns) + " |")
    lines += [
        "",
        "`rejected`: the language's normalize refused the line (digits, another script, ...). "
        "`outside_alphabet`: a character the model cannot write. `held_out`: the sentence is in the dev or "
        "test set. `too_long`: over a megabyte without a newline, left out unread.",
        "",
        "## Sentences of the dev and test sets",
        "",
    ]
    if lm.exclude_held_out:
        lines.append("{} corpus lines were left out: they are {} of the {} distinct dev/test sentences. A model "
                     "that had read them would make the test look better than it is.".format(
                         counts["held_out_lines"], counts["held_out_sentences"], counts["held_out_total"]))
    else:
        lines.append("Not checked (`lm.exclude_held_out = false`): the test results may look better than they are.")
    lines += [
        "",
        "## Vocabulary",
        "",
        "{} words, {} distinct. The {} most frequent are kept (`lm.top_k` = {}); they cover {:.2f}% of the "
        "words.".format(counts["words"], counts["vocabulary"], counts["vocab_kept"], lm.top_k,
                        100.0 * counts["vocab_coverage"]),
        "",
    ]
    return "\n".join(lines)
