"""Bad input is refused when a spec is parsed and expanded, before anything is queued: one
line naming the file, the field and what is allowed. Also: the data catalog and the config
module cannot drift from the loaders and rules they describe, and stay free of torch."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from corrgd.data import catalog
from corrgd.learn.architectures import ARCHITECTURES
from corrgd.spec.config import ALGORITHMS, PER_MEMBER, RunConfig
from corrgd.spec.sweeps import SpecError, expand, load_spec, plan

BASE = "dataset: digits\nnetwork: mlp\nalgorithm: bp\n"
SYNTHETIC = "dataset: synthetic-correlated\nnetwork: mlp\nalgorithm: bp\n"


def refused(tmp_path: Path, text: str, *, dry_run: bool = False) -> SpecError:
    """The SpecError of spec `text` (written to a file) on load and expand (or plan)."""
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as e:
        sweep = load_spec(path)
        plan(sweep) if dry_run else expand(sweep)
    line = str(e.value)
    assert "\n" not in line
    assert line.startswith(f"{path}: {e.value.field}: ")
    return e.value


# (spec text, field, words the message must contain: what is allowed)
BAD = {
    "negative hidden width": (BASE + "hidden: [-5]\n", "hidden", [">= 1", "[-5]"]),
    "width on mlp": (BASE + "width: 64\n", "width", ["network mlp takes hidden; got width"]),
    "depth on a fixed net": ("dataset: cifar10\nnetwork: crgd-conv\nalgorithm: bp\ndepth: 2\n",
                             "depth", ["crgd-conv takes none of width, depth, hidden"]),
    "conv net on a too small input": (
        "dataset: digits\nnetwork: npd-tiny-conv\nalgorithm: bp\n", "network",
        ["too small", "networks that fit: copi-cifar, copi-mnist, crgd-dense, mlp, npd-fc"]),
    "conv net on vector data": (
        "dataset: diabetes\nnetwork: convnet\nalgorithm: bp\nloss: mse\n", "network",
        ["image inputs", "networks that fit: ", "mlp"]),
    "conv net on synthetic vectors": (
        "dataset: synthetic-correlated\nnetwork: crgd-conv\nalgorithm: bp\n", "network",
        ["image inputs"]),
    "misspelt data option": (
        SYNTHETIC + "data: {corelation: 0.5}\n", "data.corelation",
        ["unknown option corelation", "did you mean correlation?", "allowed: n_train"]),
    "data option of another set": (BASE + "data: {crop: 32}\n", "data.crop",
                                   ["allowed: normalize"]),
    "data option out of range": (SYNTHETIC + "data: {correlation: 1.0}\n", "data.correlation",
                                 ["a number in [0, 1)", "1.0"]),
    "data option of the wrong type": (SYNTHETIC + "data: {n_train: many}\n", "data.n_train",
                                      ["an integer in [1, 100000000]"]),
    "data option that is not a bool": (BASE + "data: {normalize: 1}\n", "data.normalize",
                                       ["true or false"]),
    "crop beyond the image": ("dataset: tiny-imagenet\nnetwork: crgd-conv\nalgorithm: bp\n"
                              "data: {crop: 65}\n", "data.crop", ["[1, 64] or null"]),
    "unknown task": (SYNTHETIC + "data: {task: ranking}\n", "data.task",
                     ["one of classification, regression"]),
    "classes in a regression task": (
        SYNTHETIC + "loss: mse\ndata: {task: regression, num_classes: 3}\n", "data.num_classes",
        ["num_outputs"]),
    "image shape in a regression task": (
        SYNTHETIC + "loss: mse\ndata: {task: regression, shape: [1, 8, 8]}\n", "data.shape",
        ["needs task classification"]),
    "val_size of the whole training split": (BASE + "val_size: 1437\n", "val_size",
                                             ["0 to 1436", "digits"]),
    "val_size beyond synthetic n_train": (SYNTHETIC + "data: {n_train: 100}\nval_size: 500\n",
                                          "val_size", ["0 to 99"]),
    "cross-entropy on regression data": ("dataset: diabetes\nnetwork: mlp\nalgorithm: bp\n",
                                         "loss", ["choose from mse, sse, half_sse"]),
    "cross-entropy on regression synthetic": (SYNTHETIC + "data: {task: regression}\n", "loss",
                                              ["task regression", "mse, sse, half_sse"]),
    "path in the name": (BASE + 'name: "../../x"\n', "name", ["A-Z a-z 0-9 . _ -"]),
    "separator in the name": (BASE + "name: a/b\n", "name", ["'a/b'", "A-Z a-z 0-9 . _ -"]),
    "dot-dot in the name": (BASE + "name: a..b\n", "name", ["without '..'"]),
    "hidden name": (BASE + "name: .x\n", "name", ["not starting with '.'"]),
    "a name CLI flags would take for an option": (BASE + "name: -rf\n", "name",
                                                  ["'-rf'", "not starting with '.' or '-'"]),
    "space in the name": (BASE + "name: my sweep\n", "name", ["A-Z a-z 0-9 . _ -"]),
    "long name": (BASE + f"name: {'x' * 101}\n", "name", ["101 characters", "1 to 100"]),
    "duplicate key": (BASE + "lr: 1.0e-3\nlr: 1.0e-4\n", "line 5",
                      ["duplicate key lr (first on line 4)"]),
    "duplicate key in a grid": (BASE + "grids:\n  - {lr: 1.0e-3,\n     lr: 1.0e-4}\n",
                                "line 6", ["duplicate key lr (first on line 5)"]),
    "duplicate key in data": (SYNTHETIC + "data:\n  dim: 8\n  dim: 9\n", "line 6",
                              ["duplicate key dim (first on line 5)"]),
    "a list where a number goes": (BASE + "epochs: [[1, 2]]\nseed: [0, 1]\n", "epochs",
                                   ["valid integer", "[1, 2]"]),
    "misspelt field": (BASE + "decor_lrr: 1.0e-3\n", "decor_lrr",
                       ["did you mean decor_lr?", "allowed: "]),
    "misspelt field in a grid": (BASE + "grids:\n  - {sed: 1}\n", "grids[0].sed",
                                 ["did you mean seed?"]),
    "misspelt select key": (BASE + "select: {from: g, metrc: val_acc}\n", "select.metrc",
                            ["did you mean metric?", "allowed: from, metric, params"]),
}


@pytest.mark.parametrize("dry_run", [False, True], ids=["expand", "plan"])
@pytest.mark.parametrize("case", BAD.values(), ids=BAD.keys())
def test_bad_input_is_one_line_naming_file_field_and_allowed(
        tmp_path: Path, case: tuple[str, str, list[str]], dry_run: bool) -> None:
    text, field, words = case
    error = refused(tmp_path, text, dry_run=dry_run)
    assert error.field == field
    for word in words:
        assert word in error.message


def test_bad_value_deep_in_a_grid_is_refused_by_plan_too(tmp_path: Path) -> None:
    """plan validates every value of every axis, not only the first run."""
    error = refused(tmp_path, BASE + "seed: [0, 1, 2]\nlr: [1.0e-3, 1.0e-4, -1]\n",
                    dry_run=True)
    assert error.field == "lr" and "greater than 0" in error.message
    error = refused(tmp_path, BASE + "val_size: [0, 10, 5000]\nseed: [0, 1]\n", dry_run=True)
    assert error.field == "val_size"


def test_good_settings_pass(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(
        "name: ok_1.2-b\ndataset: synthetic-correlated\nnetwork: convnet\nalgorithm: bp\n"
        "data: {shape: [3, 16, 16], n_train: 500, correlation: 0, normalize: false}\n"
        "val_size: 100\nwidth: 32\n"
        "grids:\n  - {loss: ce}\n  - {loss: mse, network: mlp, width: null, hidden: [8],\n"
        "     data: {task: regression, num_outputs: 2, noise: 0.1, standardize_targets: true}}\n")
    runs = expand(load_spec(path))
    assert [r.loss for r in runs] == ["ce", "mse"]


def test_yaml_merge_keys_are_not_duplicates() -> None:
    from corrgd.spec.sweeps import parse_spec

    text = BASE + "common: &c {lr: 1.0e-3, seed: 1}\n"
    with pytest.raises(SpecError, match="common: unknown field"):
        parse_spec(text, source="s.yaml")
    runs = expand(parse_spec(BASE + "grids:\n  - &g {lr: 1.0e-3, seed: 1}\n"
                                    "  - {<<: *g, seed: 2}\n", source="s.yaml"))
    assert [(r.lr, r.seed) for r in runs] == [(1e-3, 1), (1e-3, 2)]


# -- no drift -------------------------------------------------------------------------


def test_algorithm_names_are_the_rules() -> None:
    from corrgd.learn.rules import RULES

    assert tuple(RULES) == ALGORITHMS


def test_catalog_options_are_the_loaders_keyword_parameters() -> None:
    from corrgd.data.registry import DATASETS, load_dataset

    assert sorted(catalog.DATASETS) == sorted(DATASETS)
    own = _keywords(load_dataset)
    assert set(own) == set(catalog.LOAD_OPTIONS) | set(catalog.NOT_DATA_OPTIONS)
    for name, loader in DATASETS.items():
        params = _keywords(loader)
        assert set(params) - set(catalog.LOADER_ARGUMENTS) == set(catalog.DATASETS[name].options)
        expected = {**{k: v for k, v in params.items() if k not in catalog.LOADER_ARGUMENTS},
                    **{k: own[k] for k in catalog.LOAD_OPTIONS}}
        assert {k: o.default for k, o in catalog.options_of(name).items()} == expected, name


def _keywords(fn: object) -> dict[str, object]:
    """A function's parameters (but the first, positional one) with their defaults."""
    params = list(inspect.signature(fn).parameters.values())  # type: ignore[arg-type]
    return {p.name: (None if p.default is inspect.Parameter.empty else p.default)
            for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


def test_catalog_shapes_are_what_the_loaders_give() -> None:
    """Sets that load offline: split sizes, input shape and outputs as the catalog says."""
    from corrgd.data import load_dataset

    for name, options in (("digits", {}), ("diabetes", {}),
                          ("synthetic-correlated", {"n_train": 50, "n_test": 20, "dim": 6}),
                          ("synthetic-correlated", {"n_train": 50, "n_test": 20,
                                                    "shape": [2, 3, 4]}),
                          ("synthetic-correlated", {"n_train": 50, "n_test": 20,
                                                    "task": "regression", "num_outputs": 3})):
        shape = catalog.dataset_shape(name, options)
        data = load_dataset(name, **options)
        assert (len(data.train.y), len(data.test.y)) == (shape.train, shape.test), name
        assert tuple(data.input_shape) == shape.input_shape, name
        assert data.num_outputs == shape.outputs, name
        assert data.task == catalog.dataset_task(name, options)


def test_sizing_keeps_its_dataset_shapes() -> None:
    from corrgd.spec import sizing

    assert sizing.DATASET_SHAPES is catalog.DATASET_SHAPES
    assert sizing.DATASET_SHAPES["cifar10"] == sizing.DatasetShape(50000, 10000, (3, 32, 32), 10)
    config = RunConfig(dataset="tiny-imagenet", data={"crop": None}, network="npd-tiny-conv",
                       algorithm="bp")
    assert sizing.dataset_shape(config).input_shape == (3, 64, 64)


def test_every_architecture_option_is_a_run_setting() -> None:
    from corrgd.spec.config import ARCHITECTURE_OPTIONS

    for arch in ARCHITECTURES.values():
        assert set(arch.options) <= set(ARCHITECTURE_OPTIONS)
        assert set(arch.options) <= set(inspect.signature(arch.hidden).parameters)
    assert not set(ARCHITECTURE_OPTIONS) & set(PER_MEMBER)


def test_configuration_imports_no_torch() -> None:
    code = ("import sys, corrgd.spec.config, corrgd.spec.sweeps, corrgd.spec.cost, "
            "corrgd.spec.sizing; "
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'torchvision')); print(heavy)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"
