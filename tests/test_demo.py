"""The demo's closing evaluation: a rerun's newly trained model gets a fresh run directory."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from dscoder import demo


def test_a_rerun_evaluates_its_new_model_afresh(tmp_path, monkeypatch: pytest.MonkeyPatch, capsys):
    data = tmp_path / "benchmarks" / "humaneval" / "HumanEval.jsonl.gz"
    data.parent.mkdir(parents=True)
    data.write_bytes(b"")
    monkeypatch.setattr(demo, "BENCHMARKS", tmp_path / "benchmarks")
    # What an earlier demo left: a run of its own model, which the runner would refuse to resume
    # with another one.
    stale = tmp_path / "out" / "eval" / "runs" / "humaneval-python"
    stale.mkdir(parents=True)
    (stale / "run.json").write_text(json.dumps({"source": "checkpoint of an earlier demo"}))
    seen = []

    def evaluate(benchmark, path, source, output_dir, settings, note):
        seen.append(list(output_dir.rglob("*")))
        return SimpleNamespace(pass_at_k={"pass@1": 0.0}, statuses={"failed": 20}, problems=20)

    monkeypatch.setattr("dscoder.eval.api.evaluate", evaluate)
    monkeypatch.setattr("dscoder.eval.sources.LocalModel", lambda path, **options: SimpleNamespace(path=path))
    demo._eval_stage(tmp_path / "instruct", tmp_path / "out")
    assert seen == [[]]
    assert "pass@1 0.000 on 20 problems" in capsys.readouterr().out


def test_a_rerun_after_the_installation_changed_builds_the_data_afresh(tmp_path, monkeypatch: pytest.MonkeyPatch,
                                                                        capsys):
    from dscoder.data.sources import RepoRef

    monkeypatch.setattr(demo, "BENCHMARKS", tmp_path / "no-benchmarks")
    packages = tmp_path / "site-packages"
    for name in ("alpha", "beta"):
        (packages / name).mkdir(parents=True)
        (packages / name / "__init__.py").write_text(f"def {name}(x):\n    return x + 1\n" * 5)
    installed = [RepoRef("alpha", "dir", str(packages / "alpha"))]
    monkeypatch.setattr(demo, "python_installation_repos", lambda: list(installed))
    out = tmp_path / "out"
    demo._data_stage(out, workers=1)
    (out / "tokenizer").mkdir()
    (out / "tokenizer" / "tokenizer.json").write_text("{}")  # learned from the first corpus
    installed.append(RepoRef("beta", "dir", str(packages / "beta")))  # a package installed since
    demo._data_stage(out, workers=1)
    assert "building the data and the tokenizer afresh" in capsys.readouterr().out
    report = json.loads((out / "data" / "report.json").read_text())
    assert [name for name, *_ in report["fingerprint"]["inputs"]] == ["alpha", "beta"]
    assert not (out / "tokenizer").exists()
