"""`label` and `label-eval` subcommands, standalone and registered under a parent parser."""

from __future__ import annotations

import argparse
import io
import json

from libs.labeler import cli


def test_label_file(tmp_path, capsys):
    path = tmp_path / "report.txt"
    path.write_text("Small left pleural effusion. No pneumothorax.")
    assert cli.main(["label", str(path)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["observations"]["Pleural Effusion"]["status"] == "positive"
    assert data["observations"]["Pneumothorax"]["status"] == "negative"


def test_label_stdin(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("Cardiomegaly."))
    assert cli.main(["label", "-", "--compact"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert json.loads(out)["positive"] == ["Cardiomegaly"]


def test_register_under_a_parent_parser(tmp_path, capsys):
    parent = argparse.ArgumentParser(prog="cxr-report")
    sub = parent.add_subparsers(dest="command", required=True)
    cli.register(sub)
    path = tmp_path / "r.txt"
    path.write_text("No acute disease.")
    args = parent.parse_args(["label", str(path)])
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out)["observations"]["No Finding"]["status"] == "positive"
    args = parent.parse_args(["label-eval", "--reports", "x.whl", "--json"])
    assert args.command == "label-eval" and str(args.reports) == "x.whl" and args.json
