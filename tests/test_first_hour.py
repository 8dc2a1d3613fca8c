"""A newcomer's first hour (issue #23): checks before work, hints that are whole commands, counts that
say what they hide, advice that fits the problem, one --format vocabulary, and the extras README names."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from zooprobe.cli import cli
from zooprobe.data.datasets import read_dataset
from zooprobe.errors import ZooprobeError
from zooprobe.runs.records import AssessSummary, Recommendation
from zooprobe.runs.store import RunStore

from .conftest import home_with_catalog, write_digits_npz

MOBILENET = "torchvision:mobilenet_v2.IMAGENET1K_V1"
ROOT = Path(__file__).resolve().parent.parent


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


@pytest.fixture
def home(synced: Path, tmp_path: Path) -> Path:
    """A home of this test's own holding a copy of the synced catalog."""
    return home_with_catalog(synced, tmp_path / "home")


@pytest.fixture
def bad_images(tmp_path: Path) -> Path:
    """An image folder whose 12 files (two classes) are not images: reading it is an error."""
    root = tmp_path / "photos"
    for label in ("cat", "dog"):
        (root / label).mkdir(parents=True)
        for i in range(6):
            (root / label / f"{label}{i:02d}.png").write_bytes(b"not a png")
    return root


@pytest.fixture
def digits_npz(tmp_path: Path) -> Path:
    return write_digits_npz(tmp_path / "digits.npz", 6)


# --- 2. what can be checked is checked before the data are read or the weights load ---------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["assess", "--models", "torchvision:no_such_net"], "no_such_net"),
        (["assess", "--query", "mobilenet --no-such-option 3"], "bad --query"),
        (["assess", "--query", "mobilenet 'unbalanced"], "balance the quotes"),
        (["assess", "--models", MOBILENET, "--metrics", "no_such_score"], "no_such_score"),
        (["finetune", "--model", "torchvision:no_such_net", "--strategy", "head"], "no_such_net"),
    ],
)
def test_bad_ids_and_queries_fail_before_the_data_are_read(
    home: Path, bad_images: Path, args: list[str], message: str
) -> None:
    # the data are unreadable: an error about them would mean they were read first
    result = invoke(*args, "--data", str(bad_images), "--home", str(home))
    assert result.exit_code == 2, result.output
    assert message in result.output and "bad examples" not in result.output


def test_a_cut_point_the_model_lacks_fails_before_the_data_are_read(
    home: Path, bad_images: Path, torch_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(torch_home))
    args = ["finetune", "--data", str(bad_images), "--model", MOBILENET, "--strategy", "cut:nonexistent_layer"]
    result = invoke(*args, "--home", str(home))
    assert result.exit_code == 2, result.output
    assert "nonexistent_layer" in result.output and "features.13" in result.output  # the valid cut points
    assert "bad examples" not in result.output


# --- 3. hints are whole commands ------------------------------------------------------------------


def test_assess_ends_with_the_finetune_command_for_this_data_and_model(tmp_path: Path) -> None:
    from zooprobe.cli.assess import next_step

    with RunStore(tmp_path) as runs:
        run = runs.create("assess", "my photos/train", {"resolution": 64})
    recommended = Recommendation("head", None, "head", 0.9, 0.01, "", model=MOBILENET)
    summary = AssessSummary(ranking=[MOBILENET], recommended=recommended)
    assert next_step(run.id, summary, tmp_path) == (
        f"next: zooprobe finetune --data 'my photos/train' --model {MOBILENET} --strategy recommended"
        f" --baseline scratch --resolution 64 --home {tmp_path}"
    )
    pending = AssessSummary(pending=[MOBILENET])
    assert next_step(run.id, pending, None).startswith(f"next: zooprobe assess --resume {run.id} ")


