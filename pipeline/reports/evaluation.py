"""The evaluation report: the loss curve, the scores, samples, and advice in plain words.

One document, rendered twice: Markdown (``report.md``, beside ``loss.png``) and
self-contained HTML (``report.html``, the picture embedded), so either can be
sent on its own.
"""
import base64
import html
import math
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple
from urllib.parse import quote

from dstrain.pipeline.atomic import temporary_path, write_text
from dstrain.pipeline.deepspeech import batches

#: Above this share of wrong characters the acoustic model, not the scorer, is the weak part.
HIGH_CER = 0.15
#: WER this many times the CER (or more) means letters are right but words wrong: the scorer's job.
WORDS_PER_CHAR_ERROR = 3.0
#: A training loss that fell by less than this share over the run "did not move".
FLAT = 0.05
#: Fewer training steps than this in a whole run move the loss little at DeepSpeech's learning rates: when the
#: loss did not move, that, not the rate, is what to change first.
FEW_STEPS = 200

Block = Tuple[Any, ...]


class Clip(str):
    """A table cell naming an audio clip: a link in Markdown, a player in HTML; the text is the link's target,
    relative to the report."""


def _series(training: Dict[str, Any], key: str) -> List[Optional[float]]:
    return [e.get(key) for e in training.get("epochs", [])]


def advice(training: Dict[str, Any], test: Dict[str, Any]) -> List[str]:
    tips = []
    wer, cer = test["overall"]["wer"], test["overall"]["cer"]
    if test["scorer"] is None:
        tips.append("No scorer was used, so every word had to be spelt right from the sound alone. Build the "
                    "language model (the lm stage) and evaluate again: the WER usually drops a lot.")
    if cer is not None and cer >= HIGH_CER:
        tips.append(f"Many characters are wrong (CER {cer:.1%}): the acoustic model or its data is the weak part, "
                    "not the language model. More hours of speech help most; listen to the worst samples below "
                    "to check that the audio matches its sentence; or start from a trained model "
                    "(transfer learning, train.source_checkpoint).")
    elif wer is not None and cer is not None and wer >= 0.1 and wer >= WORDS_PER_CHAR_ERROR * cer:
        tune = ("" if test.get("alpha_beta") == "optimized" else
                " Let the optimize stage find the alpha and beta that suit this model (optimize.enabled = true).")
        tips.append(f"Words are often wrong (WER {wer:.1%}) although few characters are (CER {cer:.1%}): the "
                    "sounds are heard but the words are not chosen well, which is the scorer's part. Give the "
                    "language model more, or more fitting, text in the language." + tune)
    train = _series(training, "train_loss")
    dev = _series(training, "dev_loss")
    epochs = [e["epoch"] for e in training.get("epochs", [])]
    if batches.took_no_step(training.get("epochs", [])):
        tips.append("No training step was taken: each batch was larger than the training set, and DeepSpeech drops "
                    "the last incomplete batch of every epoch, so the model learnt nothing (its loss of 0.00 means "
                    "no step, not a perfect model). Lower train.train_batch_size below the number of training "
                    "clips; dstrain itself lowers it to the set's size when it trains again.")
        return tips
    if any(v is None for v in train + dev):
        tips.append("Some losses were infinite or not a number: the learning rate may be too high, or some clips "
                    "do not match their sentence (DeepSpeech names such files in the train log).")
    known = [(e, t, d) for e, t, d in zip(epochs, train, dev) if t is not None and d is not None]
    if len(known) >= 3:
        best = min(range(len(known)), key=lambda i: known[i][2])
        after = known[best + 1:]
        if (len(after) >= 2 and after[-1][2] > known[best][2] * 1.05 and after[-1][1] < known[best][1]
                and after[-1][2] > after[-2][2]):
            tips.append(f"The dev loss rose after epoch {known[best][0]} while the training loss kept falling: "
                        "the model is learning the training clips by heart (overfitting). Raise "
                        "train.dropout_rate, keep train.early_stop on (a smaller train.es_epochs stops sooner), "
                        "or add more varied data.")
        if known[-1][1] >= known[0][1] * (1 - FLAT):
            tips.append(_flat(training, known[0][1], known[-1][1]))
    if not tips:
        tips.append("Nothing stands out. More hours of speech and more text for the language model are the "
                    "surest ways to lower both numbers.")
    return tips


