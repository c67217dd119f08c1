"""The model card: the README.md of a packaged model, for the people who will use it."""
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from dstrain.pipeline.atomic import read_json
from dstrain.pipeline.deepspeech.decoding import Decoder
from dstrain.pipeline.language import Language, TextSource
from dstrain.pipeline.paths import DataRoot, ImportedDataset
from dstrain.pipeline.reports.evaluation import model_facts
from dstrain.pipeline.settings import TrainSettings


def _rate(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.1%}"


def _hours(manifest: Dict[str, Any], split: str) -> str:
    hours = (manifest.get("hours") or {}).get(split)
    return "-" if hours is None else f"{hours:.2f}"


@dataclass(frozen=True)
class Subject:
    """What the card tells of the model besides its files, metrics and decoder."""

    language: Language
    #: train.*: the hyperparameters the card lists.
    train: TrainSettings
    #: Each dataset's key and its import's manifest (see ``datasets``).
    datasets: Tuple[Tuple[str, Dict[str, Any]], ...]
    #: The scorer's texts (the run's lm sources), and lm.train_transcripts.
    lm_sources: Tuple[TextSource, ...]
    train_transcripts: bool


def datasets(paths: DataRoot, keys: Sequence[str]) -> Tuple[Tuple[str, Dict[str, Any]], ...]:
    """Each dataset's key and the manifest of its import under the data root ({} when it has none)."""
    return tuple((key, read_json(ImportedDataset(paths.imported(key)).manifest) or {}) for key in keys)


def language_model(subject: Subject) -> List[str]:
    """The texts the scorer was built from, each with its licence: the scorer ships, so they bind its users."""
    lines = ["", "## Language model (scorer) texts", "", "| text | source | licence |", "|---|---|---|"]
    for source in subject.lm_sources:
        lines.append(f"| {source.name} | {source.url or source.filename + ' (placed by hand)'} | {source.licence} |")
    if subject.train_transcripts:
        lines.append("| training transcripts | the training datasets above | the datasets' licences |")
    if not subject.lm_sources and not subject.train_transcripts:
        lines.append("| - | - | - |")
    return lines


