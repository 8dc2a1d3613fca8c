"""Text data as users have it: sentence-pair columns and ``root/<class>/*.txt`` folders.

A pair manifest (CSV, Parquet, or a Hugging Face dataset) names its two texts ``text_a``/``text_b``,
or as GLUE does ``sentence1``/``sentence2`` (also ``question1``/``question2`` and
``premise``/``hypothesis``). A text folder holds one example per ``.txt`` file (UTF-8), its class
being the folder it sits in. ``fortunes:CATEGORY[,CATEGORY...]`` reads the ``fortune`` program's
files (Debian's ``fortunes`` package: one file per category, examples separated by lines holding
only ``%``), each category a class; a category is a name under :data:`FORTUNES_DIRS` or a file path.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path

from ..errors import ZooprobeError

PAIR_COLUMNS = (("text_a", "text_b"), ("sentence1", "sentence2"), ("question1", "question2"), ("premise", "hypothesis"))
TEXT_EXTENSION = ".txt"
FORTUNES = "fortunes:"
# where distributions install fortune files: Debian and Ubuntu, Fedora, Homebrew
FORTUNES_DIRS = (
    Path("/usr/share/games/fortunes"),
    Path("/usr/share/fortune"),
    Path("/opt/homebrew/share/games/fortunes"),
)
_OVERSTRIKE = re.compile(".\x08")  # 'x<backspace>x' bold and '_<backspace>x' underline of old terminals


def pair_columns(source: object, columns: Iterable[str]) -> tuple[str, str] | None:
    """The (first, second) text columns of a pair table among ``columns`` (compared lower-case), or None.

    :raises ZooprobeError: when a table has one column of a pair and not the other.
    """
    present = {column.strip().lower(): column for column in columns}
    for first, second in PAIR_COLUMNS:
        if first in present and second in present:
            return present[first], present[second]
        if first in present or second in present:
            has, lacks = (first, second) if first in present else (second, first)
            raise ZooprobeError(
                f"'{source}' has a '{has}' column but no '{lacks}': a sentence pair needs both texts;"
                f" add the '{lacks}' column (or name a single-text column 'text')"
            )
    return None


def is_text_folder(root: Path) -> bool:
    """Whether ``root``'s class folders hold ``.txt`` files and no images (an image folder otherwise)."""
    from PIL import Image

    image_extensions = set(Image.registered_extensions())
    texts = False
    for class_dir in root.iterdir():
        if not class_dir.is_dir() or class_dir.name.startswith("."):
            continue
        for file in class_dir.iterdir():
            suffix = file.suffix.lower()
            if suffix in image_extensions:
                return False
            texts = texts or suffix == TEXT_EXTENSION
    return texts


def text_folder_items(root: Path, report: Callable[[str, str, str], None]) -> list[tuple[str, str, str]]:
    """(file, class, text) of ``root/<class>/*.txt``, one example per file: its whole text, stripped.

    Empty files and class folders go to ``report(source, reason, fix)``.

    :raises ZooprobeError: for a file that is not UTF-8, naming it.
    """
    items: list[tuple[str, str, str]] = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(
            p
            for p in class_dir.iterdir()
            if p.is_file() and p.suffix.lower() == TEXT_EXTENSION and not p.name.startswith(".")
        )
        if not files:
            report(str(class_dir), f"empty class folder (no {TEXT_EXTENSION} files)", "add texts or remove it")
        for file in files:
            try:
                text = file.read_text(encoding="utf-8-sig").strip()
            except UnicodeDecodeError as exc:
                raise ZooprobeError(
                    f"'{file}' is not UTF-8 ({exc.reason} at byte {exc.start}): save it as UTF-8"
                    " (e.g. iconv -f latin1 -t utf-8)"
                ) from exc
            if not text:
                report(str(file), "empty text file", "write the text into it or remove it")
                continue
            items.append((str(file), class_dir.name, text))
    return items


def fortune_items(spec: str, report: Callable[[str, str, str], None]) -> tuple[str, list[tuple[str, str, str]]]:
    """(dataset name, [(file:line, category, text)]) for a ``fortunes:CATEGORY,...`` spec.

    :raises ZooprobeError: for a spec without categories or a category that is not found, listing those
        installed and how to install them.
    """
    names = [name.strip() for name in spec.removeprefix(FORTUNES).split(",") if name.strip()]
    folder = next((d for d in FORTUNES_DIRS if d.is_dir()), None)
    installed = sorted(p.name for p in folder.iterdir() if p.is_file() and "." not in p.name) if folder else []
    hint = (
        f"installed in {folder}: {', '.join(installed)}"
        if installed
        else "install them first (apt-get install fortunes, dnf install fortune-mod, brew install fortune)"
    )
    if len(names) < 2:
        raise ZooprobeError(
            f"'{spec}' names {len(names)} fortune category; give two or more, e.g. fortunes:food,love ({hint})"
        )
    items: list[tuple[str, str, str]] = []
    for name in names:
        path = Path(name).expanduser()
        if not path.is_file() and folder is not None and "/" not in name:
            path = folder / name
        if not path.is_file():
            raise ZooprobeError(f"fortune category '{name}' not found: give a category name or a file path ({hint})")
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as exc:
            raise ZooprobeError(f"'{path}' is not UTF-8 ({exc.reason} at byte {exc.start}): save it as UTF-8") from exc
        block: list[str] = []
        for number, line in enumerate([*lines, "%"], start=1):
            if line.strip() != "%":
                block.append(line)
                continue
            text = _OVERSTRIKE.sub("", "\n".join(block)).strip()
            if text:
                items.append((f"{path}:{number - len(block)}", path.name, text))
            block = []
        if not any(category == path.name for _, category, _ in items):
            report(str(path), "no fortunes in the file", "check it is a fortune file (texts separated by lines of %)")
    return ",".join(Path(n).name for n in names), items
