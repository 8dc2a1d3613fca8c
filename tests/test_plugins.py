"""Plugin contracts: a third-party source, misspelled hooks, the allow-list."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from zooprobe.cli import cli
from zooprobe.plugins.manager import get_plugin_manager, get_sources

PLUGIN_MODULE = """
from zooprobe import Entry, InputSpec, Source, hookimpl


class ToySource(Source):
    name = "toyzoo"

    def package_version(self):
        return "0.3"

    def entries(self):
        for width in (8, 16):
            yield Entry(source="toyzoo", name=f"toynet{width}", architecture=f"toynet{width}",
                        input=InputSpec(channels=1, default_resolution=(28, 28)), params=width * 1000,
                        tags=("toy",), description="a toy convolutional network")


@hookimpl
def register_sources():
    return [ToySource()]
"""


@pytest.fixture
def installed_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A real installed distribution declaring a 'zooprobe' entry point (dist-info on sys.path)."""
    install_plugin(tmp_path, monkeypatch, "toyzoo", "0.3", PLUGIN_MODULE)
    yield "toyzoo"
    sys.modules.pop("toyzoo_plugin", None)


def install_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, version: str, code: str) -> None:
    """Module ``{name}_plugin`` in distribution ``zooprobe-{name}``, registered as plugin ``name``."""
    site = tmp_path / "site"
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{name}_plugin.py").write_text(code)
    dist = site / f"zooprobe_{name}-{version}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: zooprobe-{name}\nVersion: {version}\n")
    (dist / "entry_points.txt").write_text(f"[zooprobe]\n{name} = {name}_plugin\n")
    monkeypatch.syspath_prepend(str(site))


def test_third_party_entry_point_adds_a_source(installed_plugin: str) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["catalog", "sync", "--source", "toyzoo"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "toyzoo: synced, 2 entries, version 0.3" in result.output
    result = runner.invoke(cli, ["search", "toy", "--format", "json", "--fields", "id,params"], catch_exceptions=False)
    rows = sorted(json.loads(result.output), key=lambda r: r["id"])
    assert rows == [{"id": "toyzoo:toynet16", "params": 16000}, {"id": "toyzoo:toynet8", "params": 8000}]
    plugins = json.loads(runner.invoke(cli, ["plugins", "--json"]).output)
    toy = next(p for p in plugins if p["name"] == "toyzoo")
    assert toy == {
        "name": "toyzoo",
        "version": "0.3",
        "module": "toyzoo_plugin",
        "builtin": False,
        "hooks": ["register_sources"],
        "metrics": [],
    }
    builtin = {p["name"] for p in plugins if p["builtin"]}
    assert builtin == {"metrics", "timm", "torchvision", "keras", "tfhub", "kaggle", "hf", "local"}


METRIC_PLUGIN_MODULE = """
from zooprobe import hookimpl
from zooprobe.metrics import Metric


def feature_norm(features, labels, **options):
    return 0.0


@hookimpl
def register_metrics():
    return [Metric("feature_norm", feature_norm, "features", "mean feature norm", "nobody 2024")]
"""


def test_plugins_lists_a_third_party_metric(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_plugin(tmp_path, monkeypatch, "normzoo", "1.2", METRIC_PLUGIN_MODULE)
    try:
        runner = CliRunner()
        text = runner.invoke(cli, ["plugins"], catch_exceptions=False).output
        assert "  feature_norm             features       mean feature norm [normzoo]" in text
        assert "  logme " in text
        plugins = {p["name"]: p for p in json.loads(runner.invoke(cli, ["plugins", "--format", "json"]).output)}
        assert plugins["normzoo"]["metrics"] == [
            {
                "name": "feature_norm",
                "input": "features",
                "description": "mean feature norm",
                "reference": "nobody 2024",
            }
        ]
    finally:
        sys.modules.pop("normzoo_plugin", None)


def test_allow_list_blocks_other_plugins(installed_plugin: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZOOPROBE_PLUGINS", "timm")
    assert set(get_sources()) == {"timm"}
    monkeypatch.setenv("ZOOPROBE_PLUGINS", "toyzoo,keras")
    assert set(get_sources()) == {"toyzoo", "keras"}


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("from zooprobe import hookimpl\n\n@hookimpl\ndef register_source():\n    return []\n", "register_source"),
        ("import a_dependency_that_is_not_installed\n", "ModuleNotFoundError"),
    ],
)
def test_a_broken_plugin_is_left_out_loudly_and_the_rest_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], code: str, reason: str
) -> None:
    # a misspelt hook or an import error in one installed package must not take the built-ins down
    from zooprobe.plugins import manager

    monkeypatch.setattr(manager, "_reported", set())
    install_plugin(tmp_path, monkeypatch, "typo", "1.0", code)
    try:
        pm = get_plugin_manager()
        assert "typo" in manager.PLUGIN_FAILURES and reason in manager.PLUGIN_FAILURES["typo"]
        assert pm.get_plugin("typo") is None and "torchvision" in get_sources(pm)
        assert "plugin 'typo' (typo_plugin) left out" in capsys.readouterr().err
        listed = CliRunner().invoke(cli, ["plugins"])
        assert listed.exit_code == 0 and "typo" in listed.output and "left out" in listed.output
        assert "logme" in listed.output
    finally:
        sys.modules.pop("typo_plugin", None)


