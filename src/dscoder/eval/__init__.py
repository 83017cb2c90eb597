"""Evaluation: any source of completions -> sandboxed execution -> pass@k and reports.

    api.evaluate        score one benchmark file and refresh an output directory's reports
    benchmarks/         HumanEval (8 languages), MBPP, PAL-Math, DS-1000, APPS
    sources             where completions come from: SamplesFile, OpenAIEndpoint, LocalModel
    runner              generation and execution with resume; the output directory's layout
    report              summary.json, samples.jsonl, results.{md,json,png}
    sandbox, languages  running untrusted programs in the eight languages
    extract, math_answers, symbolic, passk   the pieces the benchmarks share
"""
