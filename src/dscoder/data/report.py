"""The run report: `report.json` for machines, `report.md` with the language table in the form of
the paper's Table 1 (size, files, share) and every drop reason, `languages.png`, and the lists of
what deduplication and decontamination removed (`duplicates.jsonl`, `contaminated.jsonl`).

The accounting must close: files seen = files kept + files dropped, summed over reasons. A gap
is a bug in the pipeline, so it raises instead of writing a report that does not add up.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from dscoder.data.steps import TaskResult


def _language_table(metas: list[TaskResult], removed: dict) -> dict[str, dict]:
    languages: dict[str, list[int]] = {}
    for meta in metas:
        for info in meta.infos:
            if info.id in removed:
                continue
            for name, (files, size) in info.composition.items():
                entry = languages.setdefault(name, [0, 0])
                entry[0] += files
                entry[1] += size
    total = sum(size for _, size in languages.values()) or 1
    ordered = sorted(languages.items(), key=lambda item: (-item[1][1], item[0]))
    return {
        name: {"bytes": size, "files": files, "share": round(100.0 * size / total, 4)}
        for name, (files, size) in ordered
    }


def write_report(
    output: Path,
    metas: list[TaskResult],
    removed: dict[str, tuple[str, str]],
    fingerprint: dict,
    seconds: float,
    tasks_resumed: int,
    shards: list[Path],
) -> dict:
    dropped: Counter = Counter()
    repo_failures: Counter = Counter()
    infos = {info.id: info for meta in metas for info in meta.infos}
    for meta in metas:
        dropped.update(meta.dropped)
        repo_failures.update(f.reason for f in meta.repo_failures)
    removed_kinds: Counter = Counter()
    for sample_id, (_, kind) in removed.items():
        removed_kinds[kind] += 1
        dropped[f"{kind}_duplicate"] += sum(infos[sample_id].composition[name][0] for name in infos[sample_id].composition)
    files_seen = sum(meta.files_seen for meta in metas)
    languages = _language_table(metas, removed)
    files_kept = sum(entry["files"] for entry in languages.values())
    if files_seen != files_kept + sum(dropped.values()):
        raise RuntimeError(
            f"report accounting does not close: seen {files_seen}, kept {files_kept}, dropped {sum(dropped.values())}"
        )
    bytes_seen = sum(meta.bytes_seen for meta in metas)
    bytes_kept = sum(entry["bytes"] for entry in languages.values())
    report = {
        "files_seen": files_seen,
        "files_kept": files_kept,
        "files_dropped": dict(sorted(dropped.items(), key=lambda item: (-item[1], item[0]))),
        "samples": sum(1 for i in infos if i not in removed),
        "samples_removed": {f"{kind}_duplicate": n for kind, n in sorted(removed_kinds.items())},
        "bytes_seen": bytes_seen,
        "bytes_kept": bytes_kept,
        "languages": languages,
        "repos": {
            "seen": sum(meta.repos_seen for meta in metas),
            "failed": dict(sorted(repo_failures.items())),
            "failures": [
                {"repo": f.repo, "reason": f.reason, "detail": f.detail} for meta in metas for f in meta.repo_failures
            ][:1000],
        },
        "contaminated_files": sum(len(meta.contaminated) for meta in metas),
        "shards": [p.name for p in shards],
        "seconds": round(seconds, 2),
        "mb_per_s": round(bytes_seen / 1e6 / seconds, 2) if seconds > 0 else None,
        "tasks_resumed": tasks_resumed,
        "fingerprint": fingerprint,
    }
    with open(output / "duplicates.jsonl", "w", encoding="utf-8") as handle:
        for sample_id, (kept_id, kind) in sorted(removed.items()):
            handle.write(json.dumps({
                "removed": sample_id, "removed_repo": infos[sample_id].repo,
                "kept": kept_id, "kept_repo": infos[kept_id].repo, "kind": kind,
            }) + "\n")
    with open(output / "contaminated.jsonl", "w", encoding="utf-8") as handle:
        for meta in metas:
            for row in meta.contaminated:
                handle.write(json.dumps(row) + "\n")
    (output / "report.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    (output / "report.md").write_text(render_markdown(report), encoding="utf-8")
    plot_languages(languages, output / "languages.png")
    return report


def render_markdown(report: dict) -> str:
    lines = [
        "# Data pipeline report",
        "",
        f"Files seen {report['files_seen']:,}, kept {report['files_kept']:,} "
        f"({report['bytes_kept'] / 1e6:,.1f} MB of {report['bytes_seen'] / 1e6:,.1f} MB read); "
        f"{report['samples']:,} samples in {len(report['shards'])} shard(s); "
        f"{report['repos']['seen']:,} repositories; {report['seconds']:.1f} s.",
        "",
        "## Languages (the form of the paper's Table 1)",
        "",
        "| Language | Size (MB) | Files | Share (%) |",
        "|---|---:|---:|---:|",
    ]
    for name, entry in report["languages"].items():
        lines.append(f"| {name} | {entry['bytes'] / 1e6:,.2f} | {entry['files']:,} | {entry['share']:.2f} |")
    total_bytes = sum(e["bytes"] for e in report["languages"].values())
    lines += [f"| **Total** | {total_bytes / 1e6:,.2f} | {report['files_kept']:,} | 100.00 |", ""]
    lines += ["## Files dropped, by reason", "", "| Reason | Files |", "|---|---:|"]
    for reason, count in report["files_dropped"].items():
        lines.append(f"| {reason} | {count:,} |")
    lines += [f"| **Total** | {sum(report['files_dropped'].values()):,} |", ""]
    if report["repos"]["failed"]:
        lines += ["## Repositories that failed", "", "| Reason | Repositories |", "|---|---:|"]
        lines += [f"| {reason} | {count} |" for reason, count in report["repos"]["failed"].items()]
        lines.append("")
    lines += [
        "Removed samples are listed with what they duplicated in `duplicates.jsonl`; files dropped "
        "by decontamination, with the benchmark text they matched, in `contaminated.jsonl`.",
        "",
    ]
    return "\n".join(lines)


def plot_languages(languages: dict[str, dict], path: Path, top: int = 20) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = list(languages.items())[:top]
    fig, ax = plt.subplots(figsize=(7, 0.35 * max(len(items), 3) + 1))
    names = [name for name, _ in items][::-1]
    shares = [entry["share"] for _, entry in items][::-1]
    ax.barh(names, shares, color="#4063d8")
    for y, share in enumerate(shares):
        ax.text(share, y, f" {share:.1f}%", va="center", fontsize=8)
    ax.set_xlabel("share of kept bytes (%)")
    ax.set_title("Languages in the output")
    ax.set_xlim(0, max(shares + [1]) * 1.15)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
