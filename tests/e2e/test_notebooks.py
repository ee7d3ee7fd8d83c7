"""The analyst, auditor and finance notebooks, executed (nbclient, a real IPython kernel
with its own Spark session) on a demo warehouse: committed without outputs, no cell fails,
and each shows what it is for."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


@pytest.fixture(scope="module")
def demo(demo_run) -> Path:
    """The folder of the suite's demo warehouse (the notebooks' working directory)."""
    warehouse, result = demo_run
    assert result.returncode == 0, result.stderr
    return warehouse.parent


SHOWN = {
    "analyst": ["api_calls", "estimated_total", "region"],
    "auditor": ["matches the line", "landing file", "billing.invoices version"],
    "finance": ["dry run", "result:", "proposed.yaml"],
}


def _execute(name: str, folder: Path):
    """Run one notebook in a kernel of its own; the executed notebook."""
    import nbformat
    from nbclient import NotebookClient

    book = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    code = [cell for cell in book.cells if cell.cell_type == "code"]
    assert code and not any(cell.outputs or cell.execution_count for cell in code), (
        f"{name}.ipynb is committed with outputs"
    )
    resources = {"metadata": {"path": str(folder)}}
    NotebookClient(book, kernel_name="python3", timeout=600, resources=resources).execute()
    return book


def test_notebooks_run_on_the_demo_warehouse(demo: Path, monkeypatch) -> None:
    """The three at once, each in its own kernel and Spark session (the machine's two
    cores are busier than with one at a time); a failing cell raises, naming itself."""
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setenv("METERLAKE_WAREHOUSE", str(demo / "warehouse"))
    monkeypatch.setenv("METERLAKE_SHUFFLE_PARTITIONS", "2")
    monkeypatch.delenv("METERLAKE_NOW", raising=False)
    with ThreadPoolExecutor(len(SHOWN)) as pool:
        books = dict(zip(SHOWN, pool.map(_execute, SHOWN, [demo] * len(SHOWN)), strict=True))
    for name, book in books.items():
        outputs = [o for cell in book.cells if cell.cell_type == "code" for o in cell.outputs]
        assert not [o for o in outputs if o.output_type == "error"], name
        text = "\n".join(
            o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in outputs
        )
        for expected in SHOWN[name]:
            assert expected in text, (name, expected, text[-2000:])
    analyst = [o for cell in books["analyst"].cells for o in cell.get("outputs", [])]
    assert any("image/png" in o.get("data", {}) for o in analyst)  # the trend plot
