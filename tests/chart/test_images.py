"""The Dockerfiles, checked statically (no Docker engine here): multi-stage, uv from its pinned image,
only the member's own dependencies, a non-root user, pinned base images; and the .dockerignore."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.chart.tools import ROOT

MEMBERS = {"api": "audioflow-api", "workers": "audioflow-workers", "operator": "audioflow-operator"}
#: Dependencies that mark a member: an image of another member must not carry them.
SIGNATURES = {
    "api": {"fastapi", "uvicorn", "starlette"},
    "workers": {"pocketsphinx", "numpy", "soxr"},
    "operator": {"kopf", "kubernetes-asyncio"},
}


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse(path: Path) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages of a Dockerfile (continuations joined, comments dropped)."""
    logical: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append((start, pending + stripped))
        pending = ""
    assert not pending, f"{path}: dangling line continuation"
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for number, text in logical:
        keyword, _, rest = text.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = rest.split()
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(image, name))
        elif keyword == "ARG" and not stages:
            key, _, default = rest.partition("=")
            args[key.strip()] = default.strip()
        else:
            assert stages, f"{path}:{number}: {keyword} before FROM"
            stages[-1].instructions.append(Instruction(keyword, rest.strip(), number))
    return args, stages


DOCKERFILES = {member: ROOT / member / "Dockerfile" for member in MEMBERS}


@pytest.mark.parametrize("member", MEMBERS)
def test_dockerfile_is_multi_stage_with_pinned_bases(member: str) -> None:
    _, stages = parse(DOCKERFILES[member])
    assert len(stages) >= 3, "multi-stage: uv, build, runtime"
    for stage in stages:
        image = stage.image
        if stage.image in {s.name for s in stages if s.name}:
            continue  # FROM an earlier stage
        assert "$" not in image, f"unresolved ARG in FROM {image}"
        tag = image.rpartition(":")[2] if ":" in image.split("/")[-1] else ""
        assert tag, f"FROM {image}: pin a tag"
        assert tag != "latest" and not tag.startswith("latest"), f"FROM {image}: never latest"
    uv_images = [s.image for s in stages if s.image.startswith("ghcr.io/astral-sh/uv")]
    assert len(uv_images) == 1
    assert re.fullmatch(r"ghcr\.io/astral-sh/uv:\d+\.\d+\.\d+", uv_images[0]), "pin uv by its version"
    final, build = stages[-1], stages[-2]
    assert final.image == build.image, "the runtime stage has the builder's interpreter"
    assert final.image.startswith("python:3.11")


@pytest.mark.parametrize("member", MEMBERS)
def test_dockerfile_installs_only_its_member_with_uv(member: str) -> None:
    _, stages = parse(DOCKERFILES[member])
    build = stages[-2]
    uv_stage = next(s for s in stages if s.image.startswith("ghcr.io/astral-sh/uv"))
    copies_uv = [
        c for c in build.all("COPY") if f"--from={uv_stage.name}" in c.args and "/uv " in c.args + " "
    ]
    assert copies_uv, "uv comes from its official image"
    syncs = [r.args for r in build.all("RUN") if "uv sync" in r.args]
    assert len(syncs) == 2, "dependencies first (cached layer), then the members"
    for command in syncs:
        words = shlex.split(command[command.index("uv sync") :])
        assert "--locked" in words
        assert "--no-dev" in words and "--no-default-groups" in words
        assert words[words.index("--package") + 1] == MEMBERS[member]
        assert "--no-editable" in words
        assert "--all-packages" not in words and "--all-groups" not in words
    assert "--no-install-workspace" in syncs[0]
    # Sources: core and this member only; the other members' pyproject.toml (uv checks the lock with them).
    sources = set()
    for copy in build.all("COPY"):
        if "--from=" in copy.args:
            continue
        *src, _ = shlex.split(copy.args)
        sources.update(src)
    assert {"core/", f"{member}/"} <= sources
    others = set(MEMBERS) - {member}
    for other in others:
        assert f"{other}/" not in sources
        assert f"{other}/pyproject.toml" in sources
    allowed = {"core/", f"{member}/", "pyproject.toml", "uv.lock"} | {
        f"{m}/pyproject.toml" for m in [*MEMBERS, "core"]
    }
    assert sources <= allowed, f"the build stage copies more than it needs: {sources - allowed}"


