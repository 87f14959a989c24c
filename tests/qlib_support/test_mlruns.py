"""Reading an MLflow file store whose run metadata was edited by hand into the wrong shapes."""

from __future__ import annotations

from cas_repo.qlib_support.mlruns import open_runs


def test_a_garbled_run_is_reported_alone_and_the_scan_goes_on(tmp_path):
    exp = tmp_path / "1"
    for run, meta in {
        "a_list_status": "run_id: a\nstatus: [3]\nstart_time: 1700000000000\n",
        "b_list_time": "run_id: b\nstatus: 3\nstart_time: [1700000000000]\n",
        "c_fine": "run_id: c\nstatus: 3\nstart_time: 1700000000000\n",
    }.items():
        (exp / run).mkdir(parents=True)
        (exp / run / "meta.yaml").write_text(meta)
    (exp / "meta.yaml").write_text("name: exp\nexperiment_id: '1'\n")
    # Both bad fields once raised TypeError (a list is no dict key, nor an int()), ending the scan.
    a, b, c = open_runs(tmp_path)
    assert (a.run_id, a.status, a.problem) == ("a", "[3]", None)
    assert b.run_id == "b_list_time" and b.problem.startswith("unreadable run metadata: ")
    assert (c.run_id, c.status, c.problem) == ("c", "FINISHED", None)
