"""The DeepSpeech command line dstrain writes, and the log lines it reads, pinned to DeepSpeech 0.9.3's."""
from pathlib import Path

from dstrain.pipeline.deepspeech import events, trainer


def test_each_flag_and_value_is_one_argv_item_and_booleans_take_an_equals_sign():
    argv = trainer.argv({
        "export_description": "Un modèle libre, réutilisable",
        "early_stop": False,
        "export_tflite": True,
        "augment": ["volume[p=0.1,dbfs=-10:-40]", "pitch[p=0.1]"],
        "drop_source_layers": None,
        "learning_rate": 1e-05,
        "alphabet_config_path": Path("data/alphabet.txt"),
    })
    assert argv == [
        "--export_description", "Un modèle libre, réutilisable",
        "--early_stop=false",
        "--export_tflite=true",
        "--augment", "volume[p=0.1,dbfs=-10:-40]", "--augment", "pitch[p=0.1]",
        "--learning_rate", "1e-05",
        "--alphabet_config_path", str(Path("data/alphabet.txt").absolute()),
    ]


def test_the_lines_of_train_py_are_understood():
    lines = {
        "I Finished training epoch 3 - loss: 41.200000": events.Event("train_loss", 3, 41.2),
        "I Finished validating epoch 3 on /data/runs/fr/clean/dev.csv - loss: 45.500000":
            events.Event("dev_loss", 3, 45.5, "/data/runs/fr/clean/dev.csv"),
        "I Saved new best validating model with loss 45.500000 to: /data/runs/fr/checkpoints/best_dev-1234":
            events.Event("best_saved", None, 45.5, "/data/runs/fr/checkpoints/best_dev-1234"),
        "I Early stop triggered as the loss did not improve the last 25 epochs": events.Event("early_stop", None, 25),
        "I Encountered a plateau, reducing learning rate to 1.0000000656873453e-05":
            events.Event("plateau", None, 1.0000000656873453e-05),
        "I FINISHED optimization in 1:02:03.456789": events.Event("finished", None, None, "1:02:03.456789"),
        "I Finished training epoch 0 - loss: inf": events.Event("train_loss", 0, float("inf")),
    }
    for line, event in lines.items():
        assert events.parse(line) == event, line
    for other in ("I Training epoch 3...", "I Saved best validating model with reduced learning rate to: /x",
                  "Epoch 3 |   Training | Elapsed Time: 0:01:02 | Steps: 10 | Loss: 41.200000"):
        assert events.parse(other) is None


def test_tensorflow_out_of_memory_is_recognised():
    assert trainer.OUT_OF_MEMORY.search(
        "tensorflow.python.framework.errors_impl.ResourceExhaustedError: 2 root error(s) found.")
    assert trainer.OUT_OF_MEMORY.search("  (0) Resource exhausted: OOM when allocating tensor with shape[64,1024]")
    assert not trainer.OUT_OF_MEMORY.search("I Loading most recent checkpoint from /data/checkpoints/train-10")


def test_the_clips_dropped_with_the_last_incomplete_batch_are_counted_as_deepspeech_drops_them():
    from dstrain.pipeline.deepspeech import batches

    # The case: 31 clips, batch 8; sizes of 1 s to 31 s of 16 kHz 16-bit audio, plus the header.
    sizes = [44 + 32000 * seconds for seconds in range(1, 32)]
    found = batches.left_out(sizes, 8)
    assert (found.clips, found.total, found.batch_size) == (7, 31, 8)
    assert found.seconds == sum(range(25, 32))  # the 7 longest
    # From half the batch up to it: 31 % 6 == 31 % 5 == 1, the larger batch is kept.
    assert (found.better, found.better_left_out) == (6, 1)
    assert "leaves 7 of the 31 training clips (3.3 minutes of audio" in batches.describe(found)
    assert batches.left_out(sizes[:24], 8) is None
    # Fewer clips than one batch: DeepSpeech trains on none of them.
    assert batches.left_out(sizes[:5], 8).clips == 5


def test_the_trainers_lines_that_matter_are_told_from_its_noise():
    noise = ["WARNING:tensorflow:From train.py:485: Iterator.output_types (from tensorflow.python.data.ops."
             "iterator_ops) is deprecated and will be removed in a future version.", "Instructions for updating:",
             "I Finished training epoch 3 - loss: 41.200000",
             # The smoke training's, on every load of a checkpoint: it names cuDNN, and is no failure.
             "I Loading variable from checkpoint: cudnn_lstm/rnn/multi_rnn_cell/cell_0/cudnn_compatible_lstm_cell/bias"]
    matter = ["tensorflow.python.framework.errors_impl.ResourceExhaustedError: OOM when allocating tensor",
              "E The following files caused an infinite (or NaN) loss: a.wav",
              "tensorflow.python.framework.errors_impl.UnknownError: Fail to find the dnn implementation. "
              "[Op:CudnnRNN] cuDNN launch failure"]
    assert [trainer.matters(line) for line in noise + matter] == [False] * 4 + [True] * 3
