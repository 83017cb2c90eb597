"""Inference: prompts of the four modes, sampling, stop strings, and the batched engine.

See `dscoder.infer.engine` for the step-level API a scheduler drives.
"""

from dscoder.infer.engine import Engine, Request, Result, StepOutput
from dscoder.infer.prompts import Prompt, chat_prompt, completion_prompt, infill_prompt, repo_prompt
from dscoder.infer.repo_context import RepoContext, build_repo_context
from dscoder.infer.sampling import SamplingParams

__all__ = [
    "Engine",
    "Prompt",
    "RepoContext",
    "Request",
    "Result",
    "SamplingParams",
    "StepOutput",
    "build_repo_context",
    "chat_prompt",
    "completion_prompt",
    "infill_prompt",
    "repo_prompt",
]
