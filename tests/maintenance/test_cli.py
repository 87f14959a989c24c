"""The maintenance commands end to end: exit codes, JSON, HTML, and progress only on a terminal."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from cas_repo import ModelStore
from cas_repo.cli import main
from cas_repo.cli.render import Output
from cas_repo.maintenance import audit

from .conftest import age_store, locations, pack_path


@pytest.fixture
def repo(store_dir, make_md):
    with ModelStore(store_dir, backend_options={"fsync": False}) as s:
        for i in range(3):
            s.save_model({"w": np.full(20_000, i, dtype=np.float64), "i": i}, make_md("m", IC=0.01 * i))
        s.save_model({"w": np.arange(5_000)}, make_md("gone"))
        s.delete_model("gone")
    return store_dir


def run(capsys, *args):
    code = main(["--repo", str(args[0]), *args[1:]])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_fsck_exit_codes_clean_problems_usage(repo, capsys):
    assert run(capsys, repo, "fsck")[0] == 0
    code, out, err = run(capsys, repo, "fsck", "--full", "--json")
    assert code == 0 and json.loads(out)["clean"] is True and err == ""  # no progress bar when piped
    with ModelStore(repo) as s:
        pack = locations(s, "m", 2)[0].pack
    pack_path(repo, pack).unlink()
    code, out, _ = run(capsys, repo, "fsck")
    assert code == 1 and "pack-missing" in out and "m@2" in out and "do: restore the pack" in out
    assert run(capsys, repo, "fsck", "--grace", "soon")[0] == 2
    assert run(capsys, repo, "fsck", "--bogus")[0] == 2


def test_fsck_strict_counts_warnings(repo, capsys):
    (pack_path(repo, "ab" * 32).parent).mkdir(parents=True, exist_ok=True)
    (pack_path(repo, "ab" * 32).parent / ".tmp-1-x").write_bytes(b"x")
    age_store(repo, 3)
    assert run(capsys, repo, "fsck")[0] == 0
    code, out, _ = run(capsys, repo, "fsck", "--strict")
    assert code == 1 and "temp-file" in out
    code, out, _ = run(capsys, repo, "fsck", "--repair", "--strict")
    assert code == 0 and "repaired: temp-file" in out


def test_gc_dry_run_then_run_prints_what_it_freed(repo, capsys):
    age_store(repo, 3)
    code, out, _ = run(capsys, repo, "gc", "--dry-run", "--purge-deleted-older-than", "0", "--json")
    plan = json.loads(out)
    assert code == 0 and plan["dry_run"] and [p["model_id"] for p in plan["plan"]["purge"]] == ["gone"]
    code, out, _ = run(capsys, repo, "gc", "--purge-deleted-older-than", "0s", "--grace", "1h")
    assert code == 0 and "purge gone@1" in out and "freed" in out and "purged 1 versions" in out
    assert run(capsys, repo, "gc", "--repack-below", "2")[0] == 2


def test_retain_dry_run_apply_and_restore(repo, capsys):
    code, out, _ = run(capsys, repo, "retain", "--keep-last", "1", "--dry-run")
    assert code == 0 and "would retire 2 versions" in out and "m@1" in out
    code, out, _ = run(capsys, repo, "retain", "--where", "metrics['IC'] < 0.015", "--json")
    assert code == 0 and [v["version"] for v in json.loads(out)["retired"]] == [1, 2]
    code, out, _ = run(capsys, repo, "retain", "--restore", "m@2")
    assert code == 0 and "restored: m@2" in out
    assert run(capsys, repo, "retain")[0] == 2
    code, _, err = run(capsys, repo, "retain", "--where", "no_such_column > 1")
    assert code == 2 and "v_versions" in err


def test_retain_names_what_protects_each_kept_version(repo, capsys):
    with ModelStore(repo) as s:
        s.set_alias("m", "prod", 1)
        s.set_tags("m", {"stage": "canary"}, version=2)
    code, out, _ = run(capsys, repo, "retain", "--keep-last", "1", "--keep-tagged", "stage", "--dry-run")
    assert code == 0 and "would retire 0 versions" in out
    assert "kept m@1: alias prod pins it" in out
    assert "kept m@2: protected by --keep-tagged (tag stage)" in out
    code, out, _ = run(capsys, repo, "--json", "retain", "--keep-last", "1", "--keep-tagged", "stage", "--dry-run")
    assert [(v["version"], v["protected_by"]) for v in json.loads(out)["protected"]] == [(1, "alias prod"),
                                                                                        (2, "tag stage")]


def test_audit_json_and_html(repo, capsys, tmp_path):
    html = tmp_path / "audit.html"
    code, out, _ = run(capsys, repo, "audit", "--json", "--html", str(html))
    report = json.loads(out)
    assert code == 0 and report["walk"]["agrees"] is True and report["totals"]["versions"] == 4
    assert report["totals"]["dedup_ratio"] > 0 and "<svg" in html.read_text()
    code, out, _ = run(capsys, repo, "audit", "--versions")
    assert code == 0 and "m@3" in out and "object store walk agrees" in out


def test_rebuild_catalog_from_the_command_line(repo, capsys):
    with ModelStore(repo) as s:
        index = s.catalog.path
    index.parent.mkdir(parents=True, exist_ok=True)
    index.write_bytes(b"garbage" * 1000)
    code, out, _ = run(capsys, repo, "rebuild-catalog")
    assert code == 0 and "rebuilt" in out and "2 models, 5 events" in out and "old index" not in out
    code, out, _ = run(capsys, repo, "rebuild-catalog", "--json")
    assert code == 0 and json.loads(out)["before"] == [2, 5]
    code, out, _ = run(capsys, repo, "ls", "--deleted")
    assert code == 0 and "gone" in out and "m" in out


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_long_operations_show_progress_on_a_terminal_only(repo):
    tty, piped = _Terminal(), io.StringIO()
    with ModelStore(repo) as s:
        audit(s, progress=Output(io.StringIO(), tty).progress)
        audit(s, progress=Output(io.StringIO(), piped).progress)
    assert "audit: walking packs" in tty.getvalue() and "4/4" in tty.getvalue()  # one pack a save
    assert piped.getvalue() == ""
