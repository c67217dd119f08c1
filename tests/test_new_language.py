"""`dstrain new-language CODE`, as the README says it: the name from the locale, any folder, a hint that works."""
import re
import shlex
from pathlib import Path

from tests.conftest import clean_env, dstrain


def next_command(stdout: str) -> list:
    """The command the hint gives, as a user would copy it (VAR=value words first)."""
    return shlex.split(re.search(r"next: answer its QUESTIONs, then `([^`]+)`", stdout).group(1))


def run_hint(hint: list, data, check=True):
    env = dict(word.split("=", 1) for word in hint if "=" in word and not word.startswith("-"))
    args = [word for word in hint if word not in {f"{k}={v}" for k, v in env.items()}]
    assert args[:2] == ["dstrain", "check"]
    return dstrain(*args[1:], "--data-root", data, env=clean_env(**env), check=check)


def test_new_language_takes_its_name_from_the_locale_and_makes_its_folder(tmp_path):
    folder = tmp_path / "not" / "yet" / "there"
    out = dstrain("new-language", "br", "--locale", "br-FR", "--dir", folder).stdout
    source = (folder / "br.py").read_text()
    assert 'name="Breton"' in source and 'locale="br-FR"' in source
    assert "its name, from the locale 'br-FR': Breton" in out
    hint = next_command(out)
    assert hint[0] == f"DSTRAIN_LANGUAGE_DIRS={folder}"
    assert "language br: 3 test cases pass" in run_hint(hint, tmp_path / "data").stderr
    listed = dstrain("languages", env=clean_env(DSTRAIN_LANGUAGE_DIRS=str(folder))).stdout
    assert f"br     Breton               br-FR    file {folder / 'br.py'}" in listed


def test_a_code_unicode_does_not_know_gets_a_placeholder_name(tmp_path):
    out = dstrain("new-language", "xq", "--dir", tmp_path).stdout
    assert "no language has the locale 'xq' in Unicode's list, so its name is 'xq' for now" in out
    assert 'name="xq"' in (tmp_path / "xq.py").read_text()
    assert "language xq: 3 test cases pass" in run_hint(next_command(out), tmp_path / "data").stderr


def test_new_language_refuses_a_file_as_folder_and_an_existing_code(tmp_path):
    (tmp_path / "file").write_text("")
    for args, phrase in ((["br", "--dir", tmp_path / "file"], "is a file"),
                         (["fr", "--dir", tmp_path], "language 'fr' exists already (built-in)")):
        proc = dstrain("new-language", *args, check=False)
        assert proc.returncode == 2 and phrase in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_two_modules_of_one_code_are_refused(tmp_path):
    for folder in ("a", "b"):
        dstrain("new-language", "br", "--dir", tmp_path / folder)
    proc = dstrain("config", "-l", "br", check=False,
                   env=clean_env(DSTRAIN_LANGUAGE_DIRS=f"{tmp_path / 'a'}:{tmp_path / 'b'}"))
    assert proc.returncode == 2 and f"language 'br' is defined twice: file {tmp_path / 'a' / 'br.py'} and file " \
        f"{tmp_path / 'b' / 'br.py'}" in proc.stderr


def test_new_language_never_writes_in_a_system_directory(tmp_path):
    (tmp_path / "lnk").symlink_to("/usr/local/share")
    for folder in ("/etc", "/usr/local", "lnk/..", "/proc/x"):
        proc = dstrain("new-language", "br", "--dir", folder, cwd=str(tmp_path), check=False)
        assert proc.returncode == 2 and "is a system directory" in proc.stderr and "Traceback" not in proc.stderr
    assert not any(Path(p, "br.py").exists() for p in ("/etc", "/usr/local"))