def _flat(training: Dict[str, Any], first: float, last: float) -> str:
    """Why the training loss hardly moved: too few steps, when the account counted them, else the learning rate."""
    moved = f"The training loss hardly moved ({first:.1f} at first, {last:.1f} at the end)"
    steps = [e.get("steps") for e in training.get("epochs", [])]
    if steps and None not in steps and sum(steps) < FEW_STEPS:
        fitted = (training.get("batches") or {}).get("train") or {}
        cut = (f": {fitted['clips']} clips in batches of {fitted['used']}" if fitted.get("clips") else "")
        return (f"{moved} over only {sum(steps)} training steps in all ({steps[-1]} per epoch{cut}), too few for "
                "the model to learn much. A smaller train.train_batch_size gives more steps per epoch, more epochs "
                "more in all; more training clips help most.")
    return (f"{moved}: the learning rate is likely wrong. Too low and nothing is learnt, too high and it cannot "
            "settle: try train.learning_rate ten times smaller, then ten times larger.")


def loss_curve(training: Dict[str, Any], png) -> None:
    """Training and dev loss per epoch, with the best epoch, the model shipped, resumes, early stop, rate
    reductions and batch halvings."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [e["epoch"] for e in training.get("epochs", [])]
    nan = float("nan")
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    ax.plot(epochs, [v if v is not None else nan for v in _series(training, "train_loss")], "o-",
            label="training loss")
    ax.plot(epochs, [v if v is not None else nan for v in _series(training, "dev_loss")], "s-",
            label="validation (dev) loss")
    best = training.get("best")
    if best and best.get("dev_loss") is not None:
        ax.plot([best["epoch"]], [best["dev_loss"]], "*", markersize=18, color="gold", markeredgecolor="black",
                label=f"lowest dev loss (epoch {best['epoch']})")
    model = training.get("model")
    if model and model["which"] == "last" and model.get("dev_loss") is not None:
        ax.plot([model["epoch"]], [model["dev_loss"]], "D", markersize=10, color="tab:green",
                markeredgecolor="black", label=f"model shipped: last epoch ({model['epoch']})")
    resumed = [i["first_epoch"] for i in training.get("invocations", []) if i.get("first_epoch", 1) > 1]
    for number, epoch in enumerate(sorted(set(resumed))):
        # Between the last epoch before the stop and the first after it.
        ax.axvline(epoch - 0.5, color="tab:brown", linestyle=(0, (1, 1)),
                   label="training resumed" if number == 0 else None)
    styles = {"early_stop": ("red", "--", "early stop"), "plateau": ("purple", ":", "learning rate reduced"),
              "out_of_memory": ("grey", "-.", "out of memory: batch halved")}
    labelled = set()
    for event in training.get("events", []):
        style = styles.get(event["event"])
        if style is None or event.get("epoch") is None:
            continue
        color, line, label = style
        ax.axvline(event["epoch"], color=color, linestyle=line,
                   label=None if event["event"] in labelled else label)
        labelled.add(event["event"])
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("CTC loss (lower is better)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with temporary_path(png) as tmp:
        fig.savefig(str(tmp), format="png")
    plt.close(fig)


def _rate(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.1%}"


def _number(value: Optional[float]) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.2f}"


def model_facts(training: Dict[str, Any]) -> List[str]:
    """Which checkpoint is the model, and why the choice matters; for the report and the model card."""
    model = training.get("model")
    if not model:
        return []
    best = training.get("best") or {}
    text = (f"The model is epoch {model['epoch']}'s checkpoint ({model['checkpoint']}, dev loss "
            f"{_number(model['dev_loss'])}): the one evaluated, exported and packaged. ")
    if model["which"] == "best":
        text += ("It has the lowest dev loss of the run (train.model_checkpoint = best): it is the one most likely "
                 "to work on speech it has never heard. With little data that can be an early epoch that "
                 "transcribes little; train.model_checkpoint = last ships the last epoch instead.")
    else:
        text += (f"It is the last epoch's (train.model_checkpoint = last), not the one with the lowest dev loss "
                 f"(epoch {best.get('epoch')}, {_number(best.get('dev_loss'))}): it knows the training clips best, "
                 "which is what a check that the model can learn at all needs, but it may do worse on new "
                 "speakers and sentences.")
    return [text]


def batch_sizes(training: Dict[str, Any]) -> Dict[str, str]:
    """The batch size each set was trained or validated with (training's account), with why it is not the one
    configured; {} for an account that did not record them."""
    found = {}
    fitted, configured = training.get("batches") or {}, training.get("configured_batch") or []
    for (split, what), asked in zip(batches.SETS.items(), configured):
        if fitted.get(split):
            used = batches.Fitted(**fitted[split])
            why = batches.why_not(asked, used, what)
            found[split] = str(used.used) + (f" ({why})" if why else "")
    return found


def batch_facts(training: Dict[str, Any]) -> List[str]:
    """How the last training cut its set into steps; for the report."""
    train = (training.get("batches") or {}).get("train")
    if not train:
        return []
    fitted = batches.Fitted(**train)
    return [f"{fitted.steps} training step{'s' if fitted.steps != 1 else ''} per epoch: {fitted.clips} clips in "
            f"batches of {batch_sizes(training)['train']}."]


def document(title: str, training: Dict[str, Any], test: Dict[str, Any], reports_dir=None) -> List[Block]:
    blocks: List[Block] = [("h1", f"Evaluation of {title}"), ("p", test["note"]), ("h2", "Results")]
    rows = [["all", str(test["overall"]["clips"]), _rate(test["overall"]["wer"]), _rate(test["overall"]["cer"]),
             _number(test["overall"]["mean_loss"])]]
    rows += [[name, str(r["clips"]), _rate(r["wer"]), _rate(r["cer"]), _number(r["mean_loss"])]
             for name, r in test["datasets"].items()]
    blocks.append(("table", ["test set", "clips", "WER", "CER", "mean loss"], rows))
    blocks.append(("p", "WER (word error rate) is the share of words wrong, CER (character error rate) the share "
                        "of characters wrong, both counted as DeepSpeech does (edits over length, at most 100%). "
                        "Lower is better."))
    blocks += [("h2", "What to try next"), ("ul", test["advice"]), ("h2", "Training")]
    mode = training.get("mode") or {}
    facts = []
    if mode:
        facts.append("Mode: {}: {}.".format(mode["mode"].replace("_", " "), mode["reason"]))
    best = training.get("best")
    facts.append("{} epochs trained{}.".format(training.get("epochs_done", 0),
                                               ", then stopped early" if training.get("stopped_early") else ""))
    if best:
        facts.append(f"Lowest dev loss: epoch {best['epoch']}, {_number(best['dev_loss'])}.")
    facts += model_facts(training) + batch_facts(training)
    for invocation in training.get("invocations", []):
        if invocation.get("first_epoch", 1) > 1:
            facts.append(f"Epoch {invocation['first_epoch']}: training resumed from the last checkpoint.")
    for event in training.get("events", []):
        if event["event"] == "plateau":
            facts.append(f"Epoch {event['epoch']}: the dev loss stalled; learning rate reduced to "
                         f"{event['learning_rate']:g}.")
        elif event["event"] == "out_of_memory":
            facts.append("Epoch {}: out of memory; batch sizes halved to {} (train) and {} (dev).".format(
                event["epoch"], event["train_batch_size"][1], event["dev_batch_size"][1]))
    blocks += [("ul", facts), ("img", "Training and validation loss per epoch")]
    resumed = any(i.get("first_epoch", 1) > 1 for i in training.get("invocations", []))
    blocks.append(("p", "The training loss measures the clips the model learns from, the validation loss clips it "
                        "never learns from. Both should fall; when only the training loss falls, the model is "
                        "memorising. The star marks the lowest dev loss"
                        + ("; dotted lines mark where training was resumed after a stop." if resumed else ".")))
    blocks.append(("h2", "Samples"))
    for name, label in (("best", "Best"), ("median", "Median"), ("worst", "Worst")):
        rows = [[_rate(s["wer"]), _rate(s["cer"]), s["src"], s["res"], _clip(s["wav_filename"], reports_dir)]
                for s in test["examples"][name]]
        blocks += [("h3", label), ("table", ["WER", "CER", "expected", "recognised", "clip"], rows)]
    return blocks


def _clip(wav: str, reports_dir) -> str:
    """The clip, linked relative to the report so the link survives moving the data root as a whole."""
    if reports_dir is None:
        return os.path.basename(wav)
    return Clip(os.path.relpath(wav, str(reports_dir)))


def _md_cell(text: str) -> str:
    if isinstance(text, Clip):
        return f"[{os.path.basename(text)}]({quote(text)})"
    return text.replace("|", "\\|").replace("\n", " ")


def _html_cell(text: str) -> str:
    if isinstance(text, Clip):
        return (f'<audio controls preload="metadata" src="{html.escape(quote(text))}"></audio> '
                f'<a href="{html.escape(quote(text))}">{html.escape(os.path.basename(text))}</a>')
    return html.escape(text)


def markdown(blocks: Sequence[Block], image: str) -> str:
    out = []
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2", "h3"):
            out += ["#" * int(kind[1]) + " " + block[1], ""]
        elif kind == "p":
            out += [block[1], ""]
        elif kind == "ul":
            out += ["- " + item for item in block[1]] + [""]
        elif kind == "img":
            out += [f"![{block[1]}]({image})", ""]
        elif kind == "table":
            out.append("| " + " | ".join(block[1]) + " |")
            out.append("|" + "---|" * len(block[1]))
            out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block[2]]
            out.append("")
    return "\n".join(out)


def to_html(blocks: Sequence[Block], png: bytes) -> str:
    esc = html.escape
    title = next(block[1] for block in blocks if block[0] == "h1")
    out = ['<!DOCTYPE html>', '<html><head><meta charset="utf-8">', f"<title>{esc(title)}</title>",
           "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em;line-height:1.4}"
           "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;"
           "text-align:left}img{max-width:100%}</style>", "</head><body>"]
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2", "h3", "p"):
            out.append(f"<{kind}>{esc(block[1])}</{kind}>")
        elif kind == "ul":
            out.append("<ul>" + "".join(f"<li>{esc(item)}</li>" for item in block[1]) + "</ul>")
        elif kind == "img":
            data = base64.b64encode(png).decode("ascii")
            out.append(f'<img alt="{esc(block[1])}" src="data:image/png;base64,{data}">')
        elif kind == "table":
            out.append("<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in block[1]) + "</tr>")
            out += ["<tr>" + "".join(f"<td>{_html_cell(c)}</td>" for c in row) + "</tr>" for row in block[2]]
            out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def write(paths, title: str, metrics: Dict[str, Any]) -> None:
    training, test = metrics["training"], metrics["test"]
    loss_curve(training, paths.loss_curve)
    blocks = document(title, training, test, paths.reports)
    write_text(paths.report_md, markdown(blocks, paths.loss_curve.name))
    write_text(paths.report_html, to_html(blocks, paths.loss_curve.read_bytes()))
