"""Pushing what a finished run exported to the Hugging Face Hub: one repo per task, or one repo with a folder per
task, each with a model card; through huggingface_hub and the login it keeps (`hf auth login`), never a token of
the app's own."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from qarac_gui.core.errors import UserError
from qarac_gui.core.model import hub as qhub
from qarac_gui.core.model.hub import HubDown, HubError

LAYOUTS = {"per_task": "one repo per task (ORG/NAME-task)", "one_repo": "one repo, a folder per task"}
CARD = "README.md"
ADAPTER_CONFIG = "adapter_config.json"        # peft's: a folder that holds an adapter alone
LOGIN = "`hf auth login`"


class PushCancelled(UserError):
    """The user cancelled a push between two folders; what was pushed stays on the Hub."""


@dataclass(frozen=True)
class PushStep:
    """One exported folder sent to one repo (one commit)."""
    repo_id: str
    name: str                   # the exported folder: a task, "full" or "backbones"
    folder: Path
    path_in_repo: str           # "" for the repo's root
    files: int
    size: int


@dataclass(frozen=True)
class PushPlan:
    repos: dict[str, str]       # repo id -> its model card
    steps: list[PushStep]

    @property
    def files(self) -> int:
        return sum(s.files for s in self.steps) + len(self.repos)

    @property
    def size(self) -> int:
        return sum(s.size for s in self.steps) + sum(len(c.encode()) for c in self.repos.values())


@dataclass(frozen=True)
class PushProgress:
    message: str
    files_done: int
    files_total: int
    bytes_done: int
    bytes_total: int


def check_repo(repo: str) -> tuple[str, str]:
    """(owner, name) of an ORG/NAME the user typed, or a UserError saying what is wrong with it."""
    repo = repo.strip()
    owner, _, name = repo.partition("/")
    if not owner or not name or "/" in name:
        raise UserError(f"{repo!r} is not a Hub repository name: give ORG/NAME (your user name or an organisation, "
                        "a slash, then a name)")
    _check_id(f"{owner}/{name}")
    return owner, name


def _check_id(repo_id: str) -> None:
    from huggingface_hub.utils import HFValidationError, validate_repo_id
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise UserError(f"{repo_id!r} is not a valid Hub repository name: use letters, digits, '-', '_' and '.', "
                        "at most 96 characters, without '--' or '..'") from None


def _files(folder: Path, skip_card: bool) -> list[Path]:
    return [p for p in sorted(folder.rglob("*"))
            if p.is_file() and not (skip_card and p.relative_to(folder).as_posix() == CARD)]


def plan_push(run_dir: Path, repo: str, names: list[str] | None = None, layout: str = "per_task",
              folders: Path | None = None) -> PushPlan:
    """What a push of the run's exported folders `names` (default: all) to `repo` would send, and where. `folders`:
    a folder holding the exported folders in place of the run's export/ (the same models written another way, such
    as LoRA adapters alone)."""
    from qarac_gui.core.results.history import exported_folders
    if layout not in LAYOUTS:
        raise UserError(f"layout {layout!r} is not one of {', '.join(LAYOUTS)}")
    owner, name = check_repo(repo)
    available = exported_folders(run_dir) if folders is None else \
        {p.name: p for p in sorted(Path(folders).iterdir()) if p.is_dir()}
    if not available:
        raise UserError(f"{run_dir} has no exported models (no export/ folder): push a run that finished")
    names = list(dict.fromkeys(names if names is not None else available))
    if not names:
        raise UserError("choose at least one model to push")
    missing = [n for n in names if n not in available]
    if missing:
        raise UserError(f"this run has no export of {', '.join(missing)} (it has: {', '.join(available)})")
    project, text, metrics = _run_facts(Path(run_dir))
    repos: dict[str, str] = {}
    steps = []
    for n in names:
        # one repo per task: the folder at the root, under the card written for it
        repo_id = f"{owner}/{name}-{n}" if layout == "per_task" else f"{owner}/{name}"
        _check_id(repo_id)
        files = _files(available[n], skip_card=layout == "per_task")
        steps.append(PushStep(repo_id, n, available[n], n if layout == "one_repo" else "", len(files),
                              sum(p.stat().st_size for p in files)))
        repos.setdefault(repo_id, "")
    for repo_id in repos:
        held = [s.name for s in steps if s.repo_id == repo_id]
        adapters = all((available[n] / ADAPTER_CONFIG).is_file() for n in held)
        repos[repo_id] = model_card(project, text, metrics, held, in_folders=layout == "one_repo",
                                    adapters=adapters)
    return PushPlan(repos, steps)


def _run_facts(run_dir: Path) -> tuple[Any, str, dict]:
    from qarac_gui.core.project.config import load_project
    path = run_dir / "project.toml"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        raise UserError(f"{run_dir} is not a run folder (it has no readable project.toml)") from None
    project = load_project(path, check=False)
    try:
        metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        metrics = {}            # a run without validation data, or an older one: the card says so
    return project, text, metrics if isinstance(metrics, dict) else {}


def _tasks_of(project: Any, name: str) -> list[Any]:
    """The project's tasks a folder of the export holds: the task itself, every task (full), or the tasks whose
    model is their backbones."""
    from qarac_gui.core.kinds import kind_of
    if name == "full":
        return list(project.tasks)
    if name == "backbones":
        return [t for t in project.tasks if kind_of(t.head).export_as == "backbones"]
    return [t for t in project.tasks if t.name == name]


def _pipeline(task: Any) -> str | None:
    from qarac_gui.core.kinds import kind_of
    from qarac_gui.core.results.export import PIPELINE_TAGS
    kind = kind_of(task.head)
    if kind.export_as == "sentence_transformers":
        return "sentence-similarity"
    return PIPELINE_TAGS.get(kind.auto_class) if kind.export_as == "native" else None


def _data_names(task: Any) -> list[str]:
    sources = [task.data, *task.data.union]
    return [s.hub or Path(s.train).name for s in sources if s.hub or s.train]


def model_card(project: Any, project_text: str, metrics: dict, names: list[str], in_folders: bool,
               adapters: bool = False) -> str:
    """The README.md of a repo holding the exported folders `names`: metadata the Hub reads, then the tasks, their
    final validation metrics, base models, datasets and the project file. `adapters`: every folder holds a LoRA
    adapter alone, which peft loads onto the base model."""
    from huggingface_hub import ModelCardData

    import qarac_gui
    from qarac_gui.core.kinds import kind_of
    from qarac_gui.core.results.export import APP_TAGS, SENTENCE_TAGS, base_model_name, described_base, hub_datasets
    tasks = list({t.name: t for n in names for t in _tasks_of(project, n)}.values())
    backbones = list(dict.fromkeys(b for t in tasks for b in kind_of(t.head).backbones(t))) or list(project.backbones)
    bases = [base_model_name(project, b) for b in backbones]
    hub_bases = list(dict.fromkeys(n for n, on_hub in bases if on_hub))
    # The Hub's widget loads the model at the root: a task's pipeline only for a repo whose root is that task.
    pipelines = {_pipeline(t) for t in tasks if t.name in names} if not in_folders else {None}
    similarity_only = bool(tasks) and all(kind_of(t.head).export_as == "sentence_transformers" for t in tasks)
    tags = (SENTENCE_TAGS if similarity_only else []) + [kind_of(t.head).name.replace("_", "-") for t in tasks]
    library = "peft" if adapters else "sentence-transformers" if similarity_only else "transformers"
    data = ModelCardData(
        library_name=None if names == ["full"] else library,        # the full model loads in qarac_gui only
        base_model=(hub_bases[0] if len(hub_bases) == 1 else hub_bases) or None,
        datasets=hub_datasets(tasks) or None, tags=list(dict.fromkeys(tags + APP_TAGS)),
        pipeline_tag=pipelines.pop() if len(pipelines) == 1 and None not in pipelines else None)
    final = metrics.get("final") if isinstance(metrics.get("final"), dict) else {}
    lines = [f"# {project.name}", "",
             f"Fine-tuned with qarac_gui {qarac_gui.__version__}: {_count(len(project.tasks), 'task')} trained "
             "together on shared backbones" + (f" for {metrics['step']} steps" if metrics.get("step") else "") + ".",
             "", "## Models in this repository", ""]
    if adapters:
        lines += ["Each folder is a LoRA adapter in peft's format (with the task's head), not a whole model: load it "
                  "onto its base model with `peft.PeftModel.from_pretrained(base, folder)`, or with the "
                  "`AutoPeftModelFor...` class of its task.", ""]
    lines += ["| folder | tasks | kind |", "|---|---|---|"]
    for n in names:
        held = _tasks_of(project, n)
        what = ("the whole multi-task model, for qarac_gui" if n == "full" else
                "the backbones of the tasks over named inputs" if n == "backbones" else
                ", ".join(sorted({kind_of(t.head).name for t in held})))
        lines.append(f"| `{n + '/' if in_folders else '(root)'}` | {', '.join(f'`{t.name}`' for t in held)} | "
                     f"{what} |")
    lines += ["", "## Validation metrics", ""]
    if metrics.get("best_step"):
        lines += [f"Of the evaluation at step {metrics['best_step']}, the best one." if project.eval.keep_best
                  else f"Of the last evaluation (step {metrics.get('step')}).", ""]
    for t in tasks:
        values = final.get(t.name) if isinstance(final.get(t.name), dict) else {}
        shown = ", ".join(f"{k} {v:.4f}" for k, v in sorted(values.items()) if isinstance(v, (int, float)))
        lines.append(f"- `{t.name}`: {shown or 'no validation data'}")
    lines += ["", "## Base models", ""]
    lines += [f"- `{b}`: {described_base(project, b)}" for b in backbones]
    lines += ["", "## Data", ""]
    lines += [f"- `{t.name}`: {', '.join(f'`{d}`' for d in _data_names(t)) or 'unknown'}" for t in tasks]
    fence = "```" + "`" * _longest_backticks(project_text)
    lines += ["", "## Project file", "", "The qarac_gui project that produced these models:", "",
              f"{fence}toml", project_text.rstrip("\n"), fence]
    return f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines) + "\n"


def _longest_backticks(text: str) -> int:
    import re
    return max((len(m) for m in re.findall(r"`+", text)), default=0)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def push_run(run_dir: Path, repo: str, names: list[str] | None = None, *, layout: str = "per_task",
             private: bool = True, progress: Callable[[PushProgress], None] | None = None,
             cancel: threading.Event | None = None, endpoint: str | None = None,
             folders: Path | None = None) -> list[str]:
    """Create the repos (private unless asked) and upload the exported folders and their cards; the URLs of the
    repos. Uses the login huggingface_hub saved; files already on the Hub unchanged are not sent again, so a push
    that failed or was cancelled half-way finishes when run again."""
    from huggingface_hub import HfApi, get_token
    plan = plan_push(Path(run_dir), repo, names, layout, folders)
    if qhub.hub_offline():
        raise HubError("offline (HF_HUB_OFFLINE is set): cannot push to the Hub; unset it and try again")
    if not get_token():
        raise HubError(f"not logged in to the Hugging Face Hub: run {LOGIN} with a token that has write access, "
                       "then push again")
    try:
        qhub.check_reachable(endpoint)
    except HubDown as e:
        raise HubDown(f"{_reason(e)}; check the network and push again (nothing was pushed)") from e
    api = HfApi(endpoint=endpoint)              # no token: huggingface_hub reads its own saved one
    state = {"files": 0, "bytes": 0}

    def tell(message: str) -> None:
        if progress is not None:
            progress(PushProgress(message, state["files"], plan.files, state["bytes"], plan.size))

    def stop_if_cancelled(done: int) -> None:
        if cancel is not None and cancel.is_set():
            raise PushCancelled(f"push cancelled: {done} of {len(plan.steps)} folder(s) pushed; push again to "
                                "finish (files already on the Hub are not sent again)")

    urls = []
    for repo_id in plan.repos:
        stop_if_cancelled(0)
        tell(f"Creating {repo_id} ({'private' if private else 'public'}, unless it exists)")
        url = _ask(lambda: api.create_repo(repo_id, private=private, exist_ok=True), repo_id)
        urls.append(str(url))
    for i, step in enumerate(plan.steps):
        where = f"{step.repo_id}/{step.path_in_repo}" if step.path_in_repo else step.repo_id
        tell(f"Uploading {step.name}: {step.files} files, {_size(step.size)}, to {where}")
        stop_if_cancelled(i)
        _ask(lambda: api.upload_folder(repo_id=step.repo_id, folder_path=step.folder,
                                       path_in_repo=step.path_in_repo or None,
                                       ignore_patterns=None if step.path_in_repo else [CARD],
                                       commit_message=f"Upload {step.name} with qarac_gui"), step.repo_id)
        state["files"] += step.files
        state["bytes"] += step.size
    for repo_id, card in plan.repos.items():
        stop_if_cancelled(len(plan.steps))
        tell(f"Writing the model card of {repo_id}")
        _ask(lambda: api.upload_file(path_or_fileobj=card.encode(), path_in_repo=CARD, repo_id=repo_id,
                                     commit_message="Model card from qarac_gui"), repo_id)
        state["files"] += 1
        state["bytes"] += len(card.encode())
    tell(f"Pushed {_count(len(plan.steps), 'folder')} to {', '.join(plan.repos)}")
    return urls


def _size(n: int) -> str:
    from qarac_gui.core.results.history import human_size
    return human_size(n)


def _status(error: BaseException) -> int | None:
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in seen:
        seen.append(current)
        status = getattr(getattr(current, "response", None), "status_code", None)
        if status is not None:
            return int(status)
        current = current.__cause__ or current.__context__
    return None


def _reason(error: BaseException) -> str:
    """The first clause of a message, without advice meant for downloads."""
    return str(error).split(";")[0]


def _ask(fn: Callable[[], Any], repo_id: str) -> Any:
    """A Hub call of the push, its failures in words: the statuses a push meets have their own, the rest the
    app's usual ones."""
    owner = repo_id.split("/")[0]
    what = f"pushing to {repo_id}"

    def call() -> Any:
        try:
            return fn()
        except Exception as e:
            status = _status(e)
            if status == 401:
                raise HubError(f"{what}: the Hub did not accept the saved login (401): log in again with {LOGIN} "
                               "using a token with write access, then push again") from e
            if status == 403:
                raise HubError(f"{what}: this account has no write access to {owner} (403): push to your own "
                               f"name or an organisation you may write to, or log in with {LOGIN} using a token "
                               "with write access to it") from e
            if status == 409:
                raise HubError(f"{what}: the Hub reported a conflict (409): the repository changed meanwhile or "
                               "is being created; wait a moment and push again") from e
            raise
    try:
        return qhub._call(call, what)
    except HubDown as e:
        raise HubDown(f"{_reason(e)}; check the network and push again (files already on the Hub are not sent "
                      "again)") from e
