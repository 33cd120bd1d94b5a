"""Push a finished run's output folder to the Hugging Face Hub.

The last step of the flow (... -> train -> report -> save/push). Only the final artefacts
travel: the best model, its processor files, the card, curves, report and the run's JSON
and YAML records; `checkpoint-*` folders and `training_args.bin` (a pickle of
`TrainingArguments` that can hold `hub_token`) stay local.

The token comes from the argument, `HF_TOKEN`, or the user's `hf auth login`, in that
order (huggingface_hub resolves the last two). It is sent in the Authorization header
only: it is never written to a file, never logged, and redacted from error messages.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

from tl_hf.errors import UserError

logger = logging.getLogger(__name__)

# Top-level files of an output folder that belong on the Hub (matched with fnmatch).
PUSH_PATTERNS = (
    # model
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "model-*-of-*.safetensors",
    "model.safetensors.index.json",
    # tokenizer / image processor / feature extractor / processor
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "*.model",  # sentencepiece
    "preprocessor_config.json",
    "processor_config.json",
    "feature_extractor_config.json",
    "image_processor_config.json",
    # card, report and records
    "README.md",
    "training_curves.png",
    "augment_preview*.png",
    "confusion_matrix.png",
    "report.html",
    "training_history.json",
    "diagnosis.json",
    "all_results.json",
    "train_results.json",
    "eval_results.json",
    "test_results.json",
    "test_predictions.json",
    "param_groups.json",
    "run_config.yaml",
)
# Never pushed, whatever the patterns say: checkpoints and pickled arguments.
NEVER_PUSH = ("checkpoint-*", "training_args.bin", "runs", ".*")

DEFAULT_COMMIT_MESSAGE = "Upload fine-tuned classifier (tl-hf)"


class PushError(RuntimeError):
    """A push that failed for good; the message says the local output is intact and how to retry."""


@dataclass
class HubSettings:
    """The Hub flags of a run, taken out of `TrainingArguments` (see `detach_hub_settings`)."""

    push: bool
    repo_id: str
    private: bool | None
    token: str | None

    def __repr__(self) -> str:  # a printed or logged settings object never shows the token
        token = "<redacted>" if self.token else None
        return f"HubSettings(push={self.push}, repo_id={self.repo_id!r}, private={self.private}, token={token})"


def detach_hub_settings(training) -> HubSettings:
    """Take the Hub flags out of `TrainingArguments` before the `Trainer` sees them.

    Sets `training.push_to_hub = False` and `training.hub_token = None` in place, so the
    Trainer neither pushes every checkpoint by itself nor pickles the token into
    `training_args.bin` (it saves the whole `TrainingArguments` object there, token
    included). Push the finished folder afterwards with `push_output_dir`.

    Returns:
        push flag, repo id (`hub_model_id`, default: the output folder's name, as Trainer
        does), `hub_private_repo` and the token.
    """
    settings = HubSettings(
        push=bool(training.push_to_hub),
        repo_id=training.hub_model_id or Path(training.output_dir).resolve().name,
        private=training.hub_private_repo,
        token=training.hub_token,
    )
    training.push_to_hub = False
    training.hub_token = None
    return settings


def select_push_files(output_dir: str | os.PathLike) -> list[str]:
    """The top-level files of `output_dir` that `push_output_dir` uploads, sorted."""
    root = Path(output_dir)
    names = []
    for path in sorted(root.iterdir()):
        if not path.is_file() or any(fnmatch.fnmatch(path.name, p) for p in NEVER_PUSH):
            continue
        if any(fnmatch.fnmatch(path.name, p) for p in PUSH_PATTERNS):
            names.append(path.name)
    return names


def redact(text: str, token: str | None) -> str:
    """`text` with every occurrence of `token` replaced by a placeholder."""
    if token:
        text = text.replace(token, "<redacted token>")
    return text


def retry_command(output_dir: str | os.PathLike, repo_id: str, private: bool | None = None) -> str:
    """The shell command that pushes `output_dir` again."""
    parts = ["python", "-m", "tl_hf.cli.push", str(output_dir), "--hub_model_id", repo_id]
    if private:
        parts.append("--private")
    return " ".join(shlex.quote(p) for p in parts)


def is_transient(error: BaseException) -> bool:
    """Whether an error from huggingface_hub is worth retrying: 5xx, 429, connection, timeout."""
    import httpx2 as httpx  # huggingface_hub 2.x speaks httpx2
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(error, HfHubHTTPError):
        response = getattr(error, "response", None)
        status = getattr(response, "status_code", None)
        return status is not None and (status >= 500 or status == 429)
    return isinstance(error, httpx.TransportError | ConnectionError | TimeoutError)


def _check_no_token(output_dir: Path, names: list[str], token: str) -> None:
    # A token inside a pushed file would leak it to everyone who can read the repo.
    needle = token.encode()
    for name in names:
        if needle in (output_dir / name).read_bytes():
            raise UserError(
                f"{output_dir / name} contains your Hugging Face token: remove it from that file "
                "before pushing (nothing was uploaded)"
            )


def check_push_ready(repo_id: str | None, token: str | None = None) -> str:
    """Check, before a run trains, that its push can happen; returns the token to use.

    Raises:
        UserError: no repo id, offline mode, or no token.
    """
    from huggingface_hub import constants, get_token

    if not repo_id or not repo_id.strip():
        raise UserError("no Hub repo given: pass --hub_model_id NAMESPACE/NAME")
    if constants.is_offline_mode():
        raise UserError("HF_HUB_OFFLINE is set, so the Hub cannot be reached: unset it to push")
    token = token or get_token()
    if not token:
        raise UserError(
            "no Hugging Face token: run `hf auth login` or set HF_TOKEN (or pass --hub_token)"
        )
    return token


def push_output_dir(
    output_dir: str | os.PathLike,
    repo_id: str,
    private: bool | None = None,
    token: str | None = None,
    revision: str | None = None,
    commit_message: str = DEFAULT_COMMIT_MESSAGE,
    max_attempts: int = 4,
    base_delay: float = 2.0,
) -> str:
    """Upload a finished run's output folder to a Hub model repo, creating the repo if needed.

    Args:
        output_dir: The run's output folder (model, processor, card, records).
        repo_id: `namespace/name`, or `name` for the token owner's namespace.
        private: Create the repo private (an existing repo keeps its visibility).
        token: A Hub token; default `HF_TOKEN` or the saved login.
        revision: The branch to commit to (default: the repo's main branch).
        commit_message: The commit's summary line.
        max_attempts: Tries in all for transient failures (5xx, 429, connection, timeout).
        base_delay: Seconds before the first retry; doubled before each next one.

    Returns:
        The commit URL.

    Raises:
        UserError: No such folder, no model in it, no token, offline mode, or a token found
            inside a file to push.
        PushError: The Hub refused or kept failing; nothing local was changed.
    """
    from huggingface_hub import HfApi

    root = Path(output_dir)
    names = _files_to_push(root)
    token = check_push_ready(repo_id, token)
    _check_no_token(root, names, token)

    api = HfApi(token=token)
    retry = retry_command(root, repo_id, private)
    for attempt in range(1, max_attempts + 1):
        try:
            return _commit(api, root, names, repo_id, private, revision, commit_message)
        except Exception as err:  # noqa: BLE001 - sorted into transient and final below
            message = redact(f"{type(err).__name__}: {err}", token)
            if attempt < max_attempts and is_transient(err):
                _wait_before_retry(attempt, max_attempts, base_delay, message)
                continue
            tries = f"after {attempt} attempt(s)" if is_transient(err) else "(not retried)"
            raise PushError(
                f"pushing {root} to {repo_id} failed {tries}: {message.splitlines()[0]}. "
                f"The local output in {root} is intact; retry with: {retry}"
            ) from None
    raise AssertionError("unreachable")


def _files_to_push(root: Path) -> list[str]:
    """The files `push_output_dir` uploads; refuses a folder that is not a finished run's."""
    if not root.is_dir():
        raise UserError(
            f"output folder {root} does not exist: give the --output_dir of a finished run"
        )
    names = select_push_files(root)
    if "config.json" not in names:
        raise UserError(
            f"{root} holds no config.json: it is not the output folder of a finished run"
        )
    return names


def _commit(
    api, root: Path, names: list[str], repo_id: str, private, revision, commit_message: str
) -> str:
    """One try: create the repo if needed and commit `names` to it; returns the commit URL."""
    from huggingface_hub import CommitOperationAdd

    url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    # create_commit, not upload_folder: in huggingface_hub 2.x upload_folder runs a
    # pipelined uploader that retries every commit internally (6 tries, up to ~23 s of
    # waiting), hiding failures from the policy here. One commit of the selected
    # files is also atomic: the repo never holds half a run.
    operations = [
        CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(root / name)) for name in names
    ]
    commit = api.create_commit(
        repo_id=url.repo_id,
        operations=operations,
        revision=revision,
        commit_message=commit_message,
    )
    logger.info("pushed %d files from %s to %s", len(names), root, url.repo_id)
    return str(commit.commit_url)


def _wait_before_retry(attempt: int, max_attempts: int, base_delay: float, message: str) -> None:
    """Log the failed attempt (token already redacted) and wait, doubling the delay each time."""
    delay = base_delay * 2 ** (attempt - 1)
    logger.warning(
        "push attempt %d/%d failed (%s); retrying in %.1f s",
        attempt,
        max_attempts,
        message.splitlines()[0],
        delay,
    )
    time.sleep(delay)
