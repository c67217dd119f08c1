"""Write flags-v0.9.3.json, the flags the DeepSpeech double accepts, from DeepSpeech's own flags.py.

    git show v0.9.3:training/deepspeech_training/util/flags.py > flags.py
    python tests/deepspeech_double/make_flags_list.py flags.py > tests/deepspeech_double/flags-v0.9.3.json

Reads the file's DEFINE_* calls with ``ast``; nothing of DeepSpeech is imported or copied.
"""
import ast
import json
import sys

TYPES = {"DEFINE_string": "string", "DEFINE_integer": "integer", "DEFINE_float": "float",
         "DEFINE_boolean": "boolean", "DEFINE_multi_string": "multi_string"}


def flags_of(source: str):
    flags, aliases = {}, {}
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        args = node.args
        if not args or not isinstance(args[0], ast.Constant):
            continue  # str_val_equals_help's own body
        if name in TYPES:
            flags[ast.literal_eval(args[0])] = {"type": TYPES[name], "default": ast.literal_eval(args[1])}
        elif name == "str_val_equals_help":  # a string flag whose default is "<its help text>"
            flags[ast.literal_eval(args[0])] = {"type": "string", "default": f"<{ast.literal_eval(args[1])}>"}
        elif name == "DEFINE_alias":
            aliases[ast.literal_eval(args[0])] = ast.literal_eval(args[1])
    return flags, aliases


def main(path: str) -> None:
    with open(path, encoding="utf-8") as handle:
        flags, aliases = flags_of(handle.read())
    json.dump({"deepspeech": "0.9.3", "source": "training/deepspeech_training/util/flags.py",
               "flags": flags, "aliases": aliases}, sys.stdout, indent=1, sort_keys=True, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
