"""A stand-in for DeepSpeech 0.9.3's ``python -m deepspeech_training.train``, for dstrain's tests only.

It parses its arguments as absl does, with exactly the flags of flags.py v0.9.3
(flags-v0.9.3.json), prints the log lines of train.py and evaluate.py as they
read with --show_progressbar=false, and writes files in DeepSpeech's layouts:
checkpoints (``checkpoint``, ``train-N.*``, ``best_dev_checkpoint``, ``best_dev-N.*``,
``flags.txt``), the test output JSON, exported models with their metadata file,
and the --export_zip archive.  Its "weights" are a small JSON, so loading a
checkpoint of another shape fails as TensorFlow would.

Environment variables read by the double only:
  DS_DOUBLE_CRASH_AT_EPOCH=k      crash while training epoch k of this invocation
  DS_DOUBLE_HANG_AT_EPOCH=k       block while training epoch k of this invocation, until killed
  DS_DOUBLE_SEED=s                weights trained differently (as another GPU or seed would): s is in them
  DS_DOUBLE_OOM_ABOVE_BATCH=n     run out of memory with a train or test batch above n...
  DS_DOUBLE_OOM_AT_EPOCH=k        ...when training epoch k of this invocation (default 0)
  DS_DOUBLE_DEV_LOSSES=a,b,...    the dev loss of each epoch, counted over the checkpoint's whole life
  DS_DOUBLE_RECORD=file           append each invocation's program, argv and parsed flags to this JSON-lines file
"""
import csv
import json
import os
import shutil
import sys
import time
from pathlib import Path

SPEC = json.loads((Path(__file__).resolve().parents[1] / "flags-v0.9.3.json").read_text(encoding="utf-8"))
FLAGS = {}


class Fatal(Exception):
    pass


# -- absl-style flag parsing ---------------------------------------------------

def _convert(name, kind, value):
    try:
        if kind == "boolean":
            lowered = value.lower()
            if lowered in ("true", "t", "1"):
                return True
            if lowered in ("false", "f", "0"):
                return False
            raise ValueError("Non-boolean argument to boolean flag")
        if kind == "integer":
            return int(value, 0)
        if kind == "float":
            return float(value)
        return value
    except ValueError as exc:
        raise Fatal(f"flag --{name}={value}: {exc}") from None


def parse_flags(argv):
    """absl's rules: '--name value' or '--name=value'; a boolean takes a value only after '='."""
    values = {name: (list(spec["default"]) if spec["type"] == "multi_string" and spec["default"] else
                     None if spec["type"] == "multi_string" else spec["default"])
              for name, spec in SPEC["flags"].items()}
    args = iter(argv)
    for arg in args:
        if not arg.startswith("-") or arg == "--":
            continue  # positional arguments are left to main(), which ignores them
        name, sep, value = arg.lstrip("-").partition("=")
        name = SPEC["aliases"].get(name, name)
        spec = SPEC["flags"].get(name)
        if spec is None and name.startswith("no") and SPEC["flags"].get(name[2:], {}).get("type") == "boolean":
            if sep:
                raise Fatal(arg + " does not take an argument")
            name, spec, sep, value = name[2:], SPEC["flags"][name[2:]], "=", "false"
        if spec is None:
            raise Fatal(f"Unknown command line flag '{name}'")
        if not sep:
            if spec["type"] == "boolean":
                value = "true"
            else:
                try:
                    value = next(args)
                except StopIteration:
                    raise Fatal("Missing value for flag " + arg) from None
        converted = _convert(name, spec["type"], value)
        if spec["type"] == "multi_string":
            values[name] = (values[name] or []) + [converted]
        else:
            values[name] = converted
    if not os.path.isfile(values["alphabet_config_path"]):
        raise Fatal("flag --alphabet_config_path={}: The file pointed to by --alphabet_config_path must exist "
                    "and be readable.".format(values["alphabet_config_path"]))
    return values


def flags_into_string():
    lines = []
    for name in sorted(SPEC["flags"]):
        value = FLAGS[name]
        if SPEC["flags"][name]["type"] == "boolean":
            lines.append(("--" if value else "--no") + name)
        elif isinstance(value, list):
            lines += [f"--{name}={item}" for item in value]
        elif value is not None:
            lines.append(f"--{name}={value}")
    return "\n".join(lines) + "\n"


