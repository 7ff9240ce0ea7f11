"""The state folder: one per app id and worker port; it is kept only while it matches Kafka
(same cluster, no table partition ahead of its changelog). The offsets are read from Faust's own
RocksDB files as Faust's store writes them (a contract test of the names state_dir relies on)."""

from __future__ import annotations

import faust
from faust.types import TP

from clickstream.settings import load
from clickstream.state_dir import mismatch, saved_offsets, state_folder

CHANGELOG = "app-click_windows-changelog"


def test_folder_is_per_app_id_and_worker_port(tmp_path):
    def folder(**env: str):
        return state_folder(load({"CLICKSTREAM_VAR_DIR": str(tmp_path), **env}, dotenv=None))

    assert folder() == tmp_path / "worker-6066" / "clickstream"
    assert folder(CLICKSTREAM_APP_ID="shadow") != folder()
    assert folder(CLICKSTREAM_WORKER_PORT="6067") != folder()


def test_folder_behind_its_changelogs_on_the_same_cluster_matches():
    saved = {TP(CHANGELOG, 0): 41, TP(CHANGELOG, 1): 0}
    ends = {TP(CHANGELOG, 0): 42, TP(CHANGELOG, 1): 900}
    assert mismatch("c1", "c1", saved, ends) is None
    assert mismatch(None, "c1", saved, ends) is None  # a folder from before the cluster stamp


def test_folder_of_another_cluster_does_not_match():
    reason = mismatch("c1", "c2", {}, {})
    assert reason is not None and "c1" in reason and "c2" in reason


def test_folder_ahead_of_a_changelog_does_not_match():
    reason = mismatch(None, "c1", {TP(CHANGELOG, 3): 1570}, {TP(CHANGELOG, 3): 12})
    assert (
        reason
        == f"it holds {CHANGELOG} partition 3 up to offset 1570, but that changelog ends at 12"
    )
    assert mismatch(None, "c1", {TP(CHANGELOG, 0): 5}, {}) is not None  # changelog gone


def test_saved_offsets_reads_what_faust_rocksdb_store_saved(tmp_path):
    app = faust.App("app", store="rocksdb://", datadir=str(tmp_path), env={})
    table = app.Table("click_windows", partitions=4)
    app.conf.tabledir.mkdir(parents=True)
    table.data.set_persisted_offset(TP(CHANGELOG, 1), 41)  # still open, as in a killed worker
    table.data.set_persisted_offset(TP(CHANGELOG, 3), 7)
    assert saved_offsets(app, 4) == {TP(CHANGELOG, 1): 41, TP(CHANGELOG, 3): 7}


def test_memory_store_saves_nothing(tmp_path):
    app = faust.App("app", store="memory://", datadir=str(tmp_path), env={})
    app.Table("click_windows", partitions=4)
    assert saved_offsets(app, 4) == {}
