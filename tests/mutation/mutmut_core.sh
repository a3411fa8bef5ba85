#!/usr/bin/env bash
# mutmut over the core modules (pyproject [tool.mutmut]: tiling, protocol, colour, manifest,
# io_names, weights, job lock, ensemble), each mutant run against the tests that cover it.
# Not in CI (tens of minutes on 2 cores); tests/mutation/run.py is CI's hand-picked check.
# Needs the mutation extra: pip install -e ".[dev,mutation]". Usage:
#   bash tests/mutation/mutmut_core.sh [TIME_LIMIT_S] [MODULE_GLOB...]
# e.g. `bash tests/mutation/mutmut_core.sh 1200 'vdsr_deploy.planes.tiling*'`; the score goes
# to mutants/score.txt and the survivors are listed after it (docs/quality.md explains them).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
limit="${1:-1800}"
shift || true
children="${MUTMUT_CHILDREN:-2}"
# mutmut resumes: mutants already run keep their result; MUTMUT_FRESH=1 starts over
if [ "${MUTMUT_FRESH:-0}" = 1 ]; then rm -rf mutants; fi
status=0
timeout "$limit" mutmut run --max-children "$children" "$@" >>mutants.log 2>&1 || status=$?
if [ "$status" = 124 ]; then
    echo "mutmut: stopped after ${limit}s; the score below covers the mutants run so far"
fi
mutmut results --all true >mutants/results.txt 2>&1 || true
python - <<'PY'
from collections import Counter, defaultdict
from pathlib import Path

lines = [l.strip() for l in Path("mutants/results.txt").read_text().splitlines() if ": " in l]
status = Counter(l.rsplit(": ", 1)[1] for l in lines)
tried = sum(n for s, n in status.items() if s not in ("not checked",))
killed = status.get("killed", 0) + status.get("timeout", 0) + status.get("segfault", 0)
score = f"{killed}/{tried} killed ({100 * killed / tried:.1f}%)" if tried else "no mutant run"
per_module: dict[str, Counter[str]] = defaultdict(Counter)
for line in lines:
    name, state = line.rsplit(": ", 1)
    per_module[name.split(".x")[0]][state] += 1
text = f"mutmut score: {score}; by status: {dict(status)}\n" + "".join(
    f"  {module}: {dict(counts)}\n" for module, counts in sorted(per_module.items())
)
Path("mutants/score.txt").write_text(text)
print(text, end="")
for line in lines:
    if line.endswith(": survived") or line.endswith(": no tests"):
        print("  ", line)
PY