# -- what DeepSpeech prints ----------------------------------------------------

def log_info(message):
    if FLAGS["log_level"] <= 1:
        print("I " + message, flush=True)


def log_error(message):
    print("E " + message, flush=True)


def fail(message, code=1):
    print(message, file=sys.stderr, flush=True)
    sys.exit(code)


def labels(path):
    lines = Path(path).read_text(encoding="utf-8").split("\n")
    if lines[-1] == "":
        lines.pop()
    return sum(1 for line in lines if line == "\\#" or (line and not line.startswith("#")))


def read_sdb(path):
    """(sample id, transcript) of each sample of a sample database, in the order of its index, as DeepSpeech's
    SDB reader (util/sample_collections.py) names and reads them."""
    def number(handle, width):
        return int.from_bytes(handle.read(width), "big")

    rows = []
    with open(path, "rb") as handle:
        if handle.read(8) != b"SAMPLEDB":
            fail(f"RuntimeError: No Sample Database ({path})")
        schema = json.loads(handle.read(number(handle, 8)))["schema"]
        handle.seek(number(handle, 8) + 8, 1)
        offsets = [number(handle, 8) for _ in range(number(handle, 8))]
        for index, offset in enumerate(offsets):
            handle.seek(offset + 4)
            for column in schema:
                chunk = handle.read(number(handle, 4))
                if column["content"] == "transcript":
                    rows.append((path, f"{path}:{index}", chunk.decode("utf-8")))
    return rows


