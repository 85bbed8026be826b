"""`make chart`: helm lint --strict, helm template, and kubernetes-validate of the output for Kubernetes
1.30 and the newest version kubernetes-validate knows. The full checks are `pytest tests/chart`."""

from __future__ import annotations

import sys

from tests.chart import tools


def main() -> int:
    try:
        tools.binaries()
    except tools.ToolMissing as exc:
        print(f"chart: {exc}", file=sys.stderr)
        return 2
    lint = tools.run_helm("lint", "--strict", str(tools.CHART), check=False)
    print(lint.stdout.strip() or lint.stderr.strip())
    if lint.returncode:
        print(lint.stderr, file=sys.stderr)
        return 1
    out = tools.ROOT / ".tools" / "chart" / "rendered.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(tools.template_text(), encoding="utf-8")
    print(f"helm template: {len(tools.load_yaml_all(out.read_text(encoding='utf-8')))} objects -> {out}")
    failed = 0
    for version in ("1.30.0", tools.kubernetes_versions()[-1]):
        result = tools.kubernetes_validate(out, version)
        print(f"kubernetes-validate --strict -k {version}: {'ok' if result.returncode == 0 else 'FAILED'}")
        if result.returncode:
            print(result.stdout + result.stderr, file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
