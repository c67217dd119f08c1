"""A stand-in for DeepSpeech 0.9.3's ``lm_optimizer.py``, for dstrain's tests only.

It takes exactly the flags of flags.py v0.9.3 (through the training double's parser), loads the best
checkpoint as evaluate.py does, and runs ``--n_trials`` trials over ``--test_files``: each prints
evaluate.py's test lines and optuna's trial line, then the script prints its ``Best params`` line.
Trials draw alpha and beta uniformly in [0, --lm_alpha_max] x [0, --lm_beta_max] (seeded by the run's
number, so each run draws other pairs, as optuna would); a trial's WER is smallest near alpha 1.5, beta 2.5.

Environment variables read by the double only (besides the training double's DS_DOUBLE_RECORD and
DS_DOUBLE_OOM_ABOVE_BATCH):
  DS_DOUBLE_SEED=n                the trials' random seed (default 0)
  DS_DOUBLE_CRASH_AFTER_CALLS=n   crash at the first trial of any lm_optimizer.py run after the n-th
                                  (counted in DS_DOUBLE_RECORD)
"""
import json
import os
import random
import sys
from datetime import datetime

import deepspeech_training.train as ds


def wer_at(alpha, beta):
    return min(1.0, 0.2 + 0.02 * ((alpha - 1.5) ** 2 + (beta - 2.5) ** 2))


def optuna_log(message):
    stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]
    print(f"[I {stamp}] {message}", file=sys.stderr, flush=True)


def trial_dataset(alpha, beta):
    """evaluate.py's lines for one pass over every test file."""
    wer = wer_at(alpha, beta)
    for csv_path in ds.FLAGS["test_files"].split(","):
        ds.read_rows(csv_path)
        print(f"Testing model on {csv_path}", flush=True)
        ds.log_info("Test epoch...")
        print(f"Test on {csv_path} - WER: {wer:f}, CER: {wer / 2:f}, loss: {20.0:f}", flush=True)
        print("-" * 80, flush=True)
    return wer


def calls_so_far():
    """lm_optimizer.py runs recorded in DS_DOUBLE_RECORD, this one included (1 without a record)."""
    if not os.environ.get("DS_DOUBLE_RECORD"):
        return 1
    with open(os.environ["DS_DOUBLE_RECORD"], encoding="utf-8") as record:
        return sum(json.loads(line)["program"] == "lm_optimizer" for line in record)


def main():
    try:
        ds.FLAGS = ds.parse_flags(sys.argv[1:])
    except ds.Fatal as exc:
        sys.stderr.write(f"FATAL Flags parsing error: {exc}\n")
        sys.exit(1)
    ds.record_invocation("lm_optimizer")
    flags = ds.FLAGS
    flags["load_checkpoint_dir"] = flags["load_checkpoint_dir"] or flags["checkpoint_dir"]
    ds.Config.labels = 256 if flags["bytes_output_mode"] else ds.labels(flags["alphabet_config_path"])
    if not flags["test_files"]:
        ds.log_error("You need to specify what files to use for evaluation via the --test_files flag.")
        sys.exit(1)
    if flags["scorer_path"] and not os.path.isfile(flags["scorer_path"]):
        ds.fail("RuntimeError: CreateModel failed with 'Error reading the proto buffer model file.' (0x3005)")
    crash_after = os.environ.get("DS_DOUBLE_CRASH_AFTER_CALLS")
    if crash_after is not None and calls_so_far() > int(crash_after):
        ds.fail("Traceback (most recent call last):\n  File \"lm_optimizer.py\", line 38, in objective\n"
                "RuntimeError: the double was told to crash in this run")
    rng = random.Random(int(os.environ.get("DS_DOUBLE_SEED", "0")) + calls_so_far())
    best = None
    for number in range(flags["n_trials"]):
        alpha = rng.uniform(0, flags["lm_alpha_max"])
        beta = rng.uniform(0, flags["lm_beta_max"])
        ds.load_for_evaluation()
        ds.oom(flags["test_batch_size"])
        wer = trial_dataset(alpha, beta)
        if best is None or wer < best[0]:
            best = (wer, number, alpha, beta)
        optuna_log(f"Trial {number} finished with value: {wer} and parameters: "
                   f"{{'lm_alpha': {alpha}, 'lm_beta': {beta}}}. Best is trial {best[1]} with value: {best[0]}.")
    print(f"Best params: lm_alpha={best[2]} and lm_beta={best[3]} with WER={best[0]}", flush=True)


if __name__ == "__main__":
    main()