def read_rows(csv_paths):
    rows = []
    for path in csv_paths.split(","):
        if path.endswith(".sdb"):
            rows += read_sdb(path)
            continue
        with open(path, encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                wav = Path(row["wav_filename"])
                rows.append((path, str(wav if wav.is_absolute() else Path(path).parent / wav), row["transcript"]))
    return rows


# -- checkpoints -----------------------------------------------------------------

def state_path(directory, state_file):
    try:
        text = Path(directory, state_file).read_text(encoding="utf-8")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("model_checkpoint_path:"):
            path = line.split('"')[1]
            return path if os.path.isabs(path) else os.path.join(directory, path)
    return None


def write_checkpoint(prefix, weights):
    Path(prefix + ".index").write_text(json.dumps(weights), encoding="utf-8")
    Path(prefix + ".data-00000-of-00001").write_bytes(b"\0" * 64)
    Path(prefix + ".meta").write_text("graph", encoding="utf-8")


def remove_checkpoint(prefix):
    for suffix in (".index", ".data-00000-of-00001", ".meta"):
        if os.path.exists(prefix + suffix):
            os.remove(prefix + suffix)


class Saver:
    """TensorFlow's Saver: keeps its own last max_to_keep saves and writes the state file with absolute paths."""

    def __init__(self, max_to_keep):
        self.max_to_keep = max_to_keep
        self.saved = []

    def save(self, directory, basename, step, weights, state_file):
        prefix = os.path.join(os.path.abspath(directory), f"{basename}-{step}")
        write_checkpoint(prefix, weights)
        if prefix in self.saved:
            self.saved.remove(prefix)
        self.saved.append(prefix)
        while len(self.saved) > self.max_to_keep:
            remove_checkpoint(self.saved.pop(0))
        now = time.time()
        lines = [f'model_checkpoint_path: "{prefix}"']
        lines += [f'all_model_checkpoint_paths: "{p}"' for p in self.saved]
        lines += [f"all_model_checkpoint_timestamps: {now}" for _ in self.saved]
        lines.append(f"last_preserved_timestamp: {now}")
        Path(directory, state_file).write_text("\n".join(lines) + "\n", encoding="utf-8")
        return prefix


def load(methods, allow_drop_layers):
    """DeepSpeech's _load_or_init_impl: the first method that finds a checkpoint wins."""
    directory = FLAGS["load_checkpoint_dir"]
    for method in methods:
        if method == "init":
            log_info("Initializing all variables.")
            return {"step": 0, "epochs": 0, "learning_rate": FLAGS["learning_rate"]}
        state_file, what = {"best": ("best_dev_checkpoint", "best validating"),
                            "last": ("checkpoint", "most recent")}[method]
        path = state_path(directory, state_file)
        if path and os.path.exists(path + ".index"):
            log_info(f"Loading {what} checkpoint from {path}")
            return check_weights(json.loads(Path(path + ".index").read_text(encoding="utf-8")), allow_drop_layers)
        log_info(f"Could not find {what} checkpoint.")
    log_error(f"All initialization methods failed ({methods}).")
    sys.exit(1)


def check_weights(weights, allow_drop_layers):
    drop = FLAGS["drop_source_layers"] if allow_drop_layers else 0
    if weights["n_hidden"] != FLAGS["n_hidden"] or (weights["labels"] != Config.labels and drop < 1):
        fail("tensorflow.python.framework.errors_impl.InvalidArgumentError: Assign requires shapes of both "
             "tensors to match. lhs shape= [{}] rhs shape= [{}]".format(FLAGS["n_hidden"], weights["n_hidden"]))
    if weights["cudnn"] and not (FLAGS["train_cudnn"] or FLAGS["load_cudnn"]):
        fail("tensorflow.python.framework.errors_impl.NotFoundError: Key cudnn_lstm/rnn/multi_rnn_cell/cell_0/"
             "cudnn_compatible_lstm_cell/bias/Adam not found in checkpoint")
    for layer in ["layer_2", "layer_3", "lstm", "layer_5", "layer_6"][5 - drop:] if drop else []:
        log_info(f"Initializing variable: {layer}/bias")
    if FLAGS["force_initialize_learning_rate"]:
        weights = dict(weights, learning_rate=FLAGS["learning_rate"])
    return weights


class Config:
    labels = 0


# -- train, test, export -----------------------------------------------------------

def oom(batch):
    limit = os.environ.get("DS_DOUBLE_OOM_ABOVE_BATCH")
    if limit and batch > int(limit):
        fail("Traceback (most recent call last):\n  File \"train.py\", line 568, in run_set\n"
             "tensorflow.python.framework.errors_impl.ResourceExhaustedError: 2 root error(s) found.\n"
             f"  (0) Resource exhausted: OOM when allocating tensor with shape[{batch},1024,2048] and type float on "
             "/job:localhost/replica:0/task:0/device:GPU:0 by allocator GPU_0_bfc")


def dev_loss(global_epoch, train_loss):
    losses = os.environ.get("DS_DOUBLE_DEV_LOSSES")
    if losses:
        values = [float(v) for v in losses.split(",")]
        return values[min(global_epoch, len(values) - 1)]
    return train_loss + 5.0


def train():
    save_dir = FLAGS["save_checkpoint_dir"]
    os.makedirs(save_dir, exist_ok=True)
    Path(save_dir, "flags.txt").write_text(flags_into_string(), encoding="utf-8")
    load_train = FLAGS["load_train"] if FLAGS["load_train"] in ("last", "best", "init", "auto") else "auto"
    weights = load(["best", "last", "init"] if load_train == "auto" else [load_train], allow_drop_layers=True)
    weights = dict(weights, n_hidden=FLAGS["n_hidden"], labels=Config.labels, cudnn=FLAGS["train_cudnn"])
    # util/feeding.py batches the training set with drop_remainder: the last incomplete batch is no step.
    steps_per_epoch = len(read_rows(FLAGS["train_files"])) // FLAGS["train_batch_size"]
    dev_sources = FLAGS["dev_files"].split(",")
    checkpoint_saver, best_dev_saver = Saver(FLAGS["max_to_keep"]), Saver(1)
    crash_at = os.environ.get("DS_DOUBLE_CRASH_AT_EPOCH")
    hang_at = os.environ.get("DS_DOUBLE_HANG_AT_EPOCH")
    # What TensorFlow 1.15 prints as DeepSpeech 0.9.3 builds its graph.
    print("WARNING:tensorflow:From /DeepSpeech/training/deepspeech_training/train.py:485: "
          "Iterator.output_types (from tensorflow.python.data.ops.iterator_ops) is deprecated and will be removed "
          "in a future version.\nInstructions for updating:\nUse `tf.compat.v1.data.get_output_types(iterator)`.",
          flush=True)
    oom_at = int(os.environ.get("DS_DOUBLE_OOM_AT_EPOCH", "0"))
    log_info("STARTING Optimization")
    best_dev_loss = float("inf")
    epochs_without_improvement = 0
    for epoch in range(FLAGS["epochs"]):
        log_info(f"Training epoch {epoch}...")
        if crash_at is not None and epoch == int(crash_at):
            fail("Traceback (most recent call last):\n  File \"train.py\", line 568, in run_set\n"
                 f"RuntimeError: the double was told to crash at epoch {epoch}")
        if hang_at is not None and epoch == int(hang_at):
            while True:
                time.sleep(1)
        if epoch == oom_at:
            oom(FLAGS["train_batch_size"])
        global_epoch = weights["epochs"]
        # run_set's mean loss is 0.0 for an epoch without a step.
        train_loss = 100.0 / (global_epoch + 1) + 10.0 if steps_per_epoch else 0.0
        weights = dict(weights, step=weights["step"] + steps_per_epoch, epochs=global_epoch + 1,
                       seed=os.environ.get("DS_DOUBLE_SEED"))
        log_info(f"Finished training epoch {epoch} - loss: {train_loss:f}")
        checkpoint_saver.save(save_dir, "train", weights["step"], weights, "checkpoint")
        loss = dev_loss(global_epoch, train_loss)
        for source in dev_sources:
            log_info(f"Validating epoch {epoch} on {source}...")
            log_info(f"Finished validating epoch {epoch} on {source} - loss: {loss:f}")
        if loss > best_dev_loss - FLAGS["es_min_delta"]:
            epochs_without_improvement += 1
        else:
            epochs_without_improvement = 0
        if loss < best_dev_loss:
            best_dev_loss = loss
            path = best_dev_saver.save(save_dir, "best_dev", weights["step"], weights, "best_dev_checkpoint")
            log_info(f"Saved new best validating model with loss {best_dev_loss:f} to: {path}")
        if FLAGS["early_stop"] and epochs_without_improvement == FLAGS["es_epochs"]:
            log_info(f"Early stop triggered as the loss did not improve the last {epochs_without_improvement} epochs")
            break
        if (FLAGS["reduce_lr_on_plateau"] and epochs_without_improvement > 0
                and epochs_without_improvement % FLAGS["plateau_epochs"] == 0):
            weights = dict(weights, learning_rate=weights["learning_rate"] * FLAGS["plateau_reduction"])
            log_info("Encountered a plateau, reducing learning rate to {}".format(weights["learning_rate"]))
            path = best_dev_saver.save(save_dir, "best_dev", weights["step"], weights, "best_dev_checkpoint")
            log_info(f"Saved best validating model with reduced learning rate to: {path}")
        print("-" * 80, flush=True)
    log_info("FINISHED optimization in 0:00:00.012345")


def load_for_evaluation():
    methods = ["best", "last"] if FLAGS["load_evaluate"] not in ("last", "best") else [FLAGS["load_evaluate"]]
    return load(methods, allow_drop_layers=False)


def levenshtein(a, b):
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def test():
    load_for_evaluation()
    scorer = FLAGS["scorer_path"]
    if scorer and not os.path.isfile(scorer):
        fail("RuntimeError: CreateModel failed with 'Error reading the proto buffer model file.' (0x3005)")
    oom(FLAGS["test_batch_size"])
    samples = []
    for csv_path in FLAGS["test_files"].split(","):
        print(f"Testing model on {csv_path}", flush=True)
        log_info("Test epoch...")
        for index, (_, wav, src) in enumerate(read_rows(csv_path)):
            wrong = index % (4 if scorer else 2) == 1
            res = src[:-1] if wrong else src
            samples.append({
                "wav_filename": wav, "src": src, "res": res, "loss": 10.0 + len(src) * (1.0 if wrong else 0.5),
                "char_distance": levenshtein(src, res), "char_length": len(src),
                "word_distance": levenshtein(src.split(), res.split()), "word_length": len(src.split()),
            })
        for s in samples:
            s["cer"] = s["char_distance"] / s["char_length"]
            s["wer"] = s["word_distance"] / s["word_length"]
        wer = min(1.0, sum(s["word_distance"] for s in samples) / sum(s["word_length"] for s in samples))
        cer = min(1.0, sum(s["char_distance"] for s in samples) / sum(s["char_length"] for s in samples))
        samples.sort(key=lambda s: s["loss"], reverse=True)
        samples.sort(key=lambda s: s["wer"])
        print("Test on {} - WER: {:f}, CER: {:f}, loss: {:f}".format(
            csv_path, wer, cer, sum(s["loss"] for s in samples) / len(samples)), flush=True)
        print("-" * 80, flush=True)
    if FLAGS["test_output_file"]:
        with open(FLAGS["test_output_file"], "w", encoding="utf-8") as handle:
            json.dump(samples, handle, ensure_ascii=False, indent=2)


def export():
    log_info("Exporting the model...")
    weights = load_for_evaluation()
    export_dir = FLAGS["export_dir"]
    os.makedirs(export_dir, exist_ok=True)
    runtime = "tflite" if FLAGS["export_tflite"] else "tensorflow"
    name = FLAGS["export_file_name"] + (".tflite" if FLAGS["export_tflite"] else ".pb")
    Path(export_dir, name).write_text(json.dumps({
        "runtime": runtime, "n_hidden": weights["n_hidden"], "labels": weights["labels"], "step": weights["step"],
        "beam_width": FLAGS["export_beam_width"], "language": FLAGS["export_language"],
    }), encoding="utf-8")
    log_info(f"Models exported at {export_dir}")
    metadata = os.path.join(export_dir, "{}_{}_{}.md".format(
        FLAGS["export_author_id"], FLAGS["export_model_name"], FLAGS["export_model_version"]))
    with open(metadata, "w", encoding="utf-8") as handle:
        handle.write("---\n")
        for key, flag in (("author", "export_author_id"), ("model_name", "export_model_name"),
                          ("model_version", "export_model_version"), ("contact_info", "export_contact_info"),
                          ("license", "export_license"), ("language", "export_language")):
            handle.write(f"{key}: {FLAGS[flag]}\n")
        handle.write(f"runtime: {runtime}\n")
        handle.write("min_ds_version: {}\n".format(FLAGS["export_min_ds_version"]))
        handle.write("max_ds_version: {}\n".format(FLAGS["export_max_ds_version"]))
        handle.write("acoustic_model_url: <replace this with a publicly available URL of the acoustic model>\n")
        handle.write("scorer_url: <replace this with a publicly available URL of the scorer, if present>\n")
        handle.write("---\n")
        handle.write("{}\n".format(FLAGS["export_description"]))
    log_info(f"Model metadata file saved to {metadata}. Before submitting the exported model for publishing make "
             "sure all information in the metadata file is correct, and complete the URL fields.")


def package_zip():
    export_dir = os.path.join(os.path.abspath(FLAGS["export_dir"]), "")
    shutil.copy(FLAGS["scorer_path"], export_dir)
    archive = shutil.make_archive(os.path.dirname(export_dir), "zip", export_dir)
    log_info(f"Exported packaged model {archive}")


def record_invocation(program):
    record = os.environ.get("DS_DOUBLE_RECORD")
    if record:
        with open(record, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"program": program, "argv": sys.argv[1:], "flags": FLAGS}) + "\n")


def main():
    global FLAGS
    try:
        FLAGS = parse_flags(sys.argv[1:])
    except Fatal as exc:
        sys.stderr.write(f"FATAL Flags parsing error: {exc}\n")
        sys.stderr.write("Pass --helpshort or --helpfull to see help on flags.\n")
        sys.exit(1)
    record_invocation("train")
    FLAGS["save_checkpoint_dir"] = FLAGS["save_checkpoint_dir"] or FLAGS["checkpoint_dir"]
    FLAGS["load_checkpoint_dir"] = FLAGS["load_checkpoint_dir"] or FLAGS["checkpoint_dir"]
    Config.labels = 256 if FLAGS["bytes_output_mode"] else labels(FLAGS["alphabet_config_path"])
    if FLAGS["train_files"]:
        train()
    if FLAGS["test_files"]:
        test()
    if FLAGS["export_dir"] and not FLAGS["export_zip"]:
        export()
    if FLAGS["export_zip"]:
        FLAGS["export_tflite"] = True
        if os.listdir(FLAGS["export_dir"]):
            log_error("Directory {} is not empty, please fix this.".format(FLAGS["export_dir"]))
            sys.exit(1)
        export()
        package_zip()


if __name__ == "__main__":
    main()
