"""The teaching notebooks (notebooks/*.ipynb, see notebooks/README.md).

Default suite (seconds): the committed files are small and carry no stale outputs, every
notebook has learning goals and a hidden solution for each exercise, every code cell
compiles, and every ``samic`` import they make still resolves (a renamed library function
fails here, not in a classroom).

``-m slow`` (minutes): each notebook is executed headless with nbclient on the CPU, with
SAMIC_NOTEBOOK_FAST=1 so that the training notebook trains for seconds only, under a
per-notebook time limit.
"""
from __future__ import annotations

import ast
import json
import os
import time
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = REPO / "notebooks"
NOTEBOOKS = (
    "01_selective_scan.ipynb",
    "02_semantic_clustering.ipynb",
    "03_svd_rrm.ipynb",
    "04_entropy_coding.ipynb",
    "05_full_codec_rdp.ipynb",
    "06_train_tiny_samic.ipynb",
)
DATA = Path(os.environ.get("SAMIC_DATA", REPO.parent / "shared" / "data"))
MAX_FILE_BYTES = 1_000_000
MAX_OUTPUT_BYTES = 200_000  # committed outputs, all cells together
NOTEBOOK_TIMEOUT_S = 300  # per notebook; each takes 10-20 s on a shared 2-core CPU (06 in its fast setting)
EXERCISE_MARK = "✏️ **Exercise"


def _read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOK_DIR / name, as_version=4)


def _is_solution(cell) -> bool:
    if cell.cell_type == "code":
        hidden = cell.metadata.get("jupyter", {})
        return "solution" in cell.metadata.get("tags", []) and hidden.get("source_hidden") and hidden.get("outputs_hidden")
    return cell.cell_type == "markdown" and "<details><summary>Solution</summary>" in cell.source


def test_the_notebook_set_is_complete():
    assert sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb")) == sorted(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_is_small_and_valid(name):
    path = NOTEBOOK_DIR / name
    assert path.stat().st_size < MAX_FILE_BYTES
    nb = _read(name)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    output_bytes = sum(len(json.dumps(cell.get("outputs", []))) for cell in nb.cells if cell.cell_type == "code")
    assert output_bytes < MAX_OUTPUT_BYTES, f"{name}: {output_bytes} bytes of stored outputs"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_teaches_with_goals_and_hidden_solutions(name):
    nb = _read(name)
    assert nb.cells[0].cell_type == "markdown" and "Learning goals" in nb.cells[0].source
    exercises = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "markdown" and EXERCISE_MARK in cell.source]
    assert exercises, f"{name} has no exercise"
    for i in exercises:
        assert i + 1 < len(nb.cells) and _is_solution(nb.cells[i + 1]), \
            f"{name}: the exercise in cell {i} is not followed by a hidden solution"


def _code_cells(nb) -> list[str]:
    return [cell.source for cell in nb.cells if cell.cell_type == "code"]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_code_compiles_and_library_imports_resolve(name):
    for index, source in enumerate(_code_cells(_read(name))):
        tree = ast.parse(source, filename=f"{name}[{index}]")
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "samic":
                namespace: dict = {}
                exec(compile(ast.Module([node], type_ignores=[]), f"{name}[{index}]", "exec"), namespace)
            elif isinstance(node, ast.Import) and any(alias.name.split(".")[0] == "samic" for alias in node.names):
                exec(compile(ast.Module([node], type_ignores=[]), f"{name}[{index}]", "exec"), {})


@pytest.mark.timeout(NOTEBOOK_TIMEOUT_S + 60)
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_executes_headless(name, monkeypatch):
    from nbclient import NotebookClient

    if not (DATA / "train").is_dir() or not (DATA / "kodak").is_dir():
        pytest.skip(f"the notebooks read photos from {DATA} (set SAMIC_DATA to its location)")
    monkeypatch.setenv("SAMIC_NOTEBOOK_FAST", "1")  # the kernel inherits this environment
    nb = _read(name)
    client = NotebookClient(nb, timeout=NOTEBOOK_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    start = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - start
    errors = [out for cell in nb.cells for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    assert not errors
    assert elapsed < NOTEBOOK_TIMEOUT_S
    print(f"{name}: executed in {elapsed:.1f} s")