def test_ctrl_c_prints_the_command_that_resumes_the_run(
    home: Path, digits_npz: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import zooprobe.evaluator.candidate as candidate_module

    def pressed_ctrl_c(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt  # the user pressed Ctrl-C while the candidate loaded

    monkeypatch.setattr(candidate_module, "_load", pressed_ctrl_c)
    result = invoke("assess", "--data", str(digits_npz), "--models", MOBILENET, "--home", str(home))
    with RunStore(home) as runs:
        (run,) = runs.list(kind="assess")
    assert run.status == "running"
    assert f"continue it with: zooprobe assess --resume {run.id} --home {home}" in result.output
    assert "Aborted!" in result.output and result.exit_code == 1


def test_report_latest_skips_a_newer_run_without_results_and_says_so(tmp_path: Path) -> None:
    with RunStore(tmp_path) as runs:
        done = runs.create("assess", "sklearn:digits", {})
        runs.finish(done.id, AssessSummary(ranking=[], seconds=1.0))
        stopped = runs.create("assess", "sklearn:digits", {})  # Ctrl-C before its first candidate
    for args in (["--latest"], []):
        result = invoke("report", *args, "--format", "json", "--home", str(tmp_path))
        assert result.exit_code == 0, result.output
        assert [r["id"] for r in json.loads(result.stdout)["runs"]] == [done.id]
        assert f"newer runs have none yet: {stopped.id} (running)" in result.stderr
        assert f"zooprobe assess --resume {stopped.id}" in result.stderr


# --- 4. counts say what they hide -----------------------------------------------------------------


def test_search_says_how_many_rows_it_left_out(synced: Path) -> None:
    everything = invoke("search", "--source", "torchvision", "--limit", "1000", "--format", "json")
    total = len(json.loads(everything.stdout))
    assert total > 3 and "matching entries" not in everything.stderr
    result = invoke("search", "--source", "torchvision", "--limit", "3", "--format", "json")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)) == 3  # stdout stays valid JSON
    assert f"3 of {total} matching entries; --limit {total} to see them all" in result.stderr


def test_on_error_fail_names_every_bad_file(bad_images: Path) -> None:
    with pytest.raises(ZooprobeError) as raised:
        read_dataset(str(bad_images))
    message = str(raised.value)
    assert message.startswith("12 bad examples: ") and "\n" not in message
    named = [f"{label}{i:02d}.png" for label in ("cat", "dog") for i in range(6)]
    assert sum(name in message for name in named) == 10 and message.count("cannot decode image") == 10
    assert "; and 2 more; fix them, or drop them with --on-error skip" in message


def test_on_error_fail_keeps_the_one_line_for_one_bad_file(bad_images: Path) -> None:
    from PIL import Image

    for path in sorted(bad_images.rglob("*.png"))[1:]:
        Image.new("RGB", (4, 4)).save(path)
    with pytest.raises(ZooprobeError, match=r"^'.*cat00\.png': cannot decode image .*--on-error skip"):
        read_dataset(str(bad_images))


# --- 5. advice fits the problem -------------------------------------------------------------------


def _without_permission_override(code: str, home: Path) -> subprocess.CompletedProcess[str]:
    """Run ``code`` as this user, but (when that is root) without root's right to ignore permissions."""
    command = [sys.executable, "-c", code]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root, and setpriv (util-linux) is missing to drop the override")
        caps = "-dac_override,-dac_read_search"
        command = [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}", *command]
    env = {**os.environ, "ZOOPROBE_HOME": str(home), "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(command, env=env, capture_output=True, text=True)


@pytest.mark.parametrize("locked", ["home", "catalog"])
def test_a_home_you_may_not_read_says_permissions(tmp_path: Path, locked: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "catalog.sqlite3").write_bytes(b"")
    target = home if locked == "home" else home / "catalog.sqlite3"
    target.chmod(0)
    try:
        done = _without_permission_override("from zooprobe.cli import cli\ncli(['search', 'resnet'])", home)
    finally:
        target.chmod(0o700)
    assert done.returncode == 2, done.stderr
    assert f"permission denied on {target}" in done.stderr and "chmod u+rwX" in done.stderr
    assert "rebuild" not in done.stderr


def test_report_out_creates_only_the_files_own_folder(tmp_path: Path) -> None:
    with RunStore(tmp_path / "home") as runs:
        run = runs.create("assess", "sklearn:digits", {})
        runs.finish(run.id, AssessSummary(ranking=[], seconds=1.0))
    home = ["--home", str(tmp_path / "home")]
    result = invoke("report", "--out", str(tmp_path / "no" / "such" / "r.md"), *home)
    assert result.exit_code == 2
    assert f"the folder {tmp_path / 'no'} does not exist" in result.output
    assert not (tmp_path / "no").exists()
    result = invoke("report", "--out", str(tmp_path / "reports" / "r.md"), *home)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "reports" / "r.md").is_file()


