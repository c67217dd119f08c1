"""The launchers `dstrain serve --launcher NAME` can use, found through the entry-point group
``dstrain.launchers``, and their flags' own sections of `dstrain serve --help`.

A launcher, dstrain's own or a third party's, is one ``LauncherKind`` named by an entry point:

    [project.entry-points."dstrain.launchers"]
    mycluster = "mypackage.flags:MYCLUSTER"

Its flags are click options that `dstrain serve` takes besides its own; each is given to the launcher only
when it is the one chosen, and naming one of another launcher's flags is an error.  The module an entry point
names is imported to build the command's help, so it imports only click and the standard library: the
launcher itself (its SDK, its engine) is imported by ``create``, when the service starts.
"""
import importlib
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Dict, Sequence, Tuple

import click

if TYPE_CHECKING:  # pragma: no cover - types only: the service's modules load when it starts
    from dstrain.service.launcher import Launcher
    from dstrain.service.options import Options

GROUP = "dstrain.launchers"


@dataclass(frozen=True)
class LauncherKind:
    name: str
    #: One line for --launcher's help.
    summary: str
    #: Its flags, each in a help section (``section``).  One option may serve several launchers: the job
    #: containers' flags serve the Docker launcher and Slurm's docker runtime.
    options: Tuple[click.Option, ...]
    #: The values of its flags by parameter name -> its own options; ValueError names a bad flag.
    configure: Callable[[Dict[str, Any]], Any]
    #: The launcher's class, "module:Class" (imported only when the service starts), made with the service's
    #: Options and its own; any error there means its engine is unreachable.
    launcher: str

    def create(self, params: Dict[str, Any], options: "Options") -> "Launcher":
        own = self.configure(params)  # a bad flag first: the host's to fix, whether the engine answers or not
        module, _, name = self.launcher.partition(":")
        return getattr(importlib.import_module(module), name)(options, own)


def section(title: str, *options: click.Option) -> Tuple[click.Option, ...]:
    """The options, shown under ``title`` in --help."""
    for option in options:
        option.section = title
    return options


def kinds() -> Dict[str, LauncherKind]:
    """Every launcher installed, by name.  One that does not load, or takes a name already taken, is left out
    with a warning: `dstrain` itself loads this (for `dstrain serve`), and must work whatever a plugin does."""
    from importlib.metadata import entry_points

    found = entry_points()
    points = found.select(group=GROUP) if hasattr(found, "select") else found.get(GROUP, ())
    kinds: Dict[str, LauncherKind] = {}
    for point in points:
        try:
            kind = point.load()
        except Exception as exc:
            warnings.warn(f"launcher {point.name} ({point.value}, {GROUP}) does not load: {exc}", stacklevel=2)
            continue
        if not isinstance(kind, LauncherKind) or kind.name != point.name:
            warnings.warn(f"launcher {point.name} ({point.value}, {GROUP}) is not a LauncherKind of that name",
                          stacklevel=2)
        elif point.name in kinds and kinds[point.name] is not kind:
            warnings.warn(f"two launchers named {point.name!r} are installed ({GROUP}); the first is kept",
                          stacklevel=2)
        else:
            kinds[point.name] = kind
    return kinds


def flags_of_others(chosen: LauncherKind, others: Sequence[LauncherKind], given: Sequence[str]) -> Sequence[str]:
    """The flags among ``given`` (parameter names) that belong to other launchers only: a host who gives them
    meant another launcher."""
    mine = {option.name for option in chosen.options}
    theirs = {option.name: option for kind in others for option in kind.options}
    return [theirs[name].opts[0] for name in given if name in theirs and name not in mine]


class SectionedGroup(click.Group):
    """A group whose --help shows its options by section: its own first, then each launcher's."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        sections: Dict[str, list] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None:
                sections.setdefault(getattr(param, "section", "The service"), []).append(record)
        for title, records in sections.items():
            with formatter.section(title):
                formatter.write_dl(records)
        self.format_commands(ctx, formatter)
