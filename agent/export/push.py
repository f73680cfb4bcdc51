"""`datagen push`: upload an export folder to a Hugging Face dataset repo (huggingface_hub's HfApi).

Only the files the export wrote go up (manifest.json names the data, metadata and config files; plus the card,
dataset_info.txt and report.html): never ledger.sqlite, logs or the run lock. The token comes from the
environment (HF_TOKEN) or `huggingface-cli login` as huggingface_hub reads it; datagen never writes, logs
or repeats it. Errors become one line that names the repo and the HTTP status.
"""

from __future__ import annotations

import json
from pathlib import Path

from agent.errors import DatagenError, InputError
from agent.export.card import CARD
from agent.export.trainers import MANIFEST

ALWAYS = (CARD, "dataset_info.txt", "report.html", MANIFEST)


class PushError(DatagenError):
    """The Hub refused or could not be reached: not the user's input, so exit 1."""

    exit_code = 1


def files_to_push(folder: Path) -> list[str]:
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise InputError(f"{folder}: no {MANIFEST}; push a folder written by `datagen export`")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        names = [f["path"] for f in manifest["files"]] + manifest.get("metadata", []) + manifest["configs"]
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(f"{manifest_path}: not a datagen manifest ({e}); export the folder again") from None
    names += [n for n in ALWAYS if (folder / n).is_file()]
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise InputError(f"{folder}: {', '.join(missing)} named in {MANIFEST} but missing; export the folder again")
    return sorted(set(names))


def push(folder: Path, repo_id: str, private: bool = True, endpoint: str | None = None,
         token: str | None = None) -> str:
    """Create the dataset repo if needed and commit the export's files; the commit URL."""
    try:
        from huggingface_hub import HfApi
        from huggingface_hub.errors import HfHubHTTPError
    except ModuleNotFoundError:
        raise InputError("push needs huggingface_hub: pip install huggingface_hub") from None
    names = files_to_push(folder)
    api = HfApi(endpoint=endpoint, token=token)
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="dataset",
                                 allow_patterns=names, commit_message=f"datagen export ({len(names)} files)")
    except HfHubHTTPError as e:
        status = e.response.status_code if e.response is not None else "?"
        hint = " (set HF_TOKEN to a token with write access)" if status in (401, 403) else ""
        raise PushError(f"push to dataset {repo_id} failed: HTTP {status}{hint}") from None
    except OSError as e:
        raise PushError(f"push to dataset {repo_id} failed: {e.strerror or type(e).__name__}") from None
    return str(getattr(info, "commit_url", info))