def test_hook_register_sources_returns_sources() -> None:
    pm = get_plugin_manager(load_entrypoints=False)
    names = sorted(s.name for batch in pm.hook.register_sources() for s in batch)
    assert names == ["hf", "kaggle", "keras", "local", "tfhub", "timm", "torchvision"]


def test_duplicate_source_names_are_an_error() -> None:
    from zooprobe.errors import ZooprobeError
    from zooprobe.sources import timm_source

    class Again:
        register_sources = staticmethod(timm_source.register_sources)

    pm = get_plugin_manager(load_entrypoints=False)
    pm.register(Again(), name="again")
    with pytest.raises(ZooprobeError, match="two plugins register the source 'timm'"):
        get_sources(pm)


BROKEN_SOURCE = """
import os

from zooprobe import Entry, Source, hookimpl


class BrokenSource(Source):
    name = "broken"

    def package_version(self):
        return "1.0"

    def entries(self):
        if os.environ.get("BROKEN_HOW") == "entry":
            yield Entry(source="broken", name="net", architecture="net", tasks="image-classification")
        raise RuntimeError("listing exploded")


@hookimpl
def register_sources():
    return [BrokenSource()]
"""


def test_a_third_party_source_that_fails_to_list_does_not_stop_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin(tmp_path, monkeypatch, "broken", "1.0", BROKEN_SOURCE)
    try:
        args = ["catalog", "sync", "--source", "broken", "--source", "torchvision"]
        result = CliRunner().invoke(cli, args, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert "broken: failed, 0 entries" in result.output
        assert "RuntimeError: listing exploded (in broken_plugin; its stored entries are kept)" in result.output
        assert "torchvision: synced" in result.output
        # an entry of the wrong shape names itself and its field, and fails only its own source
        monkeypatch.setenv("BROKEN_HOW", "entry")
        result = CliRunner().invoke(cli, ["catalog", "sync", "--source", "broken"], catch_exceptions=False)
        assert result.exit_code == 0 and "broken: failed" in result.output
        assert "entry 'broken:net': tasks is 'image-classification', expected a tuple of strings" in result.output
    finally:
        sys.modules.pop("broken_plugin", None)


# --- meta-tests: every hook is documented and exercised ------------------------------------------


def hookspec_names() -> list[str]:
    """The hooks declared in zooprobe.plugins.hookspecs (any added later included)."""
    from zooprobe.plugins import hookspecs

    marker = f"{hookspecs.PROJECT}_spec"
    return sorted(name for name, value in vars(hookspecs).items() if callable(value) and hasattr(value, marker))


def test_the_hookspecs_are_found() -> None:
    # the meta-tests below are parametrised over this list: an empty one would pass them vacuously
    assert {"register_sources", "register_metrics"} <= set(hookspec_names())


@pytest.mark.parametrize("hook", hookspec_names())
def test_every_hook_is_documented_in_the_readme(hook: str) -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert "\n## Plugin hooks\n" in readme, "README.md needs a '## Plugin hooks' section"
    section = readme.split("\n## Plugin hooks\n", 1)[1].split("\n## ", 1)[0]
    assert f"\n### {hook}\n" in section, f"README.md's Plugin hooks section has no '### {hook}' heading"
    assert f"`{hook}(" in section, f"README.md's Plugin hooks section does not give the signature of {hook}"


@pytest.mark.parametrize("hook", hookspec_names())
def test_every_hook_has_a_test_named_after_it(hook: str) -> None:
    named = re.compile(rf"^def test_hook_{hook}(_\w*)?\(", re.MULTILINE)
    files = sorted(Path(__file__).parent.glob("test_*.py"))
    assert any(named.search(path.read_text()) for path in files), f"no test named test_hook_{hook}* in tests/"