def render(subject: Subject, files: Dict[str, List[str]], metrics: Dict[str, Any], decoder: Decoder) -> str:
    """``files``: each package file and what it holds."""
    has_scorer = decoder.scorer is not None
    meta = subject.language.model_metadata()
    t = subject.train
    lang = subject.language.code
    training = metrics.get("training") or {}
    test = metrics.get("test") or {}
    lines = [
        f"# {meta.model_name} {meta.model_version}: speech recognition for {subject.language.name}",
        "",
        meta.description,
        "",
        "| | |",
        "|---|---|",
        f"| language | {meta.language} |",
        f"| author | {meta.author} |",
        f"| contact | {meta.contact_info} |",
        f"| licence | {meta.license} |",
        f"| engine | DeepSpeech {meta.min_ds_version} to {meta.max_ds_version} (trained with 0.9.3) |",
        "",
        "## Files",
        "",
        "| file | holds |",
        "|---|---|",
    ]
    lines += [f"| `{name}` | {', '.join(f'`{m}`' for m in members) or '-'} |" for name, members in files.items()]
    lines += ["", "Check them with `sha256sum -c SHA256SUMS`."]
    if not has_scorer:
        lines += ["", "**No scorer (language model) is included**: this run did not build one. The models work "
                      "without it, but write far more wrong words."]

    lines += ["", "## Training data", "", "| dataset | source | licence | train hours | dev hours | test hours |",
              "|---|---|---|---:|---:|---:|"]
    for key, manifest in subject.datasets:
        source = manifest.get("release") or (manifest.get("source") or {}).get("url") or "-"
        lines.append("| {} | {} | {} | {} | {} | {} |".format(
            key, source, manifest.get("licence", "unknown"), _hours(manifest, "train"),
            _hours(manifest, "dev"), _hours(manifest, "test")))
    lines += ["", "Hours as imported, before dstrain's cleaning removed duplicates and sentences shared with the "
                  "test set."]
    if has_scorer:
        lines += language_model(subject)

    if test:
        lines += ["", "## Results", "", test.get("note", ""), "", "| test set | clips | WER | CER |",
                  "|---|---:|---:|---:|"]
        overall = test["overall"]
        lines.append(f"| all | {overall['clips']} | {_rate(overall['wer'])} | {_rate(overall['cer'])} |")
        for name, result in test.get("datasets", {}).items():
            lines.append(f"| {name} | {result['clips']} | {_rate(result['wer'])} | {_rate(result['cer'])} |")
        lines += ["", "WER: share of words wrong; CER: share of characters wrong. Lower is better."]

    mode = training.get("mode") or {}
    lines += ["", "## Training", ""]
    if mode:
        lines.append("{}: {}.".format(mode["mode"].replace("_", " ").capitalize(), mode["reason"]))
        lines.append("")
    lines += [f"{training.get('epochs_done', 0)} epochs (numbered from 1)"
              + (", stopped early." if training.get("stopped_early") else "."), ""]
    lines += model_facts(training)
    lines += ["", "| hyperparameter | value |", "|---|---|"]
    for name in ("n_hidden", "epochs", "learning_rate", "dropout_rate", "train_batch_size", "dev_batch_size",
                 "early_stop", "es_epochs", "es_min_delta", "reduce_lr_on_plateau", "automatic_mixed_precision",
                 "train_cudnn", "augment"):
        value = getattr(t, name)
        if name in ("train_batch_size", "dev_batch_size") and training.get(name) not in (None, value):
            value = f"{training[name]} (halved from {value} after running out of memory)"
        elif name == "augment":
            value = ", ".join(value) or "none"
        lines.append(f"| {name} | {value} |")
    if has_scorer:
        found = " (found on the dev set by dstrain's optimize stage)" if decoder.origin == "optimized" else ""
        lines.append(f"| scorer alpha, beta | {decoder.alpha:g}, {decoder.beta:g}{found} |")

    scorer_arg = " --scorer kenlm.scorer" if has_scorer else ""
    lines += [
        "", "## Using the model", "",
        "Audio must be 16 kHz, mono, 16-bit WAV (`sox in.mp3 -r 16000 -c 1 -b 16 clip.wav` converts).", "",
        "### On a computer (Python)", "",
        "```sh",
        "pip install deepspeech-tflite==0.9.3",
        f"tar xJf model_tflite_{lang}.tar.xz",
        f"deepspeech --model output_graph.tflite{scorer_arg} --audio clip.wav",
        "```", "",
        f"With `model_tensorflow_{lang}.tar.xz`, use `pip install deepspeech==0.9.3` (or `deepspeech-gpu==0.9.3` "
        "with CUDA 10.1) and `--model` the `.pbmm` (or `.pb`) file. In Python code:", "",
        "```python",
        "import wave, numpy as np, deepspeech",
        "model = deepspeech.Model('output_graph.tflite')",
    ]
    if has_scorer:
        lines.append("model.enableExternalScorer('kenlm.scorer')")
    lines += [
        "with wave.open('clip.wav') as w:",
        "    audio = np.frombuffer(w.readframes(w.getnframes()), np.int16)",
        "print(model.stt(audio))",
        "```", "",
        "### On Android", "",
        "Use the TFLite model with DeepSpeech's `libdeepspeech` 0.9.3 AAR (Android 7 to 11). It was published on "
        "JCenter as `deepspeech.mozilla.org:libdeepspeech:0.9.3@aar`; JCenter has closed, so take the AAR from a "
        "mirror you trust or build it (DeepSpeech's doc/BUILDING.rst), and add it to your app. Copy "
        "`output_graph.tflite`" + (" and `kenlm.scorer`" if has_scorer else "") + " to the device, then:", "",
        "```java",
        "import org.deepspeech.libdeepspeech.DeepSpeechModel;",
        "DeepSpeechModel model = new DeepSpeechModel(modelDir + \"/output_graph.tflite\");",
    ]
    if has_scorer:
        lines.append("model.enableExternalScorer(modelDir + \"/kenlm.scorer\");")
    lines += [
        "String text = model.stt(samples, samples.length);  // short[]: 16 kHz mono 16-bit",
        "model.freeModel();",
        "```", "",
        "### Training further", "",
        f"`checkpoint_{lang}.tar.xz` holds the model's checkpoint with its alphabet. Unpack it and set "
        "`train.source_checkpoint` to that directory in dstrain: the same alphabet fine-tunes it, another one "
        "re-learns its output layer (transfer learning).", "",
    ]
    return "\n".join(lines)