def test_finetune_resume_of_an_assess_run_reads_an_assess_run(tmp_path: Path) -> None:
    with RunStore(tmp_path) as runs:
        run = runs.create("assess", "sklearn:digits", {})
    result = invoke("finetune", "--resume", run.id, "--home", str(tmp_path))
    assert result.exit_code == 2
    assert f"run '{run.id}' is an assess run" in result.output
    assert f"zooprobe assess --resume {run.id}" in result.output


# --- 6. one option vocabulary ---------------------------------------------------------------------


@pytest.mark.parametrize("command", [["search"], ["show"], ["assess"], ["finetune"], ["plugins"], ["catalog", "stats"]])
def test_format_is_text_or_json_everywhere_and_table_still_works(command: list[str]) -> None:
    help_text = invoke(*command, "--help").output
    assert "--format [text|json" in help_text, help_text
    assert "table" not in help_text.split("--format [", 1)[1].split("]", 1)[0]
    context = _command(*command).make_context(command[-1], ["--format", "table", *(["ID"] * (command == ["show"]))])
    assert context.params["fmt"] == "text"


def test_search_table_and_text_print_the_same(synced: Path) -> None:
    table = invoke("search", "mobilenet", "--limit", "3", "--format", "table")
    text = invoke("search", "mobilenet", "--limit", "3", "--format", "text")
    assert table.exit_code == text.exit_code == 0
    assert table.stdout == text.stdout and "ID" in text.stdout


def _command(*names: str) -> click.Command:
    command: click.Command = cli
    for name in names:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    return command


@pytest.mark.parametrize("command", ["assess", "finetune"])
def test_batch_size_and_format_have_help(command: str) -> None:
    options = {param.name: param for param in _command(command).params if isinstance(param, click.Option)}
    assert options["batch_size"].help and "memory" in options["batch_size"].help
    assert options["fmt"].help and "json" in options["fmt"].help


def test_every_command_takes_the_same_smallest_resolution() -> None:
    for command in ("assess", "finetune", "quickstart"):
        result = invoke(command, "--resolution", "7")
        assert result.exit_code == 2 and "x>=8" in result.output, (command, result.output)
        # 8 passes; the next option's own error (or the missing --data) is what stops these
        accepted = invoke(command, "--resolution", "8", "--train-size", "2.5")
        assert accepted.exit_code == 2 and "--resolution" not in accepted.output, (command, accepted.output)


def test_quickstart_help_makes_no_promise_of_minutes() -> None:
    text = " ".join(invoke("quickstart", "--help").output.split())
    assert "a few minutes" not in text and "--train-size 200, --resolution 32 or --epochs 1 shorten it" in text


# --- 7, 8. the extras README names install what they promise, and README says what each weighs ----


def _extras() -> dict[str, list[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return dict(project["optional-dependencies"])


def _closure(extra: str, extras: dict[str, list[str]]) -> set[str]:
    names: set[str] = set()
    for requirement in extras[extra]:
        if requirement.startswith("zooprobe["):
            for inner in requirement[len("zooprobe[") : -1].split(","):
                names |= _closure(inner, extras)
        else:
            names.add(requirement.split(">")[0].split("=")[0].split("<")[0].strip().lower())
    return names


def test_the_test_install_brings_parquet_and_datasets_support() -> None:
    extras = _extras()
    assert {"pandas", "pyarrow", "datasets"} <= _closure("test", extras)
    assert {"pandas", "pyarrow", "datasets"} <= _closure("all", extras)


def test_readme_says_what_each_extra_weighs_and_how_to_install_cpu_torch() -> None:
    readme = (ROOT / "README.md").read_text()
    table = readme.split("### What the install weighs", 1)[1].split("```", 1)[0]
    for extra in _extras():
        if extra != "all":
            row = next((line for line in table.splitlines() if line.startswith(f"| `{extra}` |")), None)
            assert row is not None and ("GB" in row or "MB" in row), extra
    assert "--index-url https://download.pytorch.org/whl/cpu" in readme
    assert "torch==2.14.1" in readme
