"""The ``dstrain`` command: thin click commands over the library.

Settings come, lowest first, from built-in defaults, the language module, the
config file (--config or DSTRAIN_CONFIG), DSTRAIN_* environment variables and
these flags.  ``dstrain config`` shows the result and where each value came from.
"""
import logging
import os
import shlex
import signal
import sys
import traceback

import click

from dstrain.pipeline import __version__
from dstrain.pipeline.errors import ConfigError, DstrainError
from dstrain.pipeline.redaction import RedactingFormatter, redact

log = logging.getLogger("dstrain")


#: Where _resolve leaves the data root in the click context, for the advice on an OS error.
DATA_ROOT = "dstrain.data_root"


class _Group(click.Group):
    """Print user errors, and the operating system's common refusals (no space, no permission, a read-only
    disk, no more processes), as one clear message instead of a traceback; -v adds the traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (DstrainError, OSError) as exc:
            from dstrain.pipeline.advice import failure_message

            if isinstance(exc, OSError):
                log.debug("%s", traceback.format_exc())
            message = redact(failure_message(exc, ctx.meta.get(DATA_ROOT), _resume_command()))
            click.secho(f"error: {message}", fg="red", err=True)
            sys.exit(2 if isinstance(exc, ConfigError) else 1)


def _settings_options(func):
    options = [
        click.option("--language", "-l", help="Language code, e.g. fr (see `dstrain languages`)."),
        click.option("--data-root", type=click.Path(file_okay=False),
                     help="Directory for downloads, imports and runs [default: ./data, /data in the container]."),
        click.option("--run", "run_name",
                     help="Run name, so one language can have several runs [default: the language code]."),
        click.option("--datasets", help="Comma-separated subset of the language's datasets to use."),
        click.option("--workers", type=int, help="Parallel audio workers [default: every core]."),
        click.option("--english-compatible/--native-alphabet", default=None,
                     help="Transliterate to ASCII and use the English alphabet, for transfer learning "
                          "from the English model."),
        click.option("--config", "config_file", type=click.Path(dir_okay=False),
                     help="A TOML settings file (also DSTRAIN_CONFIG)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _resolve(language, data_root, run_name, datasets, workers, english_compatible, config_file):
    from dstrain.pipeline.config import resolve

    config = resolve(config_file, flags={
        "language": language, "data_root": data_root, "run": run_name, "datasets": datasets,
        "workers": workers, "english_compatible": english_compatible,
    })
    click.get_current_context().meta[DATA_ROOT] = config.settings.data_root
    return config


def _setup_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter("%(message)s"))
    handler.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)


def _resume_command() -> str:
    """The command line as typed, minus --force: rerunning it resumes where it stopped.

    In a container the user typed another command (docker compose up, a service's resume), which the
    container's maker gives as DSTRAIN_RESUME_COMMAND.
    """
    if os.environ.get("DSTRAIN_RESUME_COMMAND"):
        return os.environ["DSTRAIN_RESUME_COMMAND"]
    args, skip = [], False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
        elif arg == "--force":
            skip = True
        elif not arg.startswith("--force="):
            args.append(arg)
    return " ".join(shlex.quote(a) for a in ["dstrain"] + args)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="dstrain")
@click.option("--verbose", "-v", is_flag=True, help="Show debug messages on the console.")
def cli(verbose):
    """Train a DeepSpeech speech-to-text model for your language.

    \b
    Start here:
      dstrain languages                 which languages are ready to use
      dstrain config -l fr              the settings a run would use, and where each comes from
      dstrain run -l fr --to alphabet   download, import and clean the data, build the alphabet
      dstrain status -l fr              what is done, what is stale, what is left

    Every stage records its completion, so running the same command again
    resumes where it stopped and skips what is already done.
    """
    _setup_logging(verbose)


@cli.command()
@_settings_options
@click.option("--from", "start", metavar="STAGE", help="Start at this stage (earlier ones must be done).")
@click.option("--to", "stop", metavar="STAGE", help="Stop after this stage.")
@click.option("--only", metavar="STAGE", help="Run just this stage.")
@click.option("--force", multiple=True, metavar="STAGE", help="Redo this stage even if it is done (repeatable).")
@click.option("--no-wait", is_flag=True,
              help="Stop at once, instead of waiting, when another run holds this run or a file it needs.")
def run(start, stop, only, force, no_wait, **settings):
    """Run the pipeline's stages in order (`dstrain status` lists them).

    Stages that are already done with the same inputs are skipped; a stage
    whose inputs changed is redone, and so is everything after it. After a
    crash or Ctrl-C, run the same command again to resume.
    """
    from tqdm.contrib.logging import logging_redirect_tqdm

    from dstrain.pipeline.runner import start_run

    config = _resolve(**settings)
    console = next(h.level for h in log.handlers if type(h) is logging.StreamHandler)
    with logging_redirect_tqdm([log]):
        # The redirect keeps log lines from breaking the progress bars, but its handler forgets the console's
        # level: without this, every tool's output (lmplz's progress, ...) would fill the screen.
        for handler in log.handlers:
            handler.setLevel(console)
        start_run(config, start, stop, only, force, _resume_command(), wait=not no_wait)


@cli.command()
@_settings_options
@click.option("--smoke", is_flag=True,
              help="Also train a few steps on sample clips, test and export them (about a minute).")
@click.option("--to", "stop", metavar="STAGE",
              help="Check only what the stages up to this one need (--to alphabet: no trainer, no KenLM).")
def check(smoke, stop, **settings):
    """Check what a run needs, and nothing else: the data root, decoders, the language's own test cases, the
    trainer, its GPU or CPU, and the language-model tools."""
    from dstrain.pipeline.runner import check_run

    check_run(_resolve(**settings), smoke, stop, _resume_command())


@cli.command()
@_settings_options
def status(**settings):
    """Show each stage as done, stale (inputs changed) or pending, with times and counts; a training under way
    or stopped as running or interrupted, with its epochs and the command that continues it."""
    from dstrain.pipeline.stage import Context
    from dstrain.pipeline.status import advice, rows

    ctx = Context.of(_resolve(**settings))
    click.echo(f"run {ctx.config.run_name} ({ctx.language.code}), data root {ctx.paths.root}")
    click.echo("{:<10} {:<11} {:<21} {:>9}  {}".format("stage", "state", "finished", "seconds", "counts"))
    found = rows(ctx)
    for row in found.rows:
        click.echo("{:<10} {:<11} {:<21} {:>9}  {}".format(*row))
    for line in advice(found, _resume_command().replace(" status", " run", 1)):
        click.echo(line)


@cli.command("config")
@_settings_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def show_config(as_json, **settings):
    """Print the resolved settings, each with the layer it came from."""
    import json

    resolved = _resolve(**settings).redacted()
    if as_json:
        click.echo(json.dumps(resolved, indent=2, sort_keys=True))
        return
    width = max(len(key) for key in resolved)
    for key, entry in resolved.items():
        click.echo("{:<{w}} = {!s:<40} [{}]".format(key, json.dumps(entry["value"]), entry["source"], w=width))


@cli.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="A TOML settings file (also DSTRAIN_CONFIG), for its language_dirs.")
def languages(config_file):
    """List the built-in languages, those in the folders language_dirs names, and those installed as plugins."""
    from dstrain.pipeline.config import language_dirs
    from dstrain.pipeline.registry import available_languages

    for code, entry in sorted(available_languages(language_dirs(config_file)).items()):
        lang = entry.language
        click.echo("{:<6} {:<20} {:<8} {:<28} datasets: {}".format(
            code, lang.name, lang.locale, entry.origin,
            ", ".join(d.key + (" (opt-in: +" + d.key + ")" if d.opt_in else "") for d in lang.datasets) or "-"))


@cli.command("new-language")
@click.argument("code")
@click.option("--name", help="The language's English name, e.g. Breton [default: the locale's, from Unicode's list].")
@click.option("--locale", help="Its locale tag, e.g. br-FR [default: CODE].")
@click.option("--letters", default="abcdefghijklmnopqrstuvwxyz'", show_default=True,
              help="Every lower-case letter a transcript may hold.")
@click.option("--dir", "directory", type=click.Path(file_okay=False),
              help="Where to write CODE.py, created if missing [default: the languages/ folder of this checkout]. "
                   "Elsewhere, the setting language_dirs (DSTRAIN_LANGUAGE_DIRS) tells dstrain to look there.")
def new_language(code, name, locale, letters, directory):
    """Write languages/CODE.py from a commented template, ready to fill in.

    Then run `dstrain check --language CODE --to alphabet` until its test cases pass.
    See docs/adding-a-language.md.
    """
    from dstrain.pipeline.scaffold import new_language as scaffold

    _, message = scaffold(code, name, locale, letters, directory)
    click.echo(message)


def _add_commands(group: click.Group) -> None:
    """Commands other packages add through the entry-point group ``dstrain.commands``: `dstrain serve` comes
    from dstrain.service this way, so the pipeline never imports the service."""
    from importlib.metadata import entry_points

    found = entry_points()
    # Python 3.8 and 3.9 give a dict of groups; 3.10 and later select.
    found = found.select(group="dstrain.commands") if hasattr(found, "select") else found.get("dstrain.commands", ())
    for entry in found:
        if entry.name not in group.commands:
            try:
                group.add_command(entry.load(), entry.name)
            except Exception as exc:  # a broken plugin must not take `dstrain run` down with it
                log.warning("command %s (%s) not loaded: %s", entry.name, entry.value, exc)


_add_commands(cli)


#: Set when a SIGTERM arrived: dstrain then exits 143, as a process it killed would, so whoever started it (an
#: engine, a service's scheduler) can tell a stop from outside from a failure of the run's own.
_terminated = False


def _stop_on_sigterm() -> None:
    """docker stop, compose stop and a cancelled job send SIGTERM: stop as Ctrl-C does, so the stage under way
    stops DeepSpeech, says how to resume, and everything finished stays done."""
    def interrupt(signum, frame):
        global _terminated
        _terminated = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    # Not in forked children (the workers of dstrain's pools): Pool.terminate() stops them with SIGTERM, and
    # they must die at once, as multiprocessing expects. Resetting the handler in the child is not enough on
    # its own: a SIGTERM that lands between fork() and that reset meets the parent's handler, is swallowed
    # (or raised in threading's fork bookkeeping), and the worker then waits forever on the queue lock that
    # terminate() holds; under load that hung a run in the lm stage. So SIGTERM is blocked across fork(),
    # and the child unblocks it only once it is SIG_DFL: a signal sent meanwhile waits, then kills it.
    os.register_at_fork(
        before=lambda: signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM}),
        after_in_parent=lambda: signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM}),
        after_in_child=_default_sigterm_in_child,
    )


def _default_sigterm_in_child() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


def main():
    _stop_on_sigterm()
    try:
        cli(prog_name="dstrain")
    except SystemExit as exc:
        if _terminated and exc.code not in (0, None):
            raise SystemExit(128 + signal.SIGTERM) from None
        raise


if __name__ == "__main__":
    main()
