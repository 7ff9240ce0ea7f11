"""Our top-level packages are the ones imported (PyTables is also called `tables`)."""

from __future__ import annotations

from pathlib import Path

import agents
import dashboard
import streams
import tables

ROOT = Path(__file__).resolve().parents[2]


def test_tables_is_our_package_not_pytables():
    assert Path(tables.__file__).resolve().parent == ROOT / "tables"
    assert hasattr(tables, "__path__") and not hasattr(tables, "open_file")


def test_design_card_packages_import_from_the_project():
    for package in (streams, agents, dashboard):
        assert Path(package.__file__).resolve().parent.parent == ROOT
