"""A test double of DeepSpeech 0.9.3's generate_scorer_package, as strict about its command line as the real one.

The real tool parses its options with boost::program_options: ``--name value`` or ``--name=value``,
unknown options refused, ``--force_bytes_output_mode`` taking a boolean value.  This double checks
the same, appends its argv to the JSON-lines file named by FAKE_SCORER_LOG, and writes the LM's bytes
plus a fake trie to --package, as the real tool does.  FAKE_SCORER_SILENT_FAILURE=1 makes it fail
the way the real tool does: a message, no package, and exit status 0.
"""
import json
import os
import sys
from pathlib import Path

OPTIONS = {"help", "alphabet", "lm", "vocab", "package", "default_alpha", "default_beta", "force_bytes_output_mode"}
REQUIRED = ("lm", "vocab", "package", "default_alpha", "default_beta")
BOOLEANS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}


def fail(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.exit(1)


def parse(argv):
    values = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--"):
            fail(f"unexpected positional argument {arg!r}")
        name, eq, value = arg[2:].partition("=")
        if name not in OPTIONS:
            fail(f"unrecognised option '--{name}'")
        if name in values:
            fail(f"option '--{name}' cannot be specified more than once")
        if name == "help":
            values[name] = True
            i += 1
            continue
        if not eq:
            i += 1
            if i == len(argv) or argv[i].startswith("--"):
                fail(f"the required argument for option '--{name}' is missing")
            value = argv[i]
        values[name] = value
        i += 1
    return values


def main() -> None:
    argv = sys.argv[1:]
    with open(os.environ["FAKE_SCORER_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps(argv) + "\n")
    values = parse(argv)
    for flag in REQUIRED:
        if flag not in values:
            fail(f"--{flag} is a required flag. Pass --help for help.")
    for flag in ("default_alpha", "default_beta"):
        try:
            float(values[flag])
        except ValueError:
            fail(f"the argument ('{values[flag]}') for option '--{flag}' is invalid")
    bytes_mode = None
    if "force_bytes_output_mode" in values:
        if values["force_bytes_output_mode"].lower() not in BOOLEANS:
            fail("the argument for option '--force_bytes_output_mode' is invalid")
        bytes_mode = BOOLEANS[values["force_bytes_output_mode"].lower()]
    if not bytes_mode and "alphabet" not in values:
        fail("No --alphabet file specified, not using bytes output mode, can't continue.")
    for flag in ("alphabet", "lm", "vocab"):
        if flag in values and not Path(values[flag]).is_file():
            fail(f"--{flag} {values[flag]}: no such file")
    if os.environ.get("FAKE_SCORER_SILENT_FAILURE") == "1":
        sys.stderr.write("Error loading language model file: Invalid magic in trie header.\n")
        sys.exit(0)
    words = Path(values["vocab"]).read_text(encoding="utf-8").split()
    trie = json.dumps({"words": len(words), "alpha": float(values["default_alpha"]),
                       "beta": float(values["default_beta"]), "bytes_output_mode": bool(bytes_mode)})
    Path(values["package"]).write_bytes(Path(values["lm"]).read_bytes() + trie.encode())
    sys.stderr.write(f"Package created in {values['package']}.\n")


if __name__ == "__main__":
    main()