@pytest.mark.parametrize("member", MEMBERS)
def test_runtime_stage_is_non_root_and_execs_audioflow(member: str) -> None:
    _, stages = parse(DOCKERFILES[member])
    final = stages[-1]
    users = final.all("USER")
    assert users, "the runtime stage sets a user"
    user = users[-1].args.split(":")[0]
    assert user.isdigit() and int(user) > 0, "a numeric, non-root USER (Kubernetes checks runAsNonRoot)"
    assert user == "10001", "the chart's runAsUser"
    assert all(run.line < users[-1].line for run in final.all("RUN")), "nothing runs as root after USER"
    assert not final.all("ADD") and not any(s.all("ADD") for s in stages), "COPY, not ADD"
    (entrypoint,) = final.all("ENTRYPOINT")
    assert json.loads(entrypoint.args) == ["audioflow"]
    for cmd in final.all("CMD"):
        assert isinstance(json.loads(cmd.args), list), "exec form"
    copies = final.all("COPY")
    assert [c.args for c in copies] == ["--from=build /app/.venv /app/.venv"], "only the environment"
    env = " ".join(e.args for e in final.all("ENV"))
    assert "PATH=/app/.venv/bin:$PATH" in env and "PYTHONDONTWRITEBYTECODE=1" in env
    for stage in stages:
        for run in stage.all("RUN"):
            assert "curl" not in run.args and "wget" not in run.args, "no downloads outside package managers"
            if "apt-get install" in run.args:
                assert "--no-install-recommends" in run.args


def test_gateway_image_builds_the_page() -> None:
    _, stages = parse(DOCKERFILES["api"])
    node = next(s for s in stages if s.image.startswith("node:"))
    assert re.fullmatch(r"node:\d+(\.\d+)*-\w+(-slim)?", node.image)
    runs = " ".join(r.args for r in node.all("RUN"))
    assert "npm ci" in runs and "npm run build" in runs
    build = stages[-2]
    assert any(
        f"--from={node.name}" in c.args and "api/src/audioflow/api/static" in c.args
        for c in build.all("COPY")
    ), "the built page goes into the gateway package before uv builds it"
    vite = (ROOT / "frontend/vite.config.ts").read_text(encoding="utf-8")
    assert 'outDir: "../api/src/audioflow/api/static"' in vite


@pytest.mark.parametrize("member", MEMBERS)
def test_locked_dependencies_of_the_image_are_the_members_own(member: str) -> None:
    """What `uv sync --package` installs in the image, read from uv.lock with the same flags."""
    uv = shutil.which("uv") or str(ROOT / ".tools" / "venv" / "bin" / "uv")  # where the Makefile finds it
    assert Path(uv).exists(), "uv is needed to read uv.lock as the image build does"
    result = subprocess.run(
        [
            uv,
            "export",
            "--frozen",
            "--no-dev",
            "--no-default-groups",
            "--package",
            MEMBERS[member],
            "--no-hashes",
            "--no-emit-workspace",
            "--no-header",
            "--no-annotate",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
        timeout=60,
    )
    names = {
        re.split(r"[=<>;\[ ]", line, maxsplit=1)[0].lower() for line in result.stdout.splitlines() if line
    }
    assert SIGNATURES[member] <= names, "the member's own dependencies"
    for other in set(MEMBERS) - {member}:
        assert not SIGNATURES[other] & names, f"{member} image would carry {SIGNATURES[other] & names}"
    for dev in ("pytest", "ruff", "mypy", "hypothesis", "kmock"):
        assert dev not in names


def _ignored(patterns: list[str], path: str) -> bool:
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.removeprefix("!").rstrip("/")
        candidates = [pattern] if not pattern.startswith("**/") else [pattern, pattern[3:]]
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        suffixes = ["/".join(parts[i:]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, c) for c in candidates for p in prefixes + suffixes):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_the_context_small_and_the_sources_in() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for path in (
        ".venv",
        "frontend/node_modules",
        ".git",
        "core/src/audioflow/__pycache__",
        ".tools",
        "tests",
    ):
        assert _ignored(patterns, path), path
    needed = [
        "pyproject.toml",
        "uv.lock",
        "frontend/package.json",
        "frontend/package-lock.json",
        "frontend/src/main.tsx",
    ]
    for member in [*MEMBERS, "core"]:
        needed.append(f"{member}/pyproject.toml")
        needed.extend(
            str(p.relative_to(ROOT))
            for p in (ROOT / member / "src").rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and "static" not in p.parts
        )
    kept_out = [path for path in needed if _ignored(patterns, path)]
    assert not kept_out, f".dockerignore hides what the images need: {kept_out[:5]}"
    assert _ignored(patterns, "api/src/audioflow/api/static/index.html"), "the page is built in the image"
